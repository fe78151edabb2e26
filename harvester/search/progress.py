"""A harvest's progress line: search tasks done of all, photos, API calls per second, ETA."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from ccmirror_common.progress import ProgressLine, format_duration
from harvester.search.tasks import counts_by_state


class HarvestProgress:
    """Search tasks done of all, photos, API calls per second, ETA."""

    def __init__(self, conn, label: str, stream: TextIO | None = None) -> None:
        self.conn = conn
        self.label = label
        self.out = ProgressLine(stream)
        self.first_done: int | None = None
        # Told every count of the task table the line shows (the worker's metrics).
        self.on_counts: Callable[[dict[str, int]], None] | None = None

    def maybe_report(self, calls: int, photos: int) -> None:
        if self.out.due():
            self.report(calls, photos)

    def report(self, calls: int, photos: int, final: bool = False) -> None:
        counts = counts_by_state(self.conn)
        if self.on_counts is not None:
            self.on_counts(counts)
        self.out.show(self.line(counts, calls, photos), final)

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
