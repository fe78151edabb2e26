"""Checked arguments of runners and execution modules: a ValueError whose message says which
argument and why. Runners reach it as ``__utils__["arguments.*"]`` from the master's
``utils_dirs``; minions get it from ``salt://_utils/`` (saltutil.sync_all, as a highstate
does), so `_modules/ccmirror.py` checks `wait=` as `fleet.down` does, with one function.
Standard library only: it loads on the master and on every minion alike.
"""

from __future__ import annotations

__virtualname__ = "arguments"
__load__ = ["seconds", "flag"]


def __virtual__():
    return __virtualname__


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
