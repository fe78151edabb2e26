"""The `audit` runner: the storage audit from the master.

``audit.storage`` walks the storage minion's files (``ccmirror_audit.inventory`` on the
first ``st-*``), carries the inventory to the database minion and compares it with the
catalog there (``ccmirror_audit.compare``, which runs ``harvester audit-storage`` with the
migrate config): photos whose file is missing or differs go back to the download queue,
files the catalog does not know are reported. The database records the result, which
``harvester status`` and ``batch.status`` show.

The inventory reaches the database minion one of two ways (``transfer=``):

- ``push`` (chosen by ``auto`` when the master allows it): ``cp.push`` to the master, then
  ``cp.cache_file salt://<st-id>/ccmirror_audit/<file>`` through the ``minionfs`` file
  server, at the file server's speed (~50 MB/s measured here). The master needs
  ``file_recv: True``, ``file_recv_max_size`` (MB) above the inventory (about 55 bytes per
  file) and ``minionfs`` in ``fileserver_backend``.
- ``relay``: the runner carries it in pieces (``read_chunk`` on the storage minion,
  ``write_chunk`` on the database minion, each under the event bus's 1 MiB). It needs
  nothing from the master's config, but Salt's job path moves only ~0.1 MB/s (measured
  here: a million files' inventory in about ten minutes).

``audit.backup`` audits the backup target (``weed filer.backup``'s copy, #20) the same
way: ``ccmirror_audit_s3.backup_check`` on the database minion walks the backup's keys once,
names every stored photo and manifest it lacks, and copies them from main with the sink's
key. ``storage.status``'s lag sees only the backup's front; this sees a hole behind it.

The database minion is found as ``batch`` finds it: the first ``db-*`` with the migrate
config (master option ``ccmirror_migrate_config``).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

__load__ = ["storage", "backup"]

STORAGE_MINIONS = "st-*"
CALL_TIMEOUT = 120
DAY = 24 * 3600
PROGRESS_BYTES = 1 << 20  # a relay progress line every MiB (~10 s)
TRANSFERS = ("auto", "push", "relay")
PROGRESS_TAG = "ccmirror/audit/progress"  # fired by ccmirror_audit.inventory
PUSHED_AS = "ccmirror_audit/{storage}.tsv.gz"  # below the master's minions/<id>/files/

__opts__: dict = {}  # replaced by Salt's loader


class AuditError(RuntimeError):
    """A step that failed; the message says which and why."""


def _progress(message: str) -> None:
    """A progress event for salt-run's caller; silent outside a job (_utils/runner_tools.py)."""
    event = globals().get("__jid_event__")
    __utils__["runner_tools.progress"](event, message, log, "audit")  # noqa: F821 (Salt injects it)


def _client():
    return __utils__["runner_tools.local_client"](__opts__)  # noqa: F821


def _failed(message: str, **extra) -> dict[str, Any]:
    """One clear error; salt-run and orchestration see the job failed."""
    __context__["retcode"] = 1  # noqa: F821 (Salt injects it)
    log.error("audit: %s", message)
    return {"result": False, "error": message, "retcode": 1, **extra}


def storage(
    full=None,
    dry_run=False,
    storage=None,
    clock_margin=2,
    timeout=7 * DAY,
    samples=20,
    transfer=None,
    progress_seconds=30,
):
    """
    Audit storage against the catalog: walk every file on the storage minion (``storage=``,
    default the first ``st-*`` that answers), hash it, and compare with what the catalog
    says was stored. A photo whose file is missing or has other bytes is requeued (the next
    lease fetches it again); files the catalog does not know are counted and the first
    ``samples`` named, never deleted; photos stored after the walk began (less
    ``clock_margin`` seconds) wait for the next audit. ``full=False`` re-hashes only files
    whose size or mtime changed since the last walk. ``dry_run=True`` changes nothing.
    ``timeout`` bounds each of the walk and the comparison (seconds). ``transfer`` is how
    the inventory reaches the database minion: ``push`` (cp.push and minionfs), ``relay``
    (through this runner, slow) or ``auto`` (push when the master allows it; see the
    module docstring). Safe to run twice: a second run finds what the first left. The
    walk's progress (files, bytes, rate, ETA from the last walk) is shown every
    ``progress_seconds``. Its end (the audit's counts, or the error) is posted to the
    operator's webhook (pillar ``monitoring:webhook_url``, if set).

    On a site whose storage is an S3 bucket (pillar ``site:storage_backend`` seaweedfs or
    spaces) there is no tree to walk: the database minion lists the bucket's versions
    (``ccmirror_audit_s3.audit``), restores an overwritten photo's first version, requeues
    missing and corrupt photos and counts unknown keys, never deleting one; ``dry_run``,
    ``samples``, ``clock_margin``, ``timeout`` and ``progress_seconds`` mean the same there,
    and ``full``, ``storage`` and ``transfer`` are refused (they are the walk's).

    CLI Example::

        salt-run audit.storage
        salt-run audit.storage full=False
        salt-run audit.storage dry_run=True --out=json
        salt-run audit.storage transfer=relay
        salt-run audit.storage samples=100 progress_seconds=10
    """
    started = time.monotonic()
    seconds: dict[str, float] = {}
    try:
        timeout = _positive(timeout, "timeout")
        samples = _positive(samples, "samples", zero=True)
        clock_margin = _positive(clock_margin, "clock_margin", zero=True)
        progress_seconds = _positive(progress_seconds, "progress_seconds", zero=True)
    except AuditError as error:
        return _failed(str(error))  # bad input: nothing run, nothing posted
    dry_run = _truthy(dry_run)
    try:
        with _client() as client:
            db = _db_minion()
            backend = _backend(client, db)
            if backend != "rsync":
                _refuse_walk_options(backend, full=full, storage=storage, transfer=transfer)
                checked = (dry_run, samples, clock_margin, timeout, progress_seconds)
                return _notified(_audit_bucket(client, db, backend, *checked, started=started))
            full, transfer = _truthy(True if full is None else full), transfer or "auto"
            if transfer not in TRANSFERS:
                choices = ", ".join(TRANSFERS)
                raise AuditError(f"transfer must be one of {choices}, not {transfer!r}")
            store = str(storage) if storage else _storage_minion(client)
            # The module as the master serves it now, as deploy and fleet do before a call.
            client.cmd([store, db], "saltutil.sync_all", tgt_type="list", timeout=CALL_TIMEOUT)
            _progress(f"walking {store}'s storage ({'full' if full else 'changed files'} hash)")
            step = time.monotonic()
            inventory = _inventory(client, store, full, progress_seconds, timeout)
            seconds["inventory"] = round(time.monotonic() - step, 1)
            how = _transfer_method(transfer, inventory["size"])
            _progress(f"{store}: {inventory['comment']}; {how} of the inventory to {db}")
            step = time.monotonic()
            if how == "push":
                source = _push(client, store, inventory["path"])
            else:
                source = f"{store}.tsv.gz"
                _relay(client, store, inventory["path"], db, source, inventory["size"])
            seconds["transfer"] = round(time.monotonic() - step, 1)
            _progress(f"comparing with the catalog on {db}" + (" (dry run)" if dry_run else ""))
            step = time.monotonic()
            compared = _call(
                client,
                db,
                "ccmirror_audit.compare",
                [source],
                kwarg={
                    "sha256": inventory["sha256"],
                    "dry_run": dry_run,
                    "samples": samples,
                    "clock_margin": clock_margin,
                    "timeout": timeout,
                },
                timeout=timeout,
            )
            seconds["compare"] = round(time.monotonic() - step, 1)
    except AuditError as error:
        return _notified(_failed(str(error), seconds=seconds))
    seconds["total"] = round(time.monotonic() - started, 1)
    audit = compared["audit"]
    return _notified(
        {
            "result": True,
            "backend": "rsync",
            "storage": store,
            "db_minion": db,
            "comment": audit["summary"],
            "audit": audit,
            "transfer": how,
            "inventory": {
                key: inventory.get(key)
                for key in ("files", "bytes", "hashed", "reused", "unreadable", "skipped", "size")
            },
            "seconds": seconds,
        }
    )


def backup(dry_run=False, margin_minutes=10, timeout=7 * DAY):
    """
    Audit the backup target against the catalog: one walk of the backup's keys on the
    database minion, every photo stored more than ``margin_minutes`` ago and every manifest
    main lists looked up in it, and what it lacks copied from main (each version, where
    ``weed filer.backup`` puts it, with the sink's key: it adds, it cannot remove). Answers
    ``missing`` and ``manifests_missing`` (found), ``filled`` (copied), ``not_on_main``
    (missing on main too: ``audit.storage``'s to requeue) and ``whole``. ``dry_run=True``
    copies nothing. A second run finds nothing missing. Refused on a site with no backup
    target. Its end is posted to the operator's webhook, as ``audit.storage``'s.

    CLI Example::

        salt-run audit.backup dry_run=True
        salt-run audit.backup
    """
    try:
        timeout = _positive(timeout, "timeout")
        margin = _positive(margin_minutes, "margin_minutes", zero=True)
    except AuditError as error:
        return _failed(str(error))
    dry_run = _truthy(dry_run)
    try:
        with _client() as client:
            db = _db_minion()
            has_backup = __utils__["runner_tools.has_backup"]  # noqa: F821
            if _backend(client, db) == "rsync" or not has_backup(client, db, CALL_TIMEOUT):
                raise AuditError("this site has no backup target (pillar site:backup_nodes or"
                                 " site:backup_endpoint) to audit")  # fmt: skip
            client.cmd([db], "saltutil.sync_all", tgt_type="list", timeout=CALL_TIMEOUT)
            _progress(f"auditing the backup target from {db}" + (" (dry run)" if dry_run else ""))
            kwarg = {"dry_run": dry_run, "margin_minutes": margin, "timeout": timeout}

            def line_of(data: dict) -> str | None:
                return data.get("message") if data.get("audit") == "backup" else None

            answer = _watched(client, db, "ccmirror_audit_s3.backup_check", kwarg,
                              timeout + 60, line_of)  # fmt: skip
    except AuditError as error:
        return _notified(_failed(str(error)))
    check = answer["backup-check"]
    counts = ("missing", "manifests_missing", "filled", "not_on_main", "whole")
    return _notified({"result": True, "db_minion": db, "comment": check["summary"],
                      **{name: check[name] for name in counts}, "backup": check})  # fmt: skip


def _notified(ret: dict) -> dict:
    """`ret` after its end (the summary's counts, or the error) is posted to the operator's
    webhook (_utils/batch_notify.py)."""
    return __utils__["batch_notify.with_notice"](__opts__, ret, "audit")  # noqa: F821


def _backend(client, db: str) -> str:
    """The site's storage backend as the database minion's pillar says now: refreshed first
    (its copy in memory can be older than the site's switch), then read unmasked (Salt 3008
    masks pillar values in returns; a backend's name is no secret). As deploy's _check_pins."""
    __utils__["runner_tools.refresh_pillar"](client, [db], CALL_TIMEOUT)  # noqa: F821
    kwarg = {"default": "rsync", "unmask": True}
    answer = _answer(client, db, "pillar.get", ["site:storage_backend"], kwarg)
    if not isinstance(answer, str) or not answer:
        raise AuditError(f"{db} did not say the site's storage backend: {str(answer)[:200]}")
    return answer


def _refuse_walk_options(backend: str, **given) -> None:
    """The walk's own options on a bucket: one clear error rather than an audit that does
    not do what was asked (`full=True` would hash no byte there: a listing gives MD5s)."""
    named = sorted(name for name, value in given.items() if value is not None)
    if named:
        raise AuditError(
            f"{', '.join(named)}: only for rsync storage; this site's storage is {backend}"
            " (an S3 bucket: its listing is audited, no tree is walked)"
        )


def _audit_bucket(
    client,
    db: str,
    backend: str,
    dry_run: bool,
    samples: int,
    clock_margin: int,
    timeout: int,
    progress_seconds: int,
    started: float,
) -> dict[str, Any]:
    """ccmirror_audit_s3.audit on the database minion, its progress shown as it comes."""
    client.cmd([db], "saltutil.sync_all", tgt_type="list", timeout=CALL_TIMEOUT)
    _progress(f"auditing the {backend} bucket from {db}" + (" (dry run)" if dry_run else ""))
    kwarg = {
        "dry_run": dry_run,
        "samples": samples,
        "clock_margin": clock_margin,
        "timeout": timeout,
        "progress_seconds": progress_seconds,
    }

    def line_of(data: dict) -> str | None:
        return data.get("message") if data.get("audit") == "s3" else None

    step = time.monotonic()
    answer = _watched(client, db, "ccmirror_audit_s3.audit", kwarg, timeout + 60, line_of)
    audit = answer["audit"]
    return {
        "result": True,
        "backend": backend,
        "storage": audit["storage"],  # s3://<bucket>
        "endpoint": audit["root"],
        "db_minion": db,
        "comment": audit["summary"],
        "audit": audit,
        # Overwritten or deleted photos whose first version is still there; made latest again
        # unless a dry run (those with no good version left are `corrupt`, and requeued).
        "overwritten": audit["restored"],
        "restored": 0 if dry_run else audit["restored"],
        "requeued": audit["requeued"],
        "seconds": {
            "audit": round(time.monotonic() - step, 1),
            "total": round(time.monotonic() - started, 1),
        },
    }


def _call(client, minion: str, function: str, arg=(), kwarg=None, timeout=CALL_TIMEOUT) -> dict:
    """One function on one minion; its answer, or AuditError with the minion's reason."""
    return _checked(
        minion, function, _answer(client, minion, function, arg, kwarg, timeout), timeout
    )


def _inventory(client, store: str, full: bool, progress_seconds: int, timeout: int) -> dict:
    """ccmirror_audit.inventory on `store`, its progress events shown as this runner's."""
    kwarg = {"full": full, "progress_seconds": progress_seconds}

    def line_of(data: dict) -> str | None:
        return _walk_line(data) if data.get("storage") == store else None

    return _watched(client, store, "ccmirror_audit.inventory", kwarg, timeout, line_of)


def _watched(
    client, minion: str, function: str, kwarg: dict, timeout: int, line_of: Callable
) -> dict:
    """`function` on `minion`, each of its progress events that `line_of` makes a line of
    shown as this runner's, until it returns, its job is gone, or `timeout`."""
    utils = __utils__  # noqa: F821 (Salt injects it)
    # Called back from _utils/: the runner's own _progress has no dunders there.
    show = utils["runner_tools.reporter"](globals().get("__jid_event__"), log, "audit")
    try:
        answer = utils["runner_tools.watched_call"](
            __opts__, client, minion, function, kwarg, timeout, PROGRESS_TAG, line_of, show
        )
    except RuntimeError as error:
        raise AuditError(str(error)) from None
    return _checked(minion, function, answer, timeout)


def _walk_line(data: dict) -> str:
    eta = data.get("eta_seconds")
    return (
        f"{data['storage']}: walked {data['files']:,} files, {data['bytes']:,} bytes"
        f" ({data['hashed']:,} hashed), {data['files_per_second']:,} files/s"
        + (f", about {eta // 60} min left" if eta is not None else "")
    )


def _checked(minion: str, function: str, answer, timeout: int) -> dict:
    """A function's answer, or AuditError with the minion's reason."""
    if not isinstance(answer, dict):
        raise AuditError(
            f"{function} on {minion}: "
            + (f"no answer in {timeout}s" if answer is None else str(answer)[:300])
        )
    if not answer.get("result"):
        raise AuditError(f"{function} on {minion}: {answer.get('comment') or answer}")
    return answer


def _answer(client, minion: str, function: str, arg=(), kwarg=None, timeout=CALL_TIMEOUT):
    ret = client.cmd(
        minion, function, list(arg), tgt_type="list", kwarg=kwarg or {}, timeout=timeout
    )
    return ret.get(minion)


def _transfer_method(transfer: str, size: int) -> str:
    """`push` when asked, or when `auto` and the master takes pushed files this large and
    serves them (minionfs); `relay` otherwise."""
    if transfer != "auto":
        return transfer
    limit = float(__opts__.get("file_recv_max_size", 100)) * 1024 * 1024
    backends = __opts__.get("fileserver_backend") or []
    serves = "minionfs" in (backends if isinstance(backends, list) else [backends])
    return "push" if __opts__.get("file_recv") and serves and size <= limit else "relay"


def _push(client, store: str, path: str) -> str:
    """cp.push the inventory to the master; its salt:// URL through minionfs."""
    upload = PUSHED_AS.format(storage=store)
    pushed = _answer(client, store, "cp.push", [path], {"upload_path": f"/{upload}"})
    if pushed is not True:
        raise AuditError(
            f"cp.push of the inventory from {store} failed ({pushed!r}): the master needs"
            " file_recv: True and a file_recv_max_size above its size; or use transfer=relay"
        )
    mount = str(__opts__.get("minionfs_mountpoint") or "").strip("/")
    return "salt://" + "/".join(part for part in (mount, store, upload) if part)


def _relay(client, source: str, path: str, target: str, name: str, size: int) -> None:
    """Copy `path` on `source` to `name` on `target`, a piece at a time through the master;
    `compare` checks the whole file's sha256 at the end."""
    offset, reported = 0, 0
    while True:
        piece = _call(client, source, "ccmirror_audit.read_chunk", [path, offset])
        wrote = _call(client, target, "ccmirror_audit.write_chunk", [name, offset, piece["data"]])
        offset = wrote["size"]
        if offset - reported >= PROGRESS_BYTES:
            reported = offset
            _progress(f"copied {offset:,} of {size:,} bytes of the inventory to {target}")
        if piece["eof"]:
            return
        if not base64.b64decode(piece["data"]):
            raise AuditError(f"the inventory on {source} ended at {offset} of {size} bytes")


def _storage_minion(client) -> str:
    answered = client.cmd(STORAGE_MINIONS, "test.ping", tgt_type="glob", timeout=CALL_TIMEOUT)
    alive = sorted(minion for minion, ret in answered.items() if ret is True)
    if not alive:
        raise AuditError(f"no storage minion ({STORAGE_MINIONS}) answered")
    return alive[0]


def _db_minion() -> str:
    """The database minion, as `batch` finds it."""
    found = __salt__["batch.db_minion"]()  # noqa: F821 (Salt injects the runners)
    if not found.get("result"):
        raise AuditError(found.get("error", "no database minion"))
    return found["minion"]


def _positive(value, name: str, zero: bool = False) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or number < (0 if zero else 1):
        kind = "a whole number >= 0" if zero else "a positive whole number"
        raise AuditError(f"{name} must be {kind}, not {value!r}")
    return number


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "0", "off", "")
    return bool(value)
