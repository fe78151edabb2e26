"""Salt execution module: new uploads every day, on the database minion.

``run`` is what db-1's minion schedule runs once a day (salt/db/increment.sls): ``harvester seed
increment`` seeds the time slices from the last one seeded up to a lag behind now; the
harvesters, always running ``harvester work --follow`` (salt/harvester), take the new tasks
within seconds; ``run`` waits until no search task is pending or running, then ``harvester
reconcile`` puts the new CC photos in the download queue. All with db-1's migrate config (the
migrate user over the socket, root's, 0600): no database password leaves db-1.

A run that seeds nothing (run twice the same day) still reconciles; a harvest not finished in
``wait_hours`` is reconciled as far as it got and the run fails, so the job's return on the
master says so, and ``salt-run batch.status`` shows the catalog falling behind now.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time

log = logging.getLogger(__name__)

__virtualname__ = "ccmirror_increment"
__load__ = ["run"]
# Replaced by Salt's loader when it loads the module; named here for readers and linters.
__salt__: dict = {}
__context__: dict = {}

DEFAULTS = {"venv": "/opt/ccmirror/venv", "migrate_config": "/etc/ccmirror/migrate.yaml"}
CALL_SECONDS = 600
RECONCILE_SECONDS = 24 * 3600


def __virtual__():
    return __virtualname__


def _failed(message: str, **extra) -> dict:
    __context__["retcode"] = 1
    log.error("ccmirror_increment: %s", message)
    return {"result": False, "comment": message, **extra}


def _number(value, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high or isinstance(value, bool):
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, not {value!r}")
    return number


class HarvesterFailed(RuntimeError):
    """`harvester` exited non-zero; the message is its last line."""


def _harvester(*args: str, timeout: float = CALL_SECONDS) -> str:
    """Run `harvester --config <migrate config> ARGS` on this minion; its stdout."""
    venv = __salt__["config.get"]("ccmirror:venv", "") or DEFAULTS["venv"]
    config = __salt__["config.get"]("ccmirror:migrate_config", "") or DEFAULTS["migrate_config"]
    argv = [os.path.join(venv, "bin", "harvester"), "--config", config, *args]
    try:
        done = subprocess.run(  # noqa: S603 (a fixed argv, no shell)
            argv, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise HarvesterFailed(f"harvester {args[0]}: not done after {timeout:.0f}s") from None
    except OSError as exc:
        raise HarvesterFailed(f"cannot run {argv[0]}: {exc}") from None
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise HarvesterFailed(said[-1][:500] if said else f"exit code {done.returncode}")
    return done.stdout


def _tasks_left() -> int:
    tasks = json.loads(_harvester("status", "--json"))["tasks"]
    return int(tasks.get("pending", 0)) + int(tasks.get("running", 0))


def _wait_harvested(wait_seconds: float, poll_seconds: float) -> int:
    """Search tasks still pending or running when they all ended or the wait did."""
    deadline = time.monotonic() + wait_seconds
    left = _tasks_left()
    while left and time.monotonic() + poll_seconds <= deadline:
        time.sleep(poll_seconds)  # the harvesters' pace: a poll of `harvester status`
        left = _tasks_left()
    return left


def run(
    lag_hours=None,
    stride=None,
    start=None,
    wait_hours=12,
    poll_seconds=300,
    reconcile=True,
    now=None,
):
    """
    Seed the new upload days (``harvester seed increment``: whole ``stride`` seconds from the
    last slice seeded up to ``lag_hours`` behind now, or from ``start`` when none is), wait up
    to ``wait_hours`` for the harvesters to walk every pending search task, then reconcile.
    ``lag_hours``, ``stride`` and ``start`` default to the harvester's ``increment:``
    settings; ``now`` (unix seconds) is for tests.

    CLI Example::

        salt db-1 ccmirror_increment.run
        salt db-1 ccmirror_increment.run lag_hours=48 wait_hours=2
        salt db-1 ccmirror_increment.run reconcile=False wait_hours=0
    """
    try:
        options = []
        for name, value, low, high in (
            ("lag", lag_hours, 0, 8760),
            ("stride", stride, 1, 366 * 86400),
            ("start", start, 1, 2**40),
            ("now", now, 1, 2**40),
        ):
            if value is not None:
                number = _number(value, name if name != "lag" else "lag_hours", low, high)
                options += [f"--{name}", f"{number:g}" if name == "lag" else str(int(number))]
        wait = _number(wait_hours, "wait_hours", 0, 168) * 3600
        poll = _number(poll_seconds, "poll_seconds", 0.1, 3600)
    except ValueError as error:
        return _failed(str(error))
    try:
        seeded = json.loads(_harvester("seed", "increment", "--json", *options))
        left = _wait_harvested(wait, poll)
        merged = None
        if str(reconcile).strip().lower() not in ("false", "no", "0", "off"):
            lines = _harvester("reconcile", timeout=RECONCILE_SECONDS).strip().splitlines()
            merged = lines[-1] if lines else ""
    except (HarvesterFailed, ValueError, KeyError) as error:
        return _failed(str(error))
    answer = {"seeded": seeded, "tasks_left": left, "reconcile": merged}
    if left:
        return _failed(
            f"{left} search task(s) still pending or running after {wait / 3600:g}h"
            " (are the harvesters running?); reconciled what was harvested",
            **answer,
        )
    comment = f"seeded {seeded['created']} slice(s); harvested" + (
        "; reconciled" if merged is not None else ""
    )
    return {"result": True, "comment": comment, **answer}
