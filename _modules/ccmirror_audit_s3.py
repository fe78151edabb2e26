"""Salt execution module: the storage audit of a site whose photos are in an S3 bucket
(SeaweedFS or Spaces), on the database minion, for `salt-run audit.storage`.

``audit`` runs ``harvester audit-storage --s3`` (harvester/audit/s3.py) with the settings
Salt renders on db-1 (salt/db/audit.sls: the migrate login and the bucket with the audit's
own S3 key, root's, 0600). The key stays in that file: it is on no command line, in no
environment, log line or return. The harvester's progress lines (its stderr, one per
``progress_seconds``) go to the master as the event ``ccmirror/audit/progress`` as they
come, which the runner shows as its own; the rsync audit's walk sends the same tag
(``_modules/ccmirror_audit.py``).

``import_tree`` (``salt-run storage.import``) runs ``harvester import-tree`` with the same
settings and the same relay (its events say ``{"audit": "import"}``): it needs what the audit
has, the catalog's migrate login and an S3 key that reads and writes the bucket.

``backup_lag`` and ``restore_photos`` (``salt-run storage.status`` / ``storage.restore``) run
``harvester backup-lag`` and ``restore-photos --from backup`` (harvester/backup/) with the same
settings file, which then carries ``backup_target:`` (the backup bucket and a reader's key)
beside ``storage:``; restore's progress goes out as ``{"audit": "restore"}`` events.
``backup_check`` (``salt-run audit.backup``) runs ``harvester backup-check``: the backup
compared exactly with the catalog and main's manifests, what it lacks copied with the sink's
key (``backup_target:``'s ``sink_access_key``); its progress is ``{"audit": "backup"}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
from collections import deque
from datetime import UTC, datetime

log = logging.getLogger(__name__)

__virtualname__ = "ccmirror_audit_s3"
__load__ = ["audit", "import_tree", "backup_lag", "backup_check", "restore_photos"]
# Replaced by Salt's loader when it loads the module; named here for readers and linters.
__salt__: dict = {}
__opts__: dict = {}
__context__: dict = {}

DEFAULTS = {
    "venv": "/opt/ccmirror/venv",
    "audit_config": "/etc/ccmirror/audit.yaml",  # salt/db/defaults.yaml
}
PROGRESS_TAG = "ccmirror/audit/progress"
EVENT_KIND = "s3"  # the runner tells this audit's events from a walk's by it
IMPORT_KIND = "import"  # storage.import's events
RESTORE_KIND = "restore"  # storage.restore's events
BACKUP_KIND = "backup"  # audit.backup's events
LAG_TIMEOUT = 300
IMPORT_REPORTS = "/var/lib/ccmirror/imports"  # import-<utc>.jsonl: the files not uploaded
SAMPLE = 20
AUDIT_TIMEOUT = 24 * 3600
STDERR_LINES = 20  # kept for the error message of a failed run


def __virtual__():
    return __virtualname__


def _setting(name: str) -> str:
    return str(__salt__["config.get"](f"ccmirror:{name}", "") or DEFAULTS[name])


def _failed(message: str) -> dict:
    __context__["retcode"] = 1
    log.error("ccmirror_audit_s3: %s", message)
    return {"result": False, "comment": message}


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "0", "off", "")
    return bool(value)


def _relay(line: str, kind: str = EVENT_KIND) -> None:
    """A progress line to the minion's log and, as an event, to the master."""
    log.info("storage %s: %s", "import" if kind == IMPORT_KIND else "audit", line)
    if __opts__.get("file_client") != "local":  # a minion of a master: tell it too
        with contextlib.suppress(Exception):
            __salt__["event.fire_master"]({"audit": kind, "message": line}, PROGRESS_TAG)


def run_relayed(
    argv: list[str], timeout: float, kind: str = EVENT_KIND
) -> tuple[int | None, str, list[str]]:
    """Run `argv`; each line it writes to stderr relayed as it comes. Returns its exit code
    (None when it was killed after `timeout` seconds), its stdout, its last stderr lines."""
    process = subprocess.Popen(  # noqa: S603 (a fixed argv, no shell)
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(process.stdout.read()), daemon=True)
    reader.start()
    killer = threading.Timer(float(timeout), process.kill)
    killer.start()
    tail: deque[str] = deque(maxlen=STDERR_LINES)
    try:
        for raw in process.stderr:
            line = raw.strip()
            if line:
                tail.append(line)
                _relay(line, kind)
        code = process.wait()
        reader.join()
    finally:
        timed_out = not killer.is_alive()
        killer.cancel()
    return (None if timed_out and code < 0 else code), "".join(out), list(tail)


def audit(
    dry_run=False, samples=SAMPLE, clock_margin=2, timeout=AUDIT_TIMEOUT, progress_seconds=30
):
    """
    On the database minion of a site whose storage is an S3 bucket: list the bucket's
    ``images/`` (every version), compare sizes and MD5s with ``stored_images``, copy an
    overwritten photo's first version back onto its key, send missing and corrupt photos back
    to ``pending``, and count keys no stored photo names (never deleted): ``harvester
    audit-storage --s3`` with the audit settings (pillar ``ccmirror:audit_config``, default
    /etc/ccmirror/audit.yaml, rendered by the db states). ``dry_run=True`` copies and changes
    nothing; photos stored after the listing began, less ``clock_margin`` seconds, wait for
    the next audit; the first ``samples`` keys of each kind are named. Progress every
    ``progress_seconds`` goes to the master as ``ccmirror/audit/progress`` events.

    CLI Example::

        salt db-1 ccmirror_audit_s3.audit dry_run=True
        salt db-1 ccmirror_audit_s3.audit samples=100 timeout=86400
    """
    config = _setting("audit_config")
    if not os.path.isfile(config):
        return _failed(
            f"no S3 audit settings at {config}: apply the db states (state.apply db) on a site"
            " whose pillar site:storage_backend is not rsync"
        )
    try:
        numbers = [int(samples), int(clock_margin), int(progress_seconds), int(timeout)]
    except (TypeError, ValueError):
        return _failed("samples, clock_margin, progress_seconds and timeout are whole numbers")
    if min(numbers) < 0 or numbers[3] == 0:
        return _failed("samples, clock_margin and progress_seconds >= 0, timeout > 0, please")
    argv = [
        os.path.join(_setting("venv"), "bin", "harvester"),
        "--config",
        config,
        "audit-storage",
        "--s3",
        "--json",
        "--samples",
        str(numbers[0]),
        "--clock-margin",
        str(numbers[1]),
        "--progress-seconds",
        str(numbers[2]),
    ]
    if _bool(dry_run):
        argv.append("--dry-run")
    return _harvester_json(argv, numbers[3], EVENT_KIND, "audit")


def import_tree(
    path=None,
    dry_run=False,
    report=None,
    concurrency=16,
    samples=SAMPLE,
    timeout=AUDIT_TIMEOUT,
    progress_seconds=30,
):
    """
    On the database minion of a site whose storage is an S3 bucket: adopt the directory
    ``path`` on this minion (the old system's rsync target, Flickr's file names, or this
    project's rsync layout, ``images/<aa>/<bb>/<photo_id>.<ext>``): every file that is a
    whole image of a catalog photo, of the format the catalog names, is put into the bucket
    with its SHA-256 (the downloader's own push) and its photo marked stored, so it is never
    fetched again: ``harvester import-tree`` with the audit settings (pillar
    ``ccmirror:audit_config``, default /etc/ccmirror/audit.yaml). Files it cannot match or
    that are not whole images are never uploaded: each is a JSON line in ``report`` (default
    /var/lib/ccmirror/imports/import-<UTC time>.jsonl), the first ``samples`` of each kind in
    the return. Running it again changes nothing. ``dry_run=True`` judges every file and
    changes nothing; ``concurrency`` PUTs at once. Progress every ``progress_seconds`` goes to
    the master as ``ccmirror/audit/progress`` events (``{"audit": "import"}``).

    CLI Example::

        salt db-1 ccmirror_audit_s3.import_tree path=/srv/old-mirror
        salt db-1 ccmirror_audit_s3.import_tree path=/srv/old-mirror dry_run=True
    """
    config = _setting("audit_config")
    if not isinstance(path, str) or not os.path.isabs(path):
        return _failed(f"path must be an absolute directory on this minion, not {path!r}")
    if not os.path.isfile(config):
        return _failed(
            f"no S3 settings at {config}: apply the db states (state.apply db) on a site"
            " whose pillar site:storage_backend is not rsync"
        )
    try:
        numbers = [int(samples), int(progress_seconds), int(concurrency), int(timeout)]
    except (TypeError, ValueError):
        return _failed("samples, progress_seconds, concurrency and timeout are whole numbers")
    if min(numbers[:2]) < 0 or min(numbers[2:]) < 1:
        return _failed("samples and progress_seconds >= 0, concurrency and timeout > 0, please")
    if report is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        report = os.path.join(IMPORT_REPORTS, f"import-{stamp}.jsonl")
    argv = [
        os.path.join(_setting("venv"), "bin", "harvester"),
        "--config",
        config,
        "import-tree",
        path,
        "--json",
        "--report",
        str(report),
        "--samples",
        str(numbers[0]),
        "--progress-seconds",
        str(numbers[1]),
        "--concurrency",
        str(numbers[2]),
    ]
    if _bool(dry_run):
        argv.append("--dry-run")
    return _harvester_json(argv, numbers[3], IMPORT_KIND, "import")


def backup_lag(probe_sink=False, timeout=LAG_TIMEOUT):
    """
    On the database minion: how far the backup target (``weed filer.backup``'s) is behind the
    catalog, in photos and seconds (``harvester backup-lag``, a binary search over the store
    order with a few dozen probes), with the audit settings' ``backup_target:``.
    ``probe_sink=True`` also PUTs ``probes/<minion>/sink.txt`` with the sink's key, which
    backup-check copies with: ``orch.rotate`` checks both backup keys db-1 holds this way.

    CLI Example::

        salt db-1 ccmirror_audit_s3.backup_lag
        salt db-1 ccmirror_audit_s3.backup_lag probe_sink=True
    """
    argv = _settings_argv("backup-lag")
    if isinstance(argv, dict):
        return argv
    if _bool(probe_sink):
        argv.append("--probe-sink")
    return _harvester_json(argv, _positive(timeout, LAG_TIMEOUT), RESTORE_KIND, "backup-lag")


def backup_check(dry_run=False, margin_minutes=10, timeout=AUDIT_TIMEOUT):
    """
    On the database minion: whether the backup target holds a copy of every photo stored
    ``margin_minutes`` before now and of every manifest main lists, by one walk of the
    backup's keys (``harvester backup-check``); what it lacks is copied from main's versions
    with the sink's key, where ``weed filer.backup`` would have put it. ``dry_run=True``
    counts and copies nothing; a second run finds nothing missing. Progress as
    ``{"audit": "backup"}`` events.

    CLI Example::

        salt db-1 ccmirror_audit_s3.backup_check dry_run=True
        salt db-1 ccmirror_audit_s3.backup_check
    """
    try:
        margin = int(margin_minutes)
    except (TypeError, ValueError):
        margin = -1
    if margin < 0:
        return _failed(f"margin_minutes is a whole number of minutes >= 0, not {margin_minutes!r}")
    argv = _settings_argv("backup-check", "--margin-minutes", str(margin))
    if isinstance(argv, dict):
        return argv
    if _bool(dry_run):
        argv.append("--dry-run")
    return _harvester_json(argv, _positive(timeout, AUDIT_TIMEOUT), BACKUP_KIND, "backup-check")


def restore_photos(dry_run=False, timeout=AUDIT_TIMEOUT):
    """
    On the database minion: every stored photo missing from the bucket, or whose current
    version is not the catalog's bytes, is put back from the backup target's copy with the
    catalog's SHA-256 (``harvester restore-photos --from backup``); the rest are counted fine
    or not on the backup (left for the storage audit). Then photos the catalog has not stored
    whose names main lost (pushed after the newest catalog backup) are put back from the
    backup for the storage audit to adopt (``unstored_restored``, ``unstored_skipped``).
    ``dry_run=True`` changes nothing; a second run restores nothing. Progress as
    ``{"audit": "restore"}`` events.

    CLI Example::

        salt db-1 ccmirror_audit_s3.restore_photos dry_run=True
    """
    argv = _settings_argv("restore-photos", "--from", "backup")
    if isinstance(argv, dict):
        return argv
    if _bool(dry_run):
        argv.append("--dry-run")
    return _harvester_json(argv, _positive(timeout, AUDIT_TIMEOUT), RESTORE_KIND, "restore")


def _settings_argv(*command: str) -> list[str] | dict:
    config = _setting("audit_config")
    if not os.path.isfile(config):
        return _failed(f"no S3 settings at {config}: apply the db states (state.apply db)")
    harvester = os.path.join(_setting("venv"), "bin", "harvester")
    return [harvester, "--config", config, *command, "--json"]


def _positive(value, default: int) -> int:
    try:
        return max(int(value), 1)
    except (TypeError, ValueError):
        return default


def _harvester_json(argv: list[str], timeout: int, kind: str, key: str) -> dict:
    """Run a `harvester ... --json` command, relayed; its result under `key`."""
    name = "harvester audit-storage --s3" if kind == EVENT_KIND else f"harvester {argv[3]}"
    try:
        code, stdout, tail = run_relayed(argv, timeout, kind)
    except OSError as exc:
        return _failed(f"cannot run {argv[0]}: {exc}")
    if code is None:
        return _failed(f"{name}: not done after {timeout}s (stopped)")
    if code != 0:
        return _failed(tail[-1] if tail else f"{name}: exit code {code}")
    try:
        result = json.loads(stdout)
    except ValueError:
        return _failed(f"{name} said: {stdout.strip()[:300]}")
    return {"result": True, "comment": result.get("summary", ""), key: result}
