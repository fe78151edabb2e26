"""The fleet runner's calls to minions and to the master's minion keys: a command on a list of
minions, fleet.up's steps once its droplets have their keys (waiting for the minions, their
secrets, sync, highstate), a daemon drained before its droplet goes, the states that
revoke a removed worker's access applied at once, and Prometheus' scrape targets rewritten
after the fleet changed. The fleet runner reaches it as
``__utils__["fleet_minions.*"]`` (the master's config has ``utils_dirs`` on this checkout's
``_utils/``); the master's options and the runner's progress come in as arguments.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from typing import Any

import salt.client
import salt.loader

PING_TIMEOUT = 5
HIGHSTATE_TIMEOUT = 1800
# Per role fleet.up makes: the servers whose highstate runs first, as they must learn the new
# minions' secrets (downloaders: the queue's token hashes, the gateways' S3 identities;
# harvesters: their database logins). New storage nodes are applied with every st-*: the
# others learn of the node (site:storage_nodes), and db-1 the site's facts.
CORE_FIRST = {"downloader": "db-* or st-*", "harvester": "db-*", "storage": "db-* or st-*"}
# The minions that run Prometheus (salt/top.sls) and the state that writes its file_sd
# targets from the mine (salt/prometheus/targets.sls).
SCRAPERS = "master*"
TARGETS_STATE = "prometheus.targets"
TARGETS_TIMEOUT = 120


class Steps:
    """How long each step took, in the order they ran (fleet.up's `steps` return)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._started, 1)
        self._started = now


def step_timer() -> Steps:
    """A new step timer, started now."""
    return Steps()


def cmd(opts: dict, targets: list[str], fun: str, timeout: int = 60, **kwargs: Any) -> dict:
    """`fun` on a list of minions: their returns by id (a silent minion is left out)."""
    with salt.client.get_local_client(opts["conf_file"]) as client:
        return client.cmd(targets, fun, tgt_type="list", timeout=timeout, **kwargs)


def ping(opts: dict, targets: list[str], timeout: int = PING_TIMEOUT) -> dict[str, bool]:
    """Whether each minion answers `test.ping` within `timeout` seconds."""
    answers = cmd(opts, targets, "test.ping", timeout=timeout)
    return {t: answers.get(t) is True for t in targets}


def wait_minions(opts: dict, targets: list[str], seconds: float) -> set[str]:
    """The minions that answered within `seconds`, pinged again until all have."""
    deadline = time.monotonic() + seconds
    answered: set[str] = set()
    while time.monotonic() < deadline:
        waiting = [t for t in targets if t not in answered]
        answered |= {m for m, ok in ping(opts, waiting).items() if ok}
        if answered >= set(targets):
            break
        time.sleep(1)
    return answered


def state_failure(ret: object) -> str | None:
    """Why a minion's state run failed (a render error, no return, or the ids of the states
    whose result is False), at most 500 characters; None when it did not."""
    if isinstance(ret, list):
        return "; ".join(str(line) for line in ret)[:500] or "render error"
    if not isinstance(ret, dict) or not ret:
        return f"no return: {ret}"[:500]
    failed = [
        str(chunk.get("__id__", key))
        for key, chunk in ret.items()
        if isinstance(chunk, dict) and chunk.get("result") is False
    ]
    return f"failed states: {', '.join(failed)}" if failed else None


def wheel(opts: dict, name: str) -> Any:
    """A wheel function called in this process (no event carries its return: key.gen_accept
    returns a private key)."""
    return salt.loader.wheels(opts)[name]


def minion_keys(opts: dict, accepted_only: bool = False) -> set[str]:
    """The ids the master holds a key of: accepted only, or in any state."""
    keys = wheel(opts, "key.list_all")()
    kinds = (
        ("minions",)
        if accepted_only
        else ("minions", "minions_pre", "minions_rejected", "minions_denied")
    )
    return {minion for kind in kinds for minion in keys.get(kind, [])}


def delete_key(opts: dict, name: str) -> bool:
    """The minion's key deleted, whatever its state; False when there was none."""
    if name not in minion_keys(opts):
        return False
    wheel(opts, "key.delete")(name)
    return True


def drain(opts: dict, name: str, wait: float) -> dict[str, Any]:
    """ccmirror.drain on a minion that has ccmirror; one that has none has nothing to drain."""
    if not ping(opts, [name]).get(name):
        return {"result": False, "comment": "minion does not answer: not drained"}
    cmd(opts, [name], "saltutil.sync_all", timeout=60)  # ccmirror and the _utils it uses
    status = cmd(opts, [name], "ccmirror.status", timeout=60).get(name)
    if not isinstance(status, dict):
        return {"result": False, "comment": f"ccmirror.status: {status}"}
    if not status.get("installed"):
        return {"result": True, "comment": "ccmirror is not installed: nothing to drain"}
    drained = cmd(opts, [name], "ccmirror.drain", timeout=int(wait) + 90, kwarg={"wait": wait})
    ret = drained.get(name)
    if not isinstance(ret, dict):
        return {"result": False, "comment": f"ccmirror.drain: no answer: {ret}"}
    return {"result": bool(ret.get("result")), "comment": str(ret.get("comment", ""))}


# A revoke step: (function, args, kwargs) called on the servers of one prefix.
RevokeStep = tuple[str, list, dict]


def revoke(
    opts: dict,
    steps: dict[str, tuple[RevokeStep, ...]],
    timeout: int,
    progress: Callable[[str], None],
) -> dict[str, str]:
    """Each of `steps` (minion id prefix -> steps, in order) called on every accepted minion of
    that prefix: per minion "ok" or why not, the first failure told (one that does not answer
    is a failure: it may still let the token in)."""
    servers = sorted(minion_keys(opts, accepted_only=True))
    revoked: dict[str, str] = {}
    for prefix, prefix_steps in steps.items():
        targets = [minion for minion in servers if minion.startswith(prefix)]
        for fun, args, kwargs in prefix_steps if targets else ():
            what = args[0] if fun.startswith("state.") else fun
            progress(f"revoking at once on {', '.join(targets)}: {what}")
            ret = cmd(opts, targets, fun, timeout, arg=list(args), kwarg=dict(kwargs))
            for target in targets:
                why = step_failure(fun, ret.get(target))
                if why and revoked.get(target, "ok") == "ok":
                    revoked[target] = f"{what}: {why}"
                revoked.setdefault(target, "ok")
    return revoked


def refresh_scrape_targets(
    opts: dict, published: list[str], progress: Callable[[str], None]
) -> dict[str, str]:
    """Prometheus' targets rewritten on the minions that scrape: `published` (new minions)
    send their addresses to the mine first, so the rewrite does not wait for their hourly
    update; a minion whose key is gone no longer matches the mine's globs (Salt matches
    them against accepted keys), so its targets go. Per scraping minion "ok" or why not;
    none when the site has no Prometheus."""
    if published:
        cmd(opts, published, "mine.update", timeout=60)
    scrapers = sorted(fnmatch.filter(minion_keys(opts, accepted_only=True), SCRAPERS))
    if not scrapers:
        return {}
    progress(f"Prometheus' scrape targets on {', '.join(scrapers)}: {TARGETS_STATE}")
    ret = cmd(opts, scrapers, "state.sls", TARGETS_TIMEOUT, arg=[TARGETS_STATE])
    return {minion: state_failure(ret.get(minion)) or "ok" for minion in scrapers}


def step_failure(fun: str, ret: object) -> str | None:
    """Why one revoke step failed on a minion: a state run's failure, or an execution
    function's `result: False`, error string or silence; None when it did not."""
    if fun.startswith("state."):
        return state_failure(ret)
    if ret is None:
        return "no return"
    if isinstance(ret, dict) and ret.get("result") is False:
        return str(ret.get("comment", ret))[:500]
    if isinstance(ret, str) and (ret.startswith("ERROR") or "is not available" in ret):
        return ret[:500]
    return None


def finish(
    opts: dict,
    targets: list[str],
    role: str,
    highstate: bool,
    timeout: float,
    steps: Steps,
    errors: dict[str, str],
    progress: Callable[[str], None],
    init_secrets: Callable[[], dict],
) -> None:
    """fleet.up's steps once its droplets have their keys: wait for the minions to answer,
    their secrets (`init_secrets`: the secrets.init runner), sync and pillar, highstate of the
    servers that learn their secrets and then of theirs. A minion failing a step is left out
    of the next and named in `errors`; `steps` times each step."""
    progress(f"waiting up to {timeout:g}s for {', '.join(targets)} to answer")
    answered = wait_minions(opts, targets, timeout)
    errors.update({t: "minion did not answer in time" for t in targets if t not in answered})
    steps.done("minions")
    targets = [t for t in targets if t in answered]
    if not targets:
        return
    progress("secrets.init: the new minions' secrets")
    secrets = init_secrets()
    steps.done("secrets")
    if secrets.get("error"):
        errors.update({t: f"secrets.init: {secrets['error']}" for t in targets})
        return
    progress("syncing modules and refreshing pillar")
    synced = cmd(opts, targets, "saltutil.sync_all", timeout=120)
    refreshed = cmd(opts, targets, "saltutil.refresh_pillar", kwarg={"wait": True}, timeout=120)
    for target in targets:
        if not isinstance(synced.get(target), dict) or refreshed.get(target) is not True:
            errors[target] = "sync or pillar refresh failed"
    steps.done("sync")
    targets = [t for t in targets if t not in errors]
    if not (highstate and targets):
        return
    servers = CORE_FIRST[role]
    progress(f"highstate on {servers}: they learn the new minions' secrets")
    with salt.client.get_local_client(opts["conf_file"]) as client:
        core = client.cmd(
            servers, "state.highstate", tgt_type="compound", timeout=HIGHSTATE_TIMEOUT
        )
    # New storage nodes are st-* themselves: their highstate ran with the others'.
    own = {t: core.get(t) for t in targets} if role == "storage" else None
    core_failed = {
        m: why for m, ret in core.items() if m not in targets and (why := state_failure(ret))
    }
    steps.done("highstate_core")
    if core_failed:
        errors.update({t: f"highstate of {', '.join(sorted(core_failed))} failed" for t in targets})
        errors.update({m: f"highstate: {why}" for m, why in core_failed.items()})
        return
    if own is None:
        progress(f"highstate on {', '.join(targets)}")
    applied = own if own is not None else cmd(opts, targets, "state.highstate", HIGHSTATE_TIMEOUT)
    for target in targets:
        why = state_failure(applied.get(target))
        if why:
            errors[target] = f"highstate: {why}"
    steps.done("highstate")
