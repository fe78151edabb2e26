"""Salt execution module: the catalog's backups on the database minion.

``backup`` (the minion's schedule runs it, salt/db/backup.sls), ``restore`` (``salt-run
storage.restore_catalog``) and ``backups`` run ``harvester backup-catalog``, ``restore-catalog``
and ``catalog-backups`` with the settings Salt renders on db-1 (root over the unix socket and
db-1's own S3 key, root's, 0600): the key is on no command line, in no environment, log line
or return.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess

log = logging.getLogger(__name__)

__virtualname__ = "ccmirror_backup"
__load__ = ["backup", "restore", "backups"]
# Replaced by Salt's loader when it loads the module; named here for readers and linters.
__salt__: dict = {}
__context__: dict = {}

DEFAULTS = {
    "venv": "/opt/ccmirror/venv",
    "backup_config": "/etc/ccmirror/catalog-backup.yaml",  # salt/db/defaults.yaml db:backup
}
TIMEOUT = 24 * 3600
ERROR_CHARS = 500


def __virtual__():
    return __virtualname__


def _setting(name: str) -> str:
    return str(__salt__["config.get"](f"ccmirror:{name}", "") or DEFAULTS[name])


def _failed(message: str) -> dict:
    __context__["retcode"] = 1
    log.error("ccmirror_backup: %s", message)
    return {"result": False, "comment": message}


def _harvester(*args: str, timeout) -> dict:
    """Run `harvester --config SETTINGS ARGS --json`: its JSON, or a failure with its error."""
    config = _setting("backup_config")
    if not os.path.isfile(config):
        return _failed(
            f"no catalog backup settings at {config}: apply the db states (state.apply db) on a"
            " site whose pillar site:storage_backend is not rsync"
        )
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        return _failed(f"timeout must be a number of seconds, not {timeout!r}")
    argv = [os.path.join(_setting("venv"), "bin", "harvester"), "--config", config, *args]
    try:
        done = subprocess.run(  # noqa: S603 (a fixed argv, no shell)
            [*argv, "--json"], capture_output=True, text=True, timeout=seconds, check=False
        )
    except subprocess.TimeoutExpired:
        return _failed(f"harvester {args[0]}: not done after {seconds:.0f}s (stopped)")
    except OSError as exc:
        return _failed(f"cannot run {argv[0]}: {exc}")
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        return _failed(said[-1][:ERROR_CHARS] if said else f"exit code {done.returncode}")
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        return _failed(f"harvester {args[0]} said: {done.stdout.strip()[:300]}")
    return {"result": True, "comment": _summary(answer), args[0]: answer}


def _summary(answer) -> str:
    if isinstance(answer, dict):
        return str(answer.get("summary", ""))
    return f"{len(answer)} backup(s)"


def backup(prefix="catalog/", keep=7, timeout=TIMEOUT):
    """
    Back the catalog up now: one consistent ``mariadb-dump --single-transaction`` through
    zstd into ``<prefix><db>-<stamp>.sql.zst`` in the bucket, then all but the ``keep`` newest
    get a delete marker. The minion's schedule runs this (salt/db/backup.sls).

    CLI Example::

        salt db-1 ccmirror_backup.backup
        salt db-1 ccmirror_backup.backup keep=14
    """
    try:
        keep = int(keep)
    except (TypeError, ValueError):
        return _failed(f"keep must be a whole number, not {keep!r}")
    return _harvester(
        "backup-catalog", "--prefix", str(prefix), "--keep", str(keep), timeout=timeout
    )


def restore(key=None, force=False, prefix="catalog/", source="auto", timeout=TIMEOUT):
    """
    Load the newest catalog backup (or ``key``) into this minion's catalog, which must have
    no photo (a fresh db-1) unless ``force=True``, with the databases dumped beside it (the
    filer store's). Staged in a database of its own and swapped in with one RENAME TABLE: a
    failure leaves each database as it was. ``source``: ``bucket``, ``backup`` (the backup
    target's copies), or ``auto`` (the bucket when it lists a backup, else the backup target).

    CLI Example::

        salt db-1 ccmirror_backup.restore
        salt db-1 ccmirror_backup.restore source=backup
        salt db-1 ccmirror_backup.restore key=catalog/ccmirror-20261205T031500000000Z.sql.zst
    """
    args = ["restore-catalog", "--prefix", str(prefix), "--from", str(source)]
    if key:
        args += ["--key", str(key)]
    if str(force).strip().lower() in ("true", "yes", "1", "on"):
        args.append("--force")
    return _harvester(*args, timeout=timeout)


def backups(prefix="catalog/", timeout=120):
    """
    The catalog backups in the bucket, oldest first (key, bytes, stamp).

    CLI Example::

        salt db-1 ccmirror_backup.backups
    """
    return _harvester("catalog-backups", "--prefix", str(prefix), timeout=timeout)
