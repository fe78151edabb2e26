"""Maintenance mode for the whole fleet, from the master.

``on``: the queue stops vending (``ccmirror.maintenance on`` on the database minion), every
downloader drains (finishes its lease when most of it is fetched, else releases the rest,
then idles), and harvesters pause after their current page (they read the queue's switch).
``off`` resumes the downloaders and switches the queue back. Both are safe to run twice:
the switch and the drain requests are states, not toggles. No photo is lost across on/off:
a released or lapsed lease gives its photos back to the queue.
"""

from __future__ import annotations

# Targets by minion id, as in salt/top.sls; the queue runs on the database minion, which
# `batch.db_minion` finds (the first db-*; the salt master has no queue).
DOWNLOADERS = "dl-*"
EVERYONE = "dl-* or hv-* or db-* or master*"
STATUS_TIMEOUT = 60

__opts__: dict = {}  # replaced by Salt's loader


def _progress(message: str) -> None:
    """A progress event for salt-run's caller; silent outside a job (_utils/runner_tools.py)."""
    event = globals().get("__jid_event__")
    __utils__["runner_tools.progress"](event, message)  # noqa: F821 (Salt injects it)


def _failed(answer: dict) -> dict:
    """The answer, with salt-run's exit code (and an orchestration's step) failed when its
    result is False."""
    if not answer["result"]:
        __context__["retcode"] = 1  # noqa: F821 (Salt injects it)
    return answer


def _client():
    return __utils__["runner_tools.local_client"](__opts__)  # noqa: F821


def _switch_queue(client, action: str, **kwarg: int) -> dict:
    """``ccmirror.maintenance ACTION`` on the database minion, where the queue runs; {} when
    there is none."""
    found = __salt__["batch.db_minion"]()  # noqa: F821 (Salt injects the runners)
    if not found.get("result"):
        return {}
    return client.cmd(
        found["minion"], "ccmirror.maintenance", [action], kwarg=kwarg, timeout=STATUS_TIMEOUT
    )


def on(wait=300, retry_after=300):
    """
    Put the fleet in maintenance: the queue vends no photo (reports are still taken), each
    downloader finishes or releases its lease and idles, harvesters pause after their page.
    Waits up to ``wait`` seconds per downloader for it to be idle. Safe to run twice.

    CLI Example::

        salt-run maintenance.on
        salt-run maintenance.on wait=600 retry_after=120
    """
    wait = int(wait)
    with _client() as client:
        _progress("switching the queue to maintenance")
        queue = _switch_queue(client, "on", retry_after=int(retry_after))
        queue_ok = _switched(queue, True)
        if not queue_ok:
            return _failed(
                {
                    "result": False,
                    "comment": "the queue's maintenance switch is not on; downloaders left as they"
                    " were (run again once the database minion answers with its queue config)",
                    "queue": _describe_returns(queue),
                }
            )
        _progress(f"queue in maintenance; draining downloaders (up to {wait}s)")
        drained = client.cmd(
            DOWNLOADERS,
            "ccmirror.drain",
            tgt_type="glob",
            kwarg={"wait": wait},
            timeout=wait + STATUS_TIMEOUT,
        )
        _progress("downloaders drained; reading the fleet's status")
        fleet = client.cmd(EVERYONE, "ccmirror.status", tgt_type="compound", timeout=STATUS_TIMEOUT)
    return _failed(
        {
            "result": _all_ok(drained),
            "comment": "maintenance on",
            "queue": _describe_returns(queue),
            "drained": _describe_returns(drained),
            "minions": _describe_fleet(fleet, maintenance=True),
        }
    )


def off():
    """
    End maintenance: the queue vends again and every downloader resumes leasing; harvesters
    resume at their next look at the switch. Safe to run twice.

    CLI Example::

        salt-run maintenance.off
    """
    with _client() as client:
        # The queue first: a downloader resumed while it still answers "maintenance" waits
        # out the Retry-After (up to a minute) before asking again.
        _progress("switching the queue back on")
        queue = _switch_queue(client, "off")
        _progress("resuming downloaders")
        resumed = client.cmd(DOWNLOADERS, "ccmirror.resume", timeout=STATUS_TIMEOUT)
    return _failed(
        {
            "result": _switched(queue, False) and _all_ok(resumed),
            "comment": "maintenance off",
            "queue": _describe_returns(queue),
            "resumed": _describe_returns(resumed),
        }
    )


def status():
    """
    What every ccmirror minion is doing: the queue's switch, each downloader's lease or
    drained state, each harvester's task or pause.

    CLI Example::

        salt-run maintenance.status
    """
    with _client() as client:
        fleet = client.cmd(EVERYONE, "ccmirror.status", tgt_type="compound", timeout=STATUS_TIMEOUT)
    on_ = any(
        isinstance(ret, dict)
        and isinstance(ret.get("work"), dict)
        and ret["work"].get("maintenance") is True
        for ret in fleet.values()
    )
    return {"maintenance": on_, "minions": _describe_fleet(fleet, maintenance=on_)}


# --- pure parts: Salt's returns into lines an operator reads ---------------------------------


def _switched(returns: dict, want_on: bool) -> bool:
    """True when at least one queue minion answered and every answer has the switch as
    wanted."""
    answers = [r for r in returns.values() if isinstance(r, dict)]
    return (
        bool(answers)
        and len(answers) == len(returns)
        and all(r.get("result") and r.get("maintenance") is want_on for r in answers)
    )


def _all_ok(returns: dict) -> bool:
    return all(isinstance(r, dict) and r.get("result", False) for r in returns.values())


def _describe_returns(returns: dict) -> dict:
    """minion -> its comment, or the error Salt gave instead of a return."""
    described = {}
    for minion, ret in sorted(returns.items()):
        if isinstance(ret, dict):
            described[minion] = ret.get("comment", "") or ("ok" if ret.get("result") else "failed")
        else:
            described[minion] = f"no answer: {ret}"
    return described


def _describe_fleet(returns: dict, maintenance: bool) -> dict:
    return {minion: _describe_status(ret, maintenance) for minion, ret in sorted(returns.items())}


def _describe_status(ret, maintenance: bool = False) -> str:
    """One line per minion from `ccmirror.status`."""
    if not isinstance(ret, dict):
        return f"no answer: {ret}"
    if not ret.get("installed"):
        return f"{ret.get('role', '?')}: ccmirror is not installed"
    service = ret.get("service") or {}
    head = f"{ret['role']} {ret.get('version')}" + (
        f", {service['name']} {service['state']}" if service else ""
    )
    work = ret.get("work")
    return f"{head}: {_describe_work(ret['role'], work, maintenance)}"


def _describe_work(role: str, work, maintenance: bool) -> str:
    if not isinstance(work, dict):
        return str(work)
    if "error" in work:
        return f"error: {work['error']}"
    if role == "downloader":
        lease = work.get("lease")
        line = work.get("phase", "?")
        if lease:
            line += f", lease {lease['lease_id']}: {lease.get('fetched', 0)} of"
            line += f" {lease['items']} fetched"
        if work.get("drain_requested") and work.get("phase") != "drained":
            line += " (drain requested)"
        return line
    if role == "harvester":
        tasks = work.get("tasks")
        if isinstance(tasks, dict):
            return f"error: {tasks.get('error')}"
        paused = [
            why
            for why, on_ in (("maintenance", maintenance), ("drain", work.get("drain_requested")))
            if on_
        ]
        if tasks:
            line = ", ".join(f"task {t['id']} page {t['page']}" for t in tasks)
            return line + (f" (pausing after this page: {' and '.join(paused)})" if paused else "")
        return f"paused ({' and '.join(paused)})" if paused else "no task held"
    if "maintenance" in work:
        return work.get("comment", "")
    return "ok"
