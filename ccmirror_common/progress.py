"""Progress of long jobs: one line, redrawn on a terminal, logged when there is none. Used by
the harvester's long commands and `downloader fetch`; standard library only, so that Salt's
Python on the master can load it by path.

On a terminal the line is redrawn every couple of seconds; otherwise (systemd, a pipe) a line
is written every half minute, so the journal shows the same story.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TextIO


def format_duration(seconds: float | None) -> str:
    """An ETA or a run's length, short: 45s, 3m45s, 2h05m, 3d04h; "?" when unknown. Also
    `batch.status`'s ETA on the master (`_runners/batch.py` loads this file by path)."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 86400:
        return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def format_catalog_lag(lag: dict | None) -> str:
    """How far behind now the catalog is, from `harvester status`'s `catalog_lag`
    (harvester/catalog/status.py); `batch.status` on the master prints the same line."""
    if not lag or lag.get("harvested_until") is None:
        return "harvested up to: nothing yet (no time slice done from the first on)"
    until = _utc(lag["harvested_until"])
    return f"harvested up to {until}, {format_duration(lag['lag_seconds'])} behind now"


def format_rechecks(rechecks: dict | None) -> str:
    """The background re-check from `harvester status`'s `rechecks`
    (harvester/recheck/checks.py): what it flagged, and how fresh its checks are (the oldest
    check says how long a full round takes at the budget it has)."""
    flags = (rechecks or {}).get("flags", {})
    flagged = ", ".join(f"{flag} {count:,}" for flag, count in flags.items()) or "none"
    if not rechecks or rechecks.get("last_check") is None:
        return f"re-check: never run; flagged: {flagged}"
    return (
        f"re-check: last check {_utc(rechecks['last_check'])}, oldest"
        f" {_utc(rechecks['oldest_check'])}; flagged: {flagged}"
    )


def _utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# The words every view of the catalog uses (the queue's page, `harvester status`,
# `harvester queue-status`, `salt-run batch.status`): "mirrored" is what is stored, of every
# CC photo the catalog knows but those taken down on purpose; the rest stand apart.
NOT_COUNTED = ("taken_down", "withdrawn")  # taken down for good; no longer CC
APART = ("failed", "gone", "pending", "leased", "in_backoff")


def mirror_words(images: dict, in_backoff: int | None = None) -> dict:
    """The catalog's photos by state, as the views name them: `stored` of `of` (the CC photos
    that count) and the `mirrored` share; `pending` without the photos waiting out a retry's
    backoff, which `in_backoff` counts (None: not known, they stay in `pending`)."""
    counts = {state: int(images.get(state, 0)) for state in ("stored", *APART, *NOT_COUNTED)}
    backoff = min(in_backoff or 0, counts["pending"])  # parked photos are pending ones
    counts["pending"] -= backoff
    counts["in_backoff"] = backoff
    of = sum(int(n) for n in images.values()) - sum(counts[s] for s in NOT_COUNTED)
    share = counts["stored"] / of if of > 0 else 0.0
    return {"mirrored": share, "of": of, **counts}


def format_mirrored(images: dict, in_backoff: int | None = None) -> str:
    """One line: "37.5% mirrored (12 of 32 CC photos stored); failed 3, gone 2, ..."."""
    w = mirror_words(images, in_backoff)
    apart = ", ".join(
        f"{state.replace('_', ' ')} {w[state]:,}"
        for state in APART
        if state != "in_backoff" or in_backoff is not None
    )
    return (
        f"{100 * w['mirrored']:.1f}% mirrored ({w['stored']:,} of {w['of']:,} CC photos"
        f" stored); {apart}; not counted: taken down {w['taken_down']:,},"
        f" no longer CC {w['withdrawn']:,}"
    )


def mirror_eta_seconds(stored_last_hour: int, to_do: int) -> float | None:
    """Seconds to store `to_do` photos at the last hour's rate; None without a rate."""
    if to_do <= 0:
        return 0.0
    return to_do / stored_last_hour * 3600 if stored_last_hour > 0 else None


def format_mirror_eta(stored_last_hour: int, to_do: int) -> str:
    """ "at 1,234/h: 3d04h", "no ETA: nothing stored in the last hour" or "nothing left"."""
    if to_do <= 0:
        return "nothing left to store"
    eta = mirror_eta_seconds(stored_last_hour, to_do)
    if eta is None:
        return "no ETA: nothing stored in the last hour"
    return f"at {stored_last_hour:,}/h: {format_duration(eta)}"


def format_stored_rate(stored: dict) -> str:
    """ "stored 1,234 in the last hour, 20,000 in 24 h; at 1,234/h: 3d04h", from the
    queue status's `stored` figures."""
    return (
        f"stored {stored['last_hour']:,} in the last hour, {stored['last_24h']:,} in 24 h; "
        + format_mirror_eta(stored["last_hour"], stored["to_do"])
    )


class ProgressLine:
    def __init__(
        self, stream: TextIO | None = None, tty_interval: float = 2.0, interval: float | None = None
    ) -> None:
        """`interval`: seconds between lines off a terminal (30), for a caller that relays
        them (`salt-run audit.storage progress_seconds=`)."""
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = tty_interval if self.tty else 30.0 if interval is None else interval
        self.started = time.monotonic()
        self.last = self.started

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-6)

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval

    def show(self, line: str, final: bool = False) -> None:
        self.last = time.monotonic()
        if self.tty and not final:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(("\r\x1b[K" if self.tty else "") + line + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Before another message on a terminal, so it does not land mid-line."""
        if self.tty:
            self.stream.write("\r\x1b[K")
