"""What the runners do alike: a progress line for salt-run's caller, a LocalClient, and the
minions' pillar renewed before a call reads it (their checked arguments are `arguments.py`,
which minions load too). Every runner reaches this module as ``__utils__["runner_tools.*"]``
(the master's config has ``utils_dirs`` on this checkout's ``_utils/``): written once here
instead of once per runner.

A runner passes what Salt injects into the runner, not into this module: its
``__jid_event__`` (present only during a job) and its ``__opts__`` (the master's).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import salt.client
import salt.utils.event

__virtualname__ = "runner_tools"
__load__ = [
    "progress",
    "reporter",
    "local_client",
    "refresh_pillar",
    "has_backup",
    "shared_module",
    "watched_call",
    "run_command",
    "last_line",
    "json_or_error",
]
JOB_CHECK_SECONDS = 60  # how often a long call is checked to be still running


def __virtual__():
    return __virtualname__


def progress(
    event: Any, message: str, logger: logging.Logger | None = None, label: str = ""
) -> None:
    """A progress event for salt-run's caller (`event` is the runner's ``__jid_event__``:
    None outside a job, then silent) and, given the runner's logger, the line `label: message`
    in the master's log."""
    if logger is not None:
        logger.info("%s: %s", label, message)
    if event is not None:
        event.fire_event({"message": message}, "progress")


def reporter(
    event: Any, logger: logging.Logger | None = None, label: str = ""
) -> Callable[[str], None]:
    """`progress` bound to a runner's event and logger, for a `_utils/` function to call
    back: a runner's own `_progress` would fail there, as a callback runs in the utils
    loader's context, which has none of the runner's dunders."""
    return functools.partial(progress, event, logger=logger, label=label)


def local_client(opts: dict) -> Any:
    """The master's LocalClient, to be used as a context manager (it closes its event bus)."""
    return salt.client.get_local_client(opts["conf_file"])


def refresh_pillar(client: Any, minions: list[str], timeout: float) -> dict[str, Any]:
    """Have `minions` renew their pillar from what the master compiles now, and wait until
    they have, before the runner's next call to them reads it. A minion's copy in memory is
    from its start (a highstate does not renew it), and a module reads that copy; a refresh
    inside that module's own job would renew it for later jobs only, so the runner refreshes
    in a call of its own first. `client` is the runner's LocalClient."""
    return client.cmd(
        minions, "saltutil.refresh_pillar", tgt_type="list", kwarg={"wait": True}, timeout=timeout
    )


_SHARED: dict[str, ModuleType] = {}


def has_backup(client: Any, db: str, timeout: float) -> bool:
    """Whether the site has a backup target (bk-* nodes, or another S3), as the database
    minion's pillar says (storage.status's lag and audit.backup both ask)."""
    ret = client.cmd(db, "pillar.get", ["site"], tgt_type="list", timeout=int(timeout))
    site = ret.get(db) or {}
    return bool(site.get("backup_nodes") or site.get("backup_endpoint"))


def shared_module(name: str) -> ModuleType:
    """`ccmirror_common/<name>.py` of the checkout this `_utils/` is in (the master's
    utils_dirs point into its checkout), loaded by path: Salt's Python has no ccmirror
    installed, and a runner must not keep a copy of what the programs say (a duration)."""
    if name not in _SHARED:  # not functools.cache: Salt's loader takes plain functions only
        path = Path(__file__).resolve().parent.parent / "ccmirror_common" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"ccmirror_common_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SHARED[name] = module
    return _SHARED[name]


def watched_call(
    opts: dict,
    client: Any,
    minion: str,
    function: str,
    kwarg: dict,
    timeout: float,
    tag: str,
    line_of: Callable[[dict], str | None],
    show: Callable[[str], None],
) -> Any:
    """`function` on `minion` (a long job: an audit, an import), each of its events tagged
    `tag` that `line_of` makes a line of given to `show` as it comes, until it returns (its
    return, whatever it is) or its job is gone (its cached return, or None). RuntimeError when
    it cannot be sent or is not done after `timeout` seconds."""
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True) as bus:
        jid = client.cmd_async(minion, function, tgt_type="list", kwarg=kwarg)
        if not jid:
            raise RuntimeError(f"{function} could not be sent to {minion}")
        returned = f"salt/job/{jid}/ret/{minion}"
        deadline = time.monotonic() + timeout
        check_at = time.monotonic() + JOB_CHECK_SECONDS
        while time.monotonic() < deadline:
            event = bus.get_event(wait=1, full=True, auto_reconnect=True)
            if event and event["tag"] == returned:
                return event["data"].get("return")
            if event and event["tag"] == tag and event["data"].get("id") in (None, minion):
                # The master passes a minion's event on as {"id", "tag", "data", ...}.
                data = event["data"].get("data", event["data"])
                line = line_of(data) if isinstance(data, dict) else None
                if line:
                    show(line)
            if time.monotonic() >= check_at:
                check_at = time.monotonic() + JOB_CHECK_SECONDS
                found = client.cmd(minion, "saltutil.find_job", [jid], tgt_type="list", timeout=120)
                if not found.get(minion):
                    # Not running: it returned while we looked away, or it died.
                    return client.get_cache_returns(jid).get(minion, {}).get("ret")
    raise RuntimeError(f"{function} on {minion}: not done after {timeout:.0f}s")


def run_command(
    client: Any, minion: str, argv: list[str], timeout: float, stdin: str | None = None
) -> dict[str, Any]:
    """`argv` on `minion` without a shell (cmd.run_all): its retcode, stdout and stderr; a
    minion that does not answer is a run that failed, saying so."""
    kwarg: dict[str, Any] = {"python_shell": False, "timeout": timeout, "output_loglevel": "quiet"}
    if stdin is not None:
        kwarg["stdin"] = stdin
    ret = client.cmd(
        minion, "cmd.run_all", [argv], tgt_type="list", kwarg=kwarg, timeout=timeout + 30
    )
    out = ret.get(minion)
    if not isinstance(out, dict):
        return {"retcode": 1, "stdout": "", "stderr": f"{minion} did not answer: {out}"}
    return out


def last_line(out: dict[str, Any]) -> str:
    """What a failed run said last (our programs fail with one line), or its exit code."""
    text = (str(out.get("stdout", "")).strip() + "\n" + str(out.get("stderr", "")).strip()).strip()
    return text.splitlines()[-1] if text else f"exit code {out.get('retcode')}"


def json_or_error(out: dict[str, Any]) -> dict[str, Any]:
    """A run's `--json` object, or {"error": why not}."""
    if out.get("retcode") != 0:
        return {"error": last_line(out)}
    try:
        value = json.loads(out["stdout"])
    except ValueError:
        return {"error": f"not JSON: {out['stdout'][:200]}"}
    return value if isinstance(value, dict) else {"error": f"not an object: {value!r}"[:200]}
