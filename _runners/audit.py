"""The `audit` runner: the storage audit from the master.

``audit.storage`` walks the storage minion's files (``ccmirror_audit.inventory`` on the
first ``st-*``), carries the inventory to the database minion and compares it with the
catalog there (``ccmirror_audit.compare``, which runs ``harvester audit-storage`` with the
migrate config): photos whose file is missing or differs go back to the download queue,
files the catalog does not know are reported. The database records the result, which
``harvester status`` and ``batch.status`` show.

The inventory travels through the master in pieces (``read_chunk`` on the storage minion,
``write_chunk`` on the database minion, each under the event bus's 1 MiB): this needs
nothing in the master's config. ``cp.push`` would need ``file_recv: True`` and a
``file_recv_max_size`` above the inventory's size (100 MB by default: about two million
files), and the file would still have to reach the database minion (``minionfs`` or a copy
into a file root). The database minion is found as ``batch`` finds it: the first
``db-*`` or ``master*`` with the migrate config (master option ``ccmirror_migrate_config``).
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import salt.client

log = logging.getLogger(__name__)

__load__ = ["storage"]

STORAGE_MINIONS = "st-*"
DB_CANDIDATES = "db-* or master*"
MIGRATE_CONFIG = "/etc/ccmirror/migrate.yaml"
CALL_TIMEOUT = 120
DAY = 24 * 3600
PROGRESS_BYTES = 16 << 20  # a transfer progress line every 16 MiB

__opts__: dict = {}  # replaced by Salt's loader


class AuditError(RuntimeError):
    """A step that failed; the message says which and why."""


def _progress(message: str) -> None:
    event = globals().get("__jid_event__")
    if event is not None:
        event.fire_event({"message": message}, "progress")
    log.info("audit: %s", message)


def _client():
    return salt.client.get_local_client(__opts__["conf_file"])


def _failed(message: str, **extra) -> dict[str, Any]:
    """One clear error; salt-run and orchestration see the job failed."""
    __context__["retcode"] = 1  # noqa: F821 (Salt injects it)
    log.error("audit: %s", message)
    return {"result": False, "error": message, "retcode": 1, **extra}


def storage(full=True, dry_run=False, storage=None, clock_margin=2, timeout=7 * DAY, samples=20):
    """
    Audit storage against the catalog: walk every file on the storage minion (``storage=``,
    default the first ``st-*`` that answers), hash it, and compare with what the catalog
    says was stored. A photo whose file is missing or has other bytes is requeued (the next
    lease fetches it again); files the catalog does not know are counted and the first
    ``samples`` named, never deleted; photos stored after the walk began (less
    ``clock_margin`` seconds) wait for the next audit. ``full=False`` re-hashes only files
    whose size or mtime changed since the last walk. ``dry_run=True`` changes nothing.
    ``timeout`` bounds each of the walk and the comparison (seconds). Safe to run twice:
    a second run finds what the first left. The walk's progress is the event
    ``ccmirror/audit/progress`` (``salt-run state.event 'ccmirror/audit/*'``).

    CLI Example::

        salt-run audit.storage
        salt-run audit.storage full=False
        salt-run audit.storage dry_run=True --out=json
    """
    started = time.monotonic()
    seconds: dict[str, float] = {}
    try:
        timeout = _positive(timeout, "timeout")
        samples = _positive(samples, "samples", zero=True)
        clock_margin = _positive(clock_margin, "clock_margin", zero=True)
        full, dry_run = _truthy(full), _truthy(dry_run)
        with _client() as client:
            store = str(storage) if storage else _storage_minion(client)
            db = _db_minion(client)
            _progress(f"walking {store}'s storage ({'full' if full else 'changed files'} hash)")
            step = time.monotonic()
            inventory = _call(
                client, store, "ccmirror_audit.inventory", kwarg={"full": full}, timeout=timeout
            )
            seconds["inventory"] = round(time.monotonic() - step, 1)
            _progress(f"{store}: {inventory['comment']}; copying the inventory to {db}")
            step = time.monotonic()
            name = f"{store}.tsv.gz"
            _relay(client, store, inventory["path"], db, name, inventory["size"])
            seconds["transfer"] = round(time.monotonic() - step, 1)
            _progress(f"comparing with the catalog on {db}" + (" (dry run)" if dry_run else ""))
            step = time.monotonic()
            compared = _call(
                client,
                db,
                "ccmirror_audit.compare",
                [name],
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
        return _failed(str(error), seconds=seconds)
    seconds["total"] = round(time.monotonic() - started, 1)
    audit = compared["audit"]
    return {
        "result": True,
        "storage": store,
        "db_minion": db,
        "comment": audit["summary"],
        "audit": audit,
        "inventory": {
            key: inventory.get(key)
            for key in ("files", "bytes", "hashed", "reused", "unreadable", "skipped", "size")
        },
        "seconds": seconds,
    }


def _call(client, minion: str, function: str, arg=(), kwarg=None, timeout=CALL_TIMEOUT) -> dict:
    """One function on one minion; its answer, or AuditError with the minion's reason."""
    ret = client.cmd(
        minion, function, list(arg), tgt_type="list", kwarg=kwarg or {}, timeout=timeout
    )
    answer = ret.get(minion)
    if not isinstance(answer, dict):
        raise AuditError(
            f"{function} on {minion}: "
            + (f"no answer in {timeout}s" if answer is None else str(answer)[:300])
        )
    if not answer.get("result"):
        raise AuditError(f"{function} on {minion}: {answer.get('comment') or answer}")
    return answer


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


def _db_minion(client) -> str:
    """The database minion: the first (by id) that has the migrate config."""
    config = __opts__.get("ccmirror_migrate_config") or MIGRATE_CONFIG
    found = client.cmd(
        DB_CANDIDATES, "file.file_exists", [config], tgt_type="compound", timeout=CALL_TIMEOUT
    )
    with_config = sorted(minion for minion, ret in found.items() if ret is True)
    if not with_config:
        raise AuditError(
            f"no database minion ({DB_CANDIDATES} with {config}) answered:"
            " apply the db states first"
        )
    return with_config[0]


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
