"""What the runners do alike: a progress line for salt-run's caller, a LocalClient, and
checked arguments. Every runner reaches this module as ``__utils__["runner_tools.*"]`` (the
master's config has ``utils_dirs`` on this checkout's ``_utils/``): written once here instead
of once per runner.

A runner passes what Salt injects into the runner, not into this module: its
``__jid_event__`` (present only during a job) and its ``__opts__`` (the master's).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import salt.client

__virtualname__ = "runner_tools"
__load__ = ["progress", "reporter", "local_client", "seconds", "flag"]


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


# Arguments: a ValueError whose message says which and why.


def seconds(value: object, name: str) -> float:
    """A number of seconds from 0 to a day; anything else is refused."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds; not {value!r}") from None
    if not 0 <= seconds <= 86400:
        raise ValueError(f"{name} must be from 0 to 86400 seconds; not {value!r}")
    return seconds


def flag(value: object, name: str) -> bool:
    """A True/False argument, as Salt passes `force=True`; anything else is refused."""
    if isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be True or False; not {value!r}")
