"""A fetch run's progress: counts by outcome, rate, bytes, ETA, as one line for a terminal
or a log."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from ccmirror_common.progress import format_duration
from downloader.fetch.items import OUTCOMES, FetchResult


@dataclass
class FetchProgress:
    started: float = field(default_factory=time.monotonic)
    counts: Counter = field(default_factory=Counter)
    reused: int = 0
    bytes: int = 0

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-6)

    def rate(self) -> float:
        return self.done / self.elapsed

    def eta(self, total: int) -> float | None:
        rate = self.rate()
        return (total - self.done) / rate if rate > 0 else None

    def add(self, result: FetchResult) -> None:
        self.counts[result.outcome] += 1
        if result.reused:
            self.reused += 1
        elif result.outcome == "stored":
            self.bytes += result.bytes

    def line(self, total: int | None = None) -> str:
        done = f"{self.done:,}" + (f"/{total:,}" if total else "")
        classes = " ".join(f"{k} {self.counts[k]:,}" for k in OUTCOMES)
        text = f"{done} images ({classes}), {self.rate():,.0f}/s, {self.bytes / 1e6:,.1f} MB"
        if self.reused:
            text += f", {self.reused:,} already present"
        eta = self.eta(total) if total else None
        if eta is not None and self.done < (total or 0):
            text += f", ETA {format_duration(eta)}"
        return text
