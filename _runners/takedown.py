"""The `takedown` runner: takedowns from the master.

``takedown.add`` records a takedown of a photo or of an owner's photos on the database minion
(`batch.db_minion`: the first ``db-*`` with the migrate config) and takes them out of the
download queue, then, on a site whose photos are in an S3 bucket, moves their stored objects
out of ``images/`` (``harvester takedown apply`` with the audit's settings, the least key that
can: Read, List and Write on the bucket). ``takedown.list`` shows every takedown and its
logged steps; ``takedown.apply`` runs the storage step again (``recheck=True``: every
taken-down photo, for bytes a lapsed lease pushed later); ``takedown.replay`` adds back the
takedowns the bucket records (``takedown/requests/``) and a restored catalog lacks, as
``storage.restore_catalog`` does first.

The programs and configs are those the db states install: ``harvester`` from
/opt/ccmirror/venv, /etc/ccmirror/migrate.yaml and, on an S3 site, /etc/ccmirror/audit.yaml
(master options ``ccmirror_venv``, ``ccmirror_migrate_config``, ``ccmirror_audit_config``).
Every argument goes to ``harvester`` as one argv word (no shell), which checks it: a bad one
is its one-line error, the job fails, and nothing is changed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)

__load__ = ["add", "list_", "apply", "replay"]
__func_alias__ = {"list_": "list"}

DEFAULTS = {
    "venv": "/opt/ccmirror/venv",
    "migrate_config": "/etc/ccmirror/migrate.yaml",
    "audit_config": "/etc/ccmirror/audit.yaml",  # salt/db/defaults.yaml; S3 sites only
}
CALL_TIMEOUT = 120
APPLY_TIMEOUT = 24 * 3600  # an owner with many stored photos: a LIST and a move each
BY = "salt-run takedown"

__opts__: dict = {}  # replaced by Salt's loader


class TakedownError(RuntimeError):
    """A step that failed; the message says which and why."""


def _failed(message: str, **extra) -> dict[str, Any]:
    """One clear error; salt-run and orchestration see the job failed."""
    __context__["retcode"] = 1  # noqa: F821 (Salt injects it)
    log.error("takedown: %s", message)
    return {"result": False, "error": message, "retcode": 1, **extra}


def _setting(name: str) -> str:
    return __opts__.get(f"ccmirror_{name}") or DEFAULTS[name]


def _harvester(client, minion: str, config: str, *args: str, timeout: int = CALL_TIMEOUT):
    """`harvester --config CONFIG takedown ARGS --json` on the database minion: its JSON."""
    argv = [f"{_setting('venv')}/bin/harvester", "--config", _setting(f"{config}_config"),
            "takedown", *args, "--json"]  # fmt: skip
    out = __utils__["runner_tools.run_command"](client, minion, argv, timeout)  # noqa: F821
    if out.get("retcode") != 0:
        raise TakedownError(__utils__["runner_tools.last_line"](out))  # noqa: F821
    try:
        return json.loads(out["stdout"])
    except ValueError:
        raise TakedownError(f"not JSON from {minion}: {out['stdout'][:200]}") from None


def _db_minion() -> str:
    found = __salt__["batch.db_minion"]()  # noqa: F821 (Salt injects the runners)
    if not found.get("result"):
        raise TakedownError(found.get("error", "no database minion"))
    return found["minion"]


def _storage_step(client, minion: str, action: str, *args: str) -> dict[str, Any]:
    """`takedown apply` (or `replay`) when the minion has the audit's settings (an S3 site),
    else why not."""
    has = client.cmd(minion, "file.file_exists", [_setting("audit_config")], tgt_type="list",
                     timeout=CALL_TIMEOUT)  # fmt: skip
    if has.get(minion) is not True:
        return {"skipped": f"no {_setting('audit_config')} on {minion}: not an S3 site"}
    return _harvester(client, minion, "audit", action, *args, timeout=APPLY_TIMEOUT)


def add_arguments(photo, owner, reason, by) -> list[str]:
    """`takedown add`'s argv words; what the values mean the program checks."""
    args = ["add"]
    if photo is not None:
        args += ["--photo", str(photo)]
    if owner is not None:
        args += ["--owner", str(owner)]
    return [*args, "--reason", "" if reason is None else str(reason), "--by", str(by or BY)]


def add(photo=None, owner=None, reason=None, by=None):
    """
    Take down one photo (``photo=ID``; an id the catalog does not know yet is recorded, and a
    later harvest refuses it) or every photo of an owner (``owner=NSID``, new uploads
    included), with ``reason`` (required) and ``by`` (who asks; default ``salt-run
    takedown``). The photos leave the download queue for good and, on an S3 site, their
    stored objects leave ``images/`` for ``takedown/``. Safe to run twice: the second run
    finds the takedown recorded and its photos down.

    CLI Example::

        salt-run takedown.add photo=52712345678 reason="DMCA notice 2026-118"
        salt-run takedown.add owner=12345678@N00 reason="owner's request" by=alice
    """
    try:
        args = add_arguments(photo, owner, reason, by)
        minion = _db_minion()
        with __utils__["runner_tools.local_client"](__opts__) as client:  # noqa: F821
            added = _harvester(client, minion, "migrate", *args)
            storage = _storage_step(client, minion, "apply", "--by", str(by or BY))
    except TakedownError as error:
        return _failed(str(error), photo=photo, owner=owner)
    return {"result": True, "minion": minion, "takedown": added, "storage": storage}


def list_():
    """
    Every takedown, oldest first: its photo or owner, reason, who asked and when, and its
    steps counted from the log (withdrawn, object_moved, harvest_refused, ...).

    CLI Example::

        salt-run takedown.list
        salt-run takedown.list --out=json
    """
    try:
        minion = _db_minion()
        with __utils__["runner_tools.local_client"](__opts__) as client:  # noqa: F821
            found = _harvester(client, minion, "migrate", "list")
    except TakedownError as error:
        return _failed(str(error))
    return {"result": True, "minion": minion, "takedowns": found}


def apply(recheck=False, by=None):
    """
    Move the stored objects of taken-down photos out of ``images/`` again: those due (a
    lease's bytes that landed after the takedown), or with ``recheck=True`` every taken-down
    photo (bytes pushed and never reported). Needs an S3 site (the audit's settings on the
    database minion).

    CLI Example::

        salt-run takedown.apply
        salt-run takedown.apply recheck=True
    """
    args = ["--by", str(by or BY)]
    if str(recheck).strip().lower() in ("true", "yes", "1", "on"):
        args.append("--recheck")
    try:
        minion = _db_minion()
        with __utils__["runner_tools.local_client"](__opts__) as client:  # noqa: F821
            storage = _storage_step(client, minion, "apply", *args)
    except TakedownError as error:
        return _failed(str(error))
    if "skipped" in storage:
        return _failed(storage["skipped"])
    return {"result": True, "minion": minion, "storage": storage}


def replay(by=None):
    """
    Add back every takedown the bucket records (``takedown/requests/``, written by each
    ``takedown.apply``) that the catalog lacks, with its own reason, requester and time, and
    move its photos' objects out of ``images/``: a catalog restored from a backup made
    before a takedown takes it again. ``storage.restore_catalog`` runs it before restoring
    photos and auditing. Nothing to do on a site without a bucket.

    CLI Example::

        salt-run takedown.replay
    """
    try:
        minion = _db_minion()
        with __utils__["runner_tools.local_client"](__opts__) as client:  # noqa: F821
            storage = _storage_step(client, minion, "replay", "--by", str(by or BY))
    except TakedownError as error:
        return _failed(str(error))
    comment = storage.get("skipped") or storage["summary"]
    return {"result": True, "minion": minion, "storage": storage, "comment": comment}
