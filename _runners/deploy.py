"""The `deploy` runner: a new ccmirror release rolled out to the fleet in batches.

`deploy.release` builds the wheelhouse on the master (`_utils/wheelhouse_builder.py` through
`__utils__`: one builder for `salt-run wheelhouse.build` and this), checks that the version the
pillar pins (`ccmirror:version`, pillar/ccmirror.sls) is the wheel's, then upgrades the
minions running our code, the database minion first (its `harvester migrate` runs before any
worker has the new code), then the workers in batches. Each batch is drained
(`ccmirror.drain`: downloaders finish or release their lease, harvesters give their task
back), upgraded (`state.apply ccmirror.install,<role's service state>`: the services watch
the package), resumed, and checked (`ccmirror.status`: the new version and the unit active)
before the next batch starts. The first failed batch stops the release.

The pin is not written by this runner: pyproject.toml's version and pillar/ccmirror.sls move
together in git (tests/salt checks it), and the master serves both from the same checkout,
so a release is a commit; a second pin in the private root would silently outlive the next
bump. A wheel whose version the pillar does not pin is refused before any minion changes.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any

log = logging.getLogger(__name__)

__load__ = ["release"]

# Minions running our code, by id as in salt/top.sls; the database minion goes first.
WAVES = (("db-*",), ("hv-*", "dl-*"))
# The state that upgrades and restarts each role's daemon (it includes ccmirror).
SERVICE_STATES = {
    "db": "queue.service",
    "harvester": "harvester.service",
    "downloader": "downloader.service",
}
ROLE_PREFIXES = (("db-", "db"), ("hv-", "harvester"), ("dl-", "downloader"))
STATUS_TIMEOUT = 60
APPLY_TIMEOUT = 900
BATCH = re.compile(r"^\s*(?P<number>\d+)\s*(?P<percent>%?)\s*$")

__opts__: dict = {}  # replaced by Salt's loader


class ReleaseError(ValueError):
    """The release cannot start: bad arguments, no minion, a pin that is not the wheel's."""


def _progress(message: str) -> None:
    """A progress event for salt-run's caller; silent outside a job (_utils/runner_tools.py)."""
    event = globals().get("__jid_event__")
    __utils__["runner_tools.progress"](event, message, log, "deploy")  # noqa: F821 (Salt injects it)


def _client():
    return __utils__["runner_tools.local_client"](__opts__)  # noqa: F821


def _builder(name: str) -> Any:
    """A function of _utils/wheelhouse_builder.py (the master's config needs utils_dirs)."""
    return __utils__[f"wheelhouse_builder.{name}"]  # noqa: F821 (Salt injects it)


def _reporter():
    """_progress for the builder to call back: bound now, as a callback runs in the utils
    loader's context, which has none of this runner's dunders."""
    event = globals().get("__jid_event__")
    return __utils__["runner_tools.reporter"](event, log, "deploy")  # noqa: F821


def release(batch="10%", wait=300, build=True):
    """
    Build the wheelhouse and roll it out: the database minion first, then harvesters and
    downloaders ``batch`` at a time (a count, or a percentage of them: ``10%``, at least one).
    Each batch is drained (waiting up to ``wait`` seconds), upgraded and restarted with
    ``state.apply ccmirror.install,<role>.service``, resumed, and checked with
    ``ccmirror.status`` (the wheel's version, the unit active) before the next. Stops at the
    first failed batch and names it; the minions that failed stay drained (no work is taken
    by a daemon in doubt), the others are resumed. Safe to run twice: an upgraded minion's
    states change nothing. ``build=False`` rolls out the wheelhouse already served.

    Returns per minion the version before and after, and how long its batch's drain,
    upgrade and check took.

    CLI Example::

        salt-run deploy.release
        salt-run deploy.release batch=2 wait=600
    """
    started = time.monotonic()
    try:
        size_spec = parse_batch(batch)
        wait = _seconds(wait, "wait")
        build = _truthy(build)
        version = _checkout_version() if build else _served()["version"]
    except ReleaseError as error:
        return _refused(error)
    with _client() as client:
        try:
            before = _fleet_status(client)
            # Before the build: a wheelhouse whose version the pillar does not pin would
            # fail every highstate until the pin follows.
            _check_pins(client, sorted(before), version)
            built = _build() if build else _served()
        except ReleaseError as error:
            return _refused(error, version=version)
        plan = [batches(wave, size_spec) for wave in plan_waves(before)]
        _progress(f"rolling out ccmirror {built['version']} in {sum(map(len, plan))} batches")
        client.cmd(sorted(before), "saltutil.sync_all", tgt_type="list", timeout=120)
        outcome = _roll_out(client, plan, built["version"], wait)
    outcome["minions"] = {
        minion: _minion_report(_version_of(ret), outcome["minions"].get(minion))
        for minion, ret in sorted(before.items())
    }
    failed = {} if outcome["result"] else {"retcode": 1}
    if failed:
        __context__["retcode"] = 1  # noqa: F821 (Salt injects it)
    return {
        **failed,
        "result": outcome["result"],
        "comment": outcome["comment"],
        "wheel": built,
        "batches": outcome["batches"],
        "minions": outcome["minions"],
        "seconds": round(time.monotonic() - started, 1),
    }


def _checkout_version() -> str:
    try:
        checkout = _builder("checkout_of")(__opts__)
        return _builder("project")(checkout)["version"]
    # RuntimeError: the builder's WheelhouseError
    except (RuntimeError, OSError, KeyError, ValueError) as error:
        raise ReleaseError(f"cannot read the version to release: {error}") from None


def _build() -> dict[str, Any]:
    _progress("building the wheelhouse")
    try:
        built = _builder("build_for_master")(__opts__, progress=_reporter())
    except (RuntimeError, OSError) as error:  # RuntimeError: the builder's WheelhouseError
        raise ReleaseError(str(error)) from None
    # The master lists its file roots from a cache (fileserver_list_cache_time): minions
    # must see the new wheel now.
    __salt__["fileserver.clear_file_list_cache"]()  # noqa: F821 (Salt injects it)
    return built


def _served() -> dict[str, Any]:
    target = _builder("served_wheelhouse")(__opts__)
    wheel = _builder("project_wheel")(target)
    if wheel is None:
        raise ReleaseError(f"no ccmirror wheel in {target}: run with build=True")
    version = _builder("wheel_version")(wheel.name)
    return {"version": version, "wheel": wheel.name, "built": False, "path": str(target)}


def _fleet_status(client) -> dict[str, Any]:
    targets = " or ".join(glob for wave in WAVES for glob in wave)
    returns = client.cmd(targets, "ccmirror.status", tgt_type="compound", timeout=STATUS_TIMEOUT)
    if not returns:
        raise ReleaseError(f"no minion answered ({targets}): nothing to roll out to")
    silent = sorted(minion for minion, ret in returns.items() if not isinstance(ret, dict))
    if silent:
        raise ReleaseError(f"minions did not answer ccmirror.status: {', '.join(silent)}")
    return returns


def _check_pins(client, minions: list[str], version: str) -> None:
    """The version each minion's fresh pillar pins must be the wheel's."""
    # The pillar as the master compiles it now, not the minion's copy from before the
    # checkout moved on. (pillar.item's own fresh compile, pillarenv=, ignores unmask.)
    __utils__["runner_tools.refresh_pillar"](client, minions, STATUS_TIMEOUT)  # noqa: F821
    pins = client.cmd(
        minions,
        "pillar.item",
        ["ccmirror:version"],
        tgt_type="list",
        kwarg={"unmask": True},  # Salt 3008 masks pillar values in returns; a version is no secret
        timeout=STATUS_TIMEOUT,
    )
    wrong = pin_mismatches(pins, minions, version)
    if wrong:
        raise ReleaseError(
            f"the wheel is ccmirror {version} but the pillar pins "
            + ", ".join(f"{minion}: {pin}" for minion, pin in sorted(wrong.items()))
            + ": bump pillar/ccmirror.sls with pyproject.toml's version"
        )


def _roll_out(client, plan: list[list[list[str]]], version: str, wait: int) -> dict[str, Any]:
    done: dict[str, dict] = {}
    reports = []
    number = 0
    for wave in plan:
        for group in wave:
            number += 1
            _progress(f"batch {number}: {', '.join(group)}")
            report = _one_batch(client, group, version, wait)
            report["batch"] = number
            reports.append(report)
            for minion in group:
                done[minion] = {
                    "to": report["versions"].get(minion),
                    "seconds": report["seconds"],
                }
            if report["failed"]:
                return {
                    "result": False,
                    "comment": f"batch {number} failed ({', '.join(report['failed'])}): "
                    + report["comment"]
                    + "; later batches were not started",
                    "batches": reports,
                    "minions": done,
                }
    return {
        "result": True,
        "comment": f"ccmirror {version} on {len(done)} minions in {number} batches",
        "batches": reports,
        "minions": done,
    }


def _one_batch(client, group: list[str], version: str, wait: int) -> dict[str, Any]:
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"minions": group, "seconds": timings, "versions": {}}
    mark = time.monotonic()
    drained = client.cmd(
        group, "ccmirror.drain", tgt_type="list", kwarg={"wait": wait}, timeout=wait + 60
    )
    timings["drain"] = round(time.monotonic() - mark, 1)
    not_drained = failed_returns(drained, group)
    if not_drained:
        # Nothing was changed yet: the batch goes back to work as it was.
        client.cmd(group, "ccmirror.resume", tgt_type="list", timeout=STATUS_TIMEOUT)
        why = "; ".join(f"{m}: {_comment(drained.get(m))}" for m in not_drained)
        return {**report, "failed": not_drained, "comment": f"not drained: {why}"}
    mark = time.monotonic()
    upgrade_failures: dict[str, list[str]] = {}
    for role, minions in sorted(by_role(group).items()):
        applied = client.cmd(
            minions,
            "state.apply",
            [f"ccmirror.install,{SERVICE_STATES[role]}"],
            tgt_type="list",
            timeout=APPLY_TIMEOUT,
        )
        for minion in minions:
            failures = state_failures(applied.get(minion, "no answer"))
            if failures:
                upgrade_failures[minion] = failures
    timings["upgrade"] = round(time.monotonic() - mark, 1)
    mark = time.monotonic()
    healthy = [minion for minion in group if minion not in upgrade_failures]
    if healthy:
        client.cmd(healthy, "ccmirror.resume", tgt_type="list", timeout=STATUS_TIMEOUT)
    status = client.cmd(group, "ccmirror.status", tgt_type="list", timeout=STATUS_TIMEOUT)
    timings["check"] = round(time.monotonic() - mark, 1)
    problems = {minion: "; ".join(lines[:3]) for minion, lines in upgrade_failures.items()}
    for minion in healthy:
        problem = upgrade_problem(status.get(minion), version)
        if problem:
            problems[minion] = problem
    report["versions"] = {minion: _version_of(status.get(minion)) for minion in group}
    report["failed"] = sorted(problems)
    report["comment"] = "; ".join(f"{m}: {p}" for m, p in sorted(problems.items())) or "ok"
    return report


def _minion_report(old: str | None, done: dict | None) -> dict[str, Any]:
    if done is None:
        return {"from": old, "to": None, "change": "not reached"}
    return {"from": old, **done, "change": change(old, done["to"])}


def _refused(error: ReleaseError, **extra) -> dict[str, Any]:
    __context__["retcode"] = 1  # noqa: F821 (Salt injects it)
    log.error("deploy: %s", error)
    return {"result": False, "error": str(error), "retcode": 1, **extra}


# --- pure parts -----------------------------------------------------------------------------


def parse_batch(batch) -> tuple[int, bool]:
    """`10%` -> (10, True), `3` -> (3, False); anything else is one clear error."""
    match = BATCH.match(str(batch))
    if match is None or int(match["number"]) == 0:
        raise ReleaseError(f"batch must be a count or a percentage (2, 10%), not {batch!r}")
    percent = bool(match["percent"])
    if percent and int(match["number"]) > 100:
        raise ReleaseError(f"batch percentage must be at most 100%, not {batch!r}")
    return int(match["number"]), percent


def batches(minions: list[str], size_spec: tuple[int, bool]) -> list[list[str]]:
    """`minions` (sorted) in consecutive batches of the given size, at least one each."""
    number, percent = size_spec
    ordered = sorted(minions)
    size = max(1, math.ceil(len(ordered) * number / 100)) if percent else number
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def plan_waves(minions) -> list[list[str]]:
    """The database minion(s) first, then the workers; empty waves left out."""
    waves = []
    for globs in WAVES:
        prefixes = tuple(glob.rstrip("*") for glob in globs)
        wave = sorted(minion for minion in minions if minion.startswith(prefixes))
        if wave:
            waves.append(wave)
    return waves


def by_role(minions: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for minion in minions:
        role = next((r for prefix, r in ROLE_PREFIXES if minion.startswith(prefix)), None)
        if role is not None:
            groups.setdefault(role, []).append(minion)
    return groups


def failed_returns(returns: dict, minions: list[str]) -> list[str]:
    """The minions that did not answer, or answered with result False."""
    return sorted(
        minion
        for minion in minions
        if not isinstance(returns.get(minion), dict) or not returns[minion].get("result", False)
    )


def state_failures(ret) -> list[str]:
    """What failed in a `state.apply` return: render errors (a list of strings), no
    answer, or each state whose result is False."""
    if isinstance(ret, list):
        return [str(line) for line in ret] or ["no states"]
    if not isinstance(ret, dict) or not ret:
        return [f"no answer: {ret}"]
    failures = []
    for key, state in sorted(ret.items(), key=lambda item: str(item[0])):
        if isinstance(state, dict) and state.get("result") is False:
            state_id = state.get("__id__") or key
            failures.append(f"{state_id}: {str(state.get('comment', ''))[:300]}")
    return failures


def upgrade_problem(status, version: str) -> str | None:
    """Why a minion's `ccmirror.status` does not show the upgrade done, or None."""
    if not isinstance(status, dict):
        return f"no answer to ccmirror.status: {status}"
    if status.get("version") != version:
        return f"runs ccmirror {status.get('version')}, not {version}"
    service = status.get("service") or {}
    if service and service.get("state") != "active":
        return f"{service.get('name')} is {service.get('state')}"
    return None


def version_key(version: str) -> tuple:
    """A sort key for release versions (1.10.0 after 1.9.2; a pre-release before its
    release): enough for our own version strings."""
    parts = re.match(r"^(\d+(?:\.\d+)*)(.*)$", str(version))
    if parts is None:
        return ((), str(version))
    numbers = tuple(int(n) for n in parts[1].split("."))
    numbers += (0,) * (4 - len(numbers))
    return (numbers, (1, "") if not parts[2] else (0, parts[2]))


def change(old: str | None, new: str | None) -> str:
    """upgrade, downgrade, same (a rebuilt wheel is reinstalled) or install (none before)."""
    if not old:
        return "install"
    if not new:
        return "not upgraded"
    if old == new:
        return "same"
    return "upgrade" if version_key(new) > version_key(old) else "downgrade"


def pin_mismatches(pins: dict, minions: list[str], version: str) -> dict[str, str]:
    """minion -> the version its pillar pins, for each minion whose pin is not `version`."""
    wrong = {}
    for minion in minions:
        ret = pins.get(minion)
        pin = ret.get("ccmirror:version") if isinstance(ret, dict) else f"no answer ({ret})"
        if str(pin) != version:
            wrong[minion] = str(pin) or "nothing"
    return wrong


def _comment(ret) -> str:
    if not isinstance(ret, dict):
        return f"no answer ({ret})"
    return str(ret.get("comment") or "failed").strip().splitlines()[-1][:300]


def _version_of(status) -> str | None:
    return status.get("version") if isinstance(status, dict) else None


def _seconds(value, name: str) -> int:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ReleaseError(f"{name} must be a number of seconds, not {value!r}") from None
    if seconds < 0:
        raise ReleaseError(f"{name} must be a number of seconds, not {value!r}")
    return seconds


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "0", "off", "")
    return bool(value)
