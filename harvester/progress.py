"""Progress of long jobs: one line, redrawn on a terminal, logged when there is none.

On a terminal the line is redrawn every couple of seconds; otherwise (systemd, a pipe) a line
is written every half minute, so the journal shows the same story.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from harvester.search.tasks import counts_by_state


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class ProgressLine:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 2.0 if self.tty else 30.0
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


class HarvestProgress:
    """Search tasks done of all, photos, API calls per second, ETA."""

    def __init__(self, conn, label: str, stream: TextIO | None = None) -> None:
        self.conn = conn
        self.label = label
        self.out = ProgressLine(stream)
        self.first_done: int | None = None

    def maybe_report(self, calls: int, photos: int) -> None:
        if self.out.due():
            self.report(calls, photos)

    def report(self, calls: int, photos: int, final: bool = False) -> None:
        self.out.show(self.line(counts_by_state(self.conn), calls, photos), final)

    def line(self, counts: dict[str, int], calls: int, photos: int) -> str:
        elapsed = self.out.elapsed
        total = sum(counts.values())
        finished = counts.get("done", 0) + counts.get("failed", 0)
        if self.first_done is None:
            self.first_done = finished
        rate = (finished - self.first_done) / elapsed
        eta = (total - finished) / rate if rate > 0 else None
        percent = 100.0 * finished / total if total else 100.0
        return (
            f"{self.label}: tasks {finished:,}/{total:,} ({percent:.1f}%)"
            f" running {counts.get('running', 0)} failed {counts.get('failed', 0)}"
            f" | photos {photos:,} | {calls / elapsed:.1f} calls/s"
            f" | ETA {format_duration(eta)}"
        )
