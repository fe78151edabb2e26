"""What the runners do alike with Salt: a progress line for salt-run's caller, a LocalClient,
calls to a list of minions and the master's minion keys. Every runner reaches this module as
``__utils__["runner_tools.*"]`` (the master's config has ``utils_dirs`` on this checkout's
``_utils/``): written once here instead of once per runner.

A runner passes what Salt injects into the runner, not into this module: its
``__jid_event__`` (present only during a job) and its ``__opts__`` (the master's).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import salt.client
import salt.loader

__virtualname__ = "runner_tools"
__load__ = [
    "progress",
    "local_client",
    "cmd",
    "ping",
    "wait_minions",
    "state_failure",
    "minion_keys",
    "delete_key",
    "wheel",
]


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


def local_client(opts: dict) -> Any:
    """The master's LocalClient, to be used as a context manager (it closes its event bus)."""
    return salt.client.get_local_client(opts["conf_file"])


def cmd(opts: dict, targets: list[str], fun: str, timeout: int = 60, **kwargs: Any) -> dict:
    """`fun` on a list of minions: their returns by id (a silent minion is left out)."""
    with local_client(opts) as client:
        return client.cmd(targets, fun, tgt_type="list", timeout=timeout, **kwargs)


def ping(opts: dict, targets: list[str], timeout: int) -> dict[str, bool]:
    """Whether each minion answers `test.ping` within `timeout` seconds."""
    answers = cmd(opts, targets, "test.ping", timeout=timeout)
    return {t: answers.get(t) is True for t in targets}


def wait_minions(opts: dict, targets: list[str], seconds: float, ping_timeout: int) -> set[str]:
    """The minions that answered within `seconds`, pinged again until all have."""
    deadline = time.monotonic() + seconds
    answered: set[str] = set()
    while time.monotonic() < deadline:
        waiting = [t for t in targets if t not in answered]
        answered |= {m for m, ok in ping(opts, waiting, ping_timeout).items() if ok}
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
