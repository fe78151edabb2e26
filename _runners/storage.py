"""The `storage` runner: the SeaweedFS cluster from the master.

``storage.status`` and ``storage.repair`` call ``_modules/ccmirror_storage.py`` on one
storage minion (``minion=``, default the first ``st-*`` that answers), which asks the
cluster's masters (HTTP) or runs ``weed shell`` there, and relay its answer. ``repair``
shows a progress line per step (the status before, ``volume.fix.replication``,
``volume.balance``) and ends with the status after. A failure is one clear error and a
non-zero exit.

``storage.import`` adopts a directory of an old layout (the old system's rsync target, or
this project's rsync storage) into the bucket: ``_modules/ccmirror_audit_s3.py``'s
``import_tree`` on the database minion runs ``harvester import-tree`` there (harvester/adopt/),
with the settings the storage audit uses (the catalog's login, the bucket and the audit's S3
key), and the runner shows its progress lines as they come. It runs on the database minion
because the catalog is there and the files are where an operator copied them; the minion
needs the directory, the database and the bucket's gateway, nothing more.

``storage.backup_catalog`` and ``storage.restore_catalog`` call ``_modules/ccmirror_backup.py``
on the database minion (the first ``db-*``, as ``batch`` finds it): a backup now (the minion's
schedule makes one every day, salt/db/backup.sls), and the rebuild of a fresh db-1 from the
newest backup (the catalog and the filer store's database; from the backup target when the
bucket cannot answer), followed by ``storage.restore from=backup`` and ``audit.storage``,
which marks stored what was pushed after it.

``storage.restore from=backup`` puts back, from the backup target (``weed filer.backup``'s
copy, salt/backup), every stored photo the bucket lacks or holds with other bytes, and the
photos pushed after the newest catalog backup whose names main lost, for ``audit.storage``
to adopt (``ccmirror_audit_s3.restore_photos`` on the database minion); ``storage.status``
adds the backup's lag (photos, seconds) when the site has one (pillar ``site:backup_nodes``, the
backup cluster's bk-* droplets, or ``site:backup_endpoint``, another S3).

Over 500 lines: it is the operator's one ``salt-run storage.*`` namespace, and its helpers
(the minion calls, progress, argument checks) serve every function here; the work itself
is on the minions.
"""

from __future__ import annotations

import logging
from typing import Any

import salt.utils.minions

log = logging.getLogger(__name__)

__load__ = [
    "status", "repair", "import_tree", "backup_catalog", "restore_catalog", "restore"
]  # fmt: skip
__func_alias__ = {"import_tree": "import"}  # `import` is Python's: salt-run storage.import

STORAGE_MINIONS = "st-*"
PING_TIMEOUT = 30
STATUS_TIMEOUT = 120
STEPS = ("fix_replication", "balance")  # in this order: copies first, then moves
CATALOG_TIMEOUT = 24 * 3600
STEP_COMMANDS = {"fix_replication": "volume.fix.replication", "balance": "volume.balance"}
PROGRESS_TAG = "ccmirror/audit/progress"  # what ccmirror_audit_s3 fires, {"audit": "import"}
RESTORE_SOURCES = ("backup",)
CATALOG_SOURCES = ("auto", "bucket", "backup")  # harvester/backup/sources.py
RESTORE_COUNTS = ("restored", "fine", "not_on_backup", "checked",
                  "unstored_restored", "unstored_skipped")  # fmt: skip
WEEK = 7 * 86400

__opts__: dict = {}  # replaced by Salt's loader


class StorageError(RuntimeError):
    """A step that failed; the message says which and why."""


def _progress(message: str) -> None:
    """A progress event for salt-run's caller; silent outside a job (_utils/runner_tools.py)."""
    event = globals().get("__jid_event__")
    __utils__["runner_tools.progress"](event, message, log, "storage")  # noqa: F821


def _client():
    return __utils__["runner_tools.local_client"](__opts__)  # noqa: F821 (Salt injects it)


def _failed(message: str, **extra) -> dict[str, Any]:
    """One clear error; salt-run and orchestration see the job failed."""
    __context__["retcode"] = 1  # noqa: F821 (Salt injects it)
    log.error("storage: %s", message)
    return {"result": False, "error": message, "retcode": 1, **extra}


def status(minion=None, timeout=STATUS_TIMEOUT):
    """
    The SeaweedFS cluster, as a storage minion's ``ccmirror_storage.status`` reads it from
    the masters: the raft leader; each volume server (volumes, max volumes, free slots, its
    disk's total, used and free bytes); volumes, files and bytes (one copy and all copies);
    capacity, used and free bytes; the replication; the volumes with fewer copies than the
    replication asks and the files (photos) in them; volume ids no live server holds; on a
    site with a backup target (pillar ``site:backup_nodes`` or ``site:backup_endpoint``),
    ``backup_lag``: the photos the backup is behind and how long the oldest has waited.
    ``minion`` picks the storage minion that asks (default: the first ``st-*`` that
    answers). ``timeout`` is in seconds.

    CLI Example::

        salt-run storage.status
        salt-run storage.status minion=st-2 --out=json
    """
    try:
        timeout = _seconds(timeout, "timeout")
        with _client() as client:
            store = _synced(client, _storage_minion(client, minion))
            answer = _call(client, store, "ccmirror_storage.status", {}, timeout)
            lag = _backup_lag(client, timeout)
    except StorageError as error:
        return _failed(str(error))
    if lag is not None:
        answer["backup_lag"] = lag
    answer["minion"] = store
    answer["comment"] = summary_line(answer)
    return answer


def repair(apply=True, minion=None, timeout=6 * 3600):
    """
    Repair the SeaweedFS cluster with its own tools, from a storage minion, under weed's
    admin lock: ``volume.fix.replication`` (every volume with a copy missing gets one on a
    server with a free slot; a surplus copy is trimmed), then ``volume.balance`` (volumes
    move from fuller servers to emptier ones; it ranks servers by bytes in whole volume-size
    limits, so a young cluster moves nothing: _modules/ccmirror_storage.py says why). A
    progress line per step, then the status after. ``apply=False`` is a dry run: what weed
    would copy and move, nothing changed. Fails (exit 1) when weed reports an error or an
    applied repair leaves volumes under-replicated (no server with room: ``fleet.up
    role=storage`` first). ``timeout`` bounds each step (seconds).

    CLI Example::

        salt-run storage.repair
        salt-run storage.repair apply=False
        salt-run storage.repair minion=st-2 timeout=7200
    """
    try:
        apply = _flag(apply, "apply")
        timeout = _seconds(timeout, "timeout")
        with _client() as client:
            store = _synced(client, _storage_minion(client, minion))
            before = _call(client, store, "ccmirror_storage.status", {}, STATUS_TIMEOUT)
            _progress(f"before, from {store}: {summary_line(before)}")
            steps, failures = _run_steps(client, store, apply, timeout)
            after = _call(client, store, "ccmirror_storage.status", {}, STATUS_TIMEOUT)
            _progress(f"after: {summary_line(after)}")
    except StorageError as error:
        return _failed(str(error))
    answer = {
        "minion": store,
        "apply": apply,
        "steps": steps,
        "copied": sum(step.get("copied", 0) for step in steps),
        "moved": sum(step.get("moved", 0) for step in steps),
        "would_copy": sum(step.get("would_copy", 0) for step in steps),
        "would_move": sum(step.get("would_move", 0) for step in steps),
        "under_replicated_before": before["under_replicated"]["volumes"],
        "under_replicated_after": after["under_replicated"]["volumes"],
        "status": after,
    }
    if failures:
        return _failed("; ".join(failures), **answer)
    answer["result"] = True
    answer["comment"] = "; ".join(step["comment"] for step in steps)
    return answer


def import_tree(
    path=None,
    dry_run=False,
    report=None,
    concurrency=16,
    samples=20,
    timeout=WEEK,
    progress_seconds=30,
):
    """
    Adopt the directory ``path`` on the database minion into the images bucket, so that no
    photo in it is fetched from Flickr again. It may hold the old system's rsync target
    (Flickr's file names, ``<photo_id>_<secret>_<size>.<ext>``, at any depth) and this
    project's rsync layout (``images/<aa>/<bb>/<photo_id>.<ext>``). A file is taken when its
    photo id is in the catalog, its secret, size and format are those of the catalog's URL
    for the photo, and it is a whole image of that format (magic bytes and its ending); it
    is put with its SHA-256 (the downloader's own push) and its photo marked stored, as a
    downloader's report does. Files it cannot match, that are not whole images, and photos
    withdrawn, leased or stored with other bytes are never uploaded: each is a JSON line in
    ``report`` on the minion (default /var/lib/ccmirror/imports/import-<UTC time>.jsonl),
    the first ``samples`` of each kind in the return. Running it again changes nothing.
    ``dry_run=True`` judges every file, changes nothing. ``concurrency``: PUTs at once;
    ``timeout`` (seconds) bounds the whole import; a progress line every
    ``progress_seconds``.

    CLI Example::

        salt-run storage.import path=/srv/old-mirror
        salt-run storage.import path=/srv/old-mirror dry_run=True
        salt-run storage.import path=/srv/old-mirror report=/root/import.jsonl concurrency=32
    """
    try:
        if not isinstance(path, str) or not path.startswith("/"):
            raise StorageError(
                "path must be an absolute directory on the database minion"
                f" (path=/srv/old-mirror), not {path!r}"
            )
        kwarg = {
            "path": path,
            "dry_run": _flag(dry_run, "dry_run"),
            "report": report,
            "concurrency": _whole(concurrency, "concurrency", 1),
            "samples": _whole(samples, "samples", 0),
            "timeout": int(_seconds(timeout, "timeout")),
            "progress_seconds": _whole(progress_seconds, "progress_seconds", 0),
        }
        db = _db_minion()
        with _client() as client:
            client.cmd([db], "saltutil.sync_all", tgt_type="list", timeout=STATUS_TIMEOUT)
            dry = " (dry run)" if kwarg["dry_run"] else ""
            _progress(f"importing {path} on {db} into the bucket{dry}")
            answer = _watched_import(client, db, kwarg)
    except StorageError as error:
        return _failed(str(error))
    result = answer["import"]
    counts = ("seen", "matched", "uploaded", "skipped", "unknown", "bad", "restored")
    return {
        "result": True,
        "db_minion": db,
        "comment": result["summary"],
        **{name: result[name] for name in counts},
        "report": result.get("report"),
        "import": result,
    }


def _watched_import(client, db: str, kwarg: dict) -> dict:
    """ccmirror_audit_s3.import_tree on `db`, its progress lines shown as they come."""
    return _watched(client, db, "ccmirror_audit_s3.import_tree", kwarg, "import")


def _watched(client, db: str, function: str, kwarg: dict, kind: str) -> dict:
    """`function` on `db`; its progress events of this `kind` shown as they come; its answer
    must hold `kind` (what ccmirror_audit_s3 returns the harvester's result under)."""
    utils = __utils__  # noqa: F821 (Salt injects it)
    # Called back from _utils/: the runner's own _progress has no dunders there.
    show = utils["runner_tools.reporter"](globals().get("__jid_event__"), log, "storage")

    def line_of(data: dict) -> str | None:
        return data.get("message") if data.get("audit") == kind else None

    try:
        answer = utils["runner_tools.watched_call"](
            __opts__, client, db, function, kwarg, kwarg["timeout"] + 60, PROGRESS_TAG,
            line_of, show,
        )  # fmt: skip
    except RuntimeError as error:
        raise StorageError(str(error)) from None
    if not isinstance(answer, dict) or not answer.get("result") or kind not in answer:
        raise StorageError(f"{function} on {db}: {_reason(answer, kwarg['timeout'])}")
    return answer


def backup_catalog(keep=7, timeout=CATALOG_TIMEOUT):
    """
    Back the catalog up now on the database minion (``ccmirror_backup.backup``): one
    consistent ``mariadb-dump --single-transaction`` through zstd into the bucket's
    ``catalog/`` prefix with db-1's own key, then all but the ``keep`` newest are deleted (a
    delete marker: under the bucket's object lock only the admin key removes their bytes).

    CLI Example::

        salt-run storage.backup_catalog
        salt-run storage.backup_catalog keep=14
    """
    try:
        keep = int(_seconds(keep, "keep"))
        timeout = _seconds(timeout, "timeout")
        db = _db_minion()
        with _client() as client:
            _synced(client, db)
            _progress(f"backing the catalog up on {db}")
            kwarg = {"keep": keep, "timeout": timeout}
            made = _call(client, db, "ccmirror_backup.backup", kwarg, timeout + 60)
    except StorageError as error:
        return _failed(str(error))
    backup = made["backup-catalog"]
    return {"result": True, "db_minion": db, "backup": backup, "comment": backup["summary"]}


def restore_catalog(key=None, force=False, audit=True, timeout=CATALOG_TIMEOUT, **kwargs):
    """
    Rebuild a fresh db-1 from the newest catalog backup (or ``key``): the catalog, and the
    databases dumped with it (a SeaweedFS site's filer store: main's names of its objects),
    read from ``from``: ``bucket``, ``backup`` (the backup target's copies) or ``auto`` (the
    bucket when it lists a backup, else the backup target: a lost db-1 took main's names).
    Then ``takedown.replay`` (takedowns made since the backup, recorded in the bucket), on a
    site with a backup target ``storage.restore from=backup``, and
    ``audit.storage``: photos pushed after the backup are found in the bucket and marked
    stored (not fetched again), and the queue goes on from where the backup stood. Apply
    db-1's states first (a new db-1: MariaDB, the users, the empty schema, the backup
    settings). Refused when the catalog has photos, unless ``force=True``; each backup is
    loaded beside its database and swapped in at once, so a failure leaves it as it was.
    ``audit=False`` skips the after-steps (run them later, ``takedown.replay`` first).

    CLI Example::

        salt-run storage.restore_catalog
        salt-run storage.restore_catalog from=backup
        salt-run storage.restore_catalog key=catalog/ccmirror-20261205T031500000000Z.sql.zst
    """
    try:
        source = kwargs.get("from", "auto")
        if source not in CATALOG_SOURCES:
            raise StorageError(f"from must be one of {', '.join(CATALOG_SOURCES)}, not {source!r}")
        force, audit = _flag(force, "force"), _flag(audit, "audit")
        timeout = _seconds(timeout, "timeout")
        db = _db_minion()
        with _client() as client:
            _synced(client, db)
            _progress(f"restoring db-1 on {db} from {key or 'the newest backup'} ({source})")
            kwarg = {"force": force, "source": source, "timeout": timeout,
                     **({"key": key} if key else {})}  # fmt: skip
            restored = _call(client, db, "ccmirror_backup.restore", kwarg, timeout + 60)
            backed_up = _has_backup(client, db, STATUS_TIMEOUT)
    except StorageError as error:
        return _failed(str(error))
    done = restored["restore-catalog"]
    _progress(done["summary"])
    answer = {"result": True, "db_minion": db, "restore": done, "comment": done["summary"]}
    return _after_catalog(answer, backed_up) if audit else answer


def _after_catalog(answer: dict, backed_up: bool) -> dict:
    """The takedowns made since the backup, from the bucket; the photos main lost since the
    backup, from the backup target; then the audit. The takedowns first: the other two
    would put a photo taken down since back into images/."""
    _progress("taking down again what the bucket records (takedown.replay)")
    replayed = __salt__["takedown.replay"]()  # noqa: F821 (Salt injects the runners)
    answer["takedowns"] = replayed
    if not replayed.get("result"):
        return _failed(f"restored; replaying takedowns failed: {replayed.get('error')}", **answer)
    answer["comment"] += f"; takedowns: {replayed['comment']}"
    if backed_up:
        _progress("restoring photos main lacks from the backup (storage.restore from=backup)")
        photos = restore(**{"from": "backup"})
        answer["photos"] = photos
        if not photos.get("result"):
            return _failed(f"restored; restoring photos failed: {photos.get('error')}", **answer)
        answer["comment"] += f"; photos: {photos['comment']}"
    _progress("auditing storage against the restored catalog (audit.storage)")
    audited = __salt__["audit.storage"]()  # noqa: F821 (Salt injects the runners)
    answer["audit"] = audited
    if not audited.get("result"):
        return _failed(f"restored; the storage audit failed: {audited.get('error')}", **answer)
    answer["comment"] += f"; audit: {audited.get('comment')}"
    return answer


def restore(dry_run=False, timeout=WEEK, **kwargs):
    """
    Put back into the images bucket, from the backup target ``from`` (only ``backup``: the
    copy ``weed filer.backup`` keeps), every stored photo the bucket lacks or whose current
    version is not the catalog's bytes: the copy with the catalog's SHA-256 is put at its key
    with the audit's key (a new version; nothing is removed). Photos not on the backup are
    counted and left for ``audit.storage``. Then photos pushed after the newest catalog
    backup (after ``storage.restore_catalog``: pending, leased or failed in the catalog, their
    names lost on main) are put back from the backup's copies, walked with one paged
    listing, where main lists nothing at the key and every copy has the same bytes
    (``unstored_restored``; ``unstored_skipped`` by reason), for ``audit.storage``'s adoption
    to mark stored. ``dry_run=True`` changes nothing; a second run restores nothing.

    CLI Example::

        salt-run storage.restore from=backup dry_run=True
        salt-run storage.restore from=backup
    """
    try:
        source = kwargs.get("from")
        if source not in RESTORE_SOURCES:
            raise StorageError(f"from must be one of {', '.join(RESTORE_SOURCES)}, not {source!r}")
        kwarg = {"dry_run": _flag(dry_run, "dry_run"), "timeout": int(_seconds(timeout, "timeout"))}
        db = _db_minion()
        with _client() as client:
            _synced(client, db)
            _progress(f"restoring photos from the backup on {db}")
            made = _watched(client, db, "ccmirror_audit_s3.restore_photos", kwarg, "restore")
    except StorageError as error:
        return _failed(str(error))
    result = made["restore"]
    counts = {name: result[name] for name in RESTORE_COUNTS}
    return {"result": True, "db_minion": db, "comment": result["summary"], **counts,
            "restore": result}  # fmt: skip


def _backup_lag(client, timeout: float) -> dict | None:
    """The backup's lag from the database minion, or None when the site has no backup (or
    no database minion to say so: the cluster's status stands on its own)."""
    try:
        db = _db_minion()
    except StorageError:
        return None
    if not _has_backup(client, _synced(client, db), timeout):
        return None
    lag = _call(client, db, "ccmirror_audit_s3.backup_lag", {}, timeout)["backup-lag"]
    return {key: lag[key] for key in ("behind", "seconds")}


def _has_backup(client, db: str, timeout: float) -> bool:
    return __utils__["runner_tools.has_backup"](client, db, timeout)  # noqa: F821


def _db_minion() -> str:
    """The database minion, as `batch` finds it."""
    found = __salt__["batch.db_minion"]()  # noqa: F821 (Salt injects the runners)
    if not found.get("result"):
        raise StorageError(found.get("error", "no database minion"))
    return found["minion"]


def _whole(value, name: str, least: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = least - 1
    if isinstance(value, bool) or number < least or str(number) != str(value).strip():
        raise StorageError(f"{name} must be a whole number >= {least}, not {value!r}")
    return number


def _run_steps(client, store: str, apply: bool, timeout: float) -> tuple[list[dict], list[str]]:
    """Each step as a call of its own, so each shows its progress as it ends; a step that
    reports a failure (weed's error, volumes left with a copy missing) does not stop the
    next, a minion that does not answer does."""
    steps, failures = [], []
    for number, step in enumerate(STEPS, start=1):
        command = STEP_COMMANDS[step] + (" -apply" if apply else " (dry run)")
        _progress(f"step {number}/{len(STEPS)}: {command} on {store}")
        kwarg = {"apply": apply, "steps": step, "timeout": timeout}
        answer = _answer(client, store, "ccmirror_storage.repair", kwarg, timeout * 1.1 + 60)
        if not isinstance(answer, dict) or "steps" not in answer:
            reason = _reason(answer, timeout)
            raise StorageError(f"{command} on {store}: {reason}")
        report = {key: value for key, value in answer.items() if key != "steps"}
        report.update(answer["steps"][0])
        steps.append(report)
        _progress(f"step {number}/{len(STEPS)}: {answer.get('comment', '')}")
        if not answer.get("result"):
            failures.append(f"{step}: {answer.get('comment')}")
    return steps, failures


def summary_line(answer: dict) -> str:
    """One line for `make lab` and the operator: nodes, objects, bytes and their copies."""
    under = answer["under_replicated"]
    replication = "/".join(answer.get("replication") or []) or "none yet"
    return (
        f"{answer['volume_servers']} volume server(s), {len(answer.get('masters') or [])}"
        f" master(s); {answer['volumes']} volume(s), {answer['files']:,} object(s),"
        f" {answer['bytes']:,} bytes, {answer['stored_bytes']:,} with copies (replication"
        f" {replication}); {answer['free_slots']} free slot(s), {answer['free_bytes']:,} bytes"
        f" free; {under['volumes']} volume(s) under-replicated ({under['files']:,} object(s))"
    ) + _lag_line(answer.get("backup_lag"))


def _lag_line(lag: dict | None) -> str:
    if not lag:
        return ""
    return f"; backup {lag['behind']:,} photo(s), {lag['seconds']:,.0f} s behind"


def _call(client, minion: str, function: str, kwarg: dict, timeout: float) -> dict:
    answer = _answer(client, minion, function, kwarg, timeout)
    if not isinstance(answer, dict) or not answer.get("result"):
        raise StorageError(f"{function} on {minion}: {_reason(answer, timeout)}")
    return answer


def _answer(client, minion: str, function: str, kwarg: dict, timeout: float):
    ret = client.cmd(minion, function, [], tgt_type="list", kwarg=kwarg, timeout=int(timeout))
    return ret.get(minion)


def _reason(answer, timeout: float) -> str:
    if answer is None:
        return f"no answer in {timeout:.0f}s"
    if isinstance(answer, dict):
        return str(answer.get("comment") or answer)[:500]
    return str(answer)[:500]  # e.g. "'ccmirror_storage.status' is not available."


def _storage_minion(client, wanted) -> str:
    """`wanted` if it is a storage minion that answers; else the first `st-*` that does."""
    if wanted is not None and not (isinstance(wanted, str) and wanted.startswith("st-")):
        raise StorageError(f"minion must be a storage minion ({STORAGE_MINIONS}); not {wanted!r}")
    # Salt prints "No minions matched the target" into salt-run's output when a glob matches
    # no key: the runner's own error is the one clear message.
    if not salt.utils.minions.CkMinions(__opts__).check_minions(STORAGE_MINIONS)["minions"]:
        raise StorageError(f"no storage minion ({STORAGE_MINIONS}) answered")
    answered = client.cmd(STORAGE_MINIONS, "test.ping", tgt_type="glob", timeout=PING_TIMEOUT)
    alive = sorted(name for name, ret in answered.items() if ret is True)
    if wanted is not None:
        if wanted not in alive:
            raise StorageError(f"the storage minion {wanted} did not answer")
        return wanted
    if not alive:
        raise StorageError(f"no storage minion ({STORAGE_MINIONS}) answered")
    return alive[0]


def _synced(client, minion: str) -> str:
    """`minion`, with this checkout's modules (a fleet joined before ccmirror_storage was
    written has not synced it yet) and the pillar the master compiles now: the module reads
    site:storage_nodes from the minion's copy, which a highstate does not renew (the e2e
    found it empty after the faults)."""
    client.cmd(minion, "saltutil.sync_all", [], tgt_type="list", timeout=STATUS_TIMEOUT)
    __utils__["runner_tools.refresh_pillar"](client, [minion], STATUS_TIMEOUT)  # noqa: F821
    return minion


def _flag(value, name: str) -> bool:
    try:
        return __utils__["arguments.flag"](value, name)  # noqa: F821
    except ValueError as error:
        raise StorageError(str(error)) from None


def _seconds(value, name: str) -> float:
    """Seconds, more than none: a step of a real repair can take hours."""
    if isinstance(value, bool):
        value = None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds <= 7 * 86400:
        raise StorageError(f"{name} must be a number of seconds from 1 to a week; not {value!r}")
    return seconds
