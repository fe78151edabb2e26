"""`downloader run`'s Prometheus metrics (the names are #22's contract, shared with the alert
rules): photos by what the queue made of their reports, image bytes fetched, how long each
phase of a lease takes, the spool's size and its disk's free space, failed pushes.

Counted where the thing happens: the report's answer (downloader/daemon.py), the fetch stage's
results and the push's failed attempts (downloader/stages.py). The spool gauges are read when
Prometheus scrapes, so they are never stale. Served by ccmirror_common/metrics_server.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# The queue's answer to a report (its CompleteResponse lists) -> the contract's outcome.
# `ignored` (a failure of a photo the lease no longer held) and `taken_down` are not the
# downloader's outcomes; they are counted by the queue.
REPORT_OUTCOMES = {
    "stored": "stored",
    "already_stored": "already_stored",
    "failed": "failed",
    "gone": "gone",
    "requeued": "retry",
}
PHASES = ("lease", "fetch", "verify", "push", "report")
# A lease's phases run from milliseconds (a lease call) to many minutes (a push waiting out
# storage): the buckets span both.
PHASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class DownloaderMetrics:
    def __init__(self, spool_root: Path) -> None:
        self.registry = CollectorRegistry()
        self.spool_root = spool_root
        self._photos = Counter(
            "ccmirror_downloader_photos",
            "Photos reported, by what the queue made of the report",
            ["outcome"],
            registry=self.registry,
        )
        self._bytes = Counter(
            "ccmirror_downloader_bytes", "Image bytes fetched", registry=self.registry
        )
        self._phase = Histogram(
            "ccmirror_downloader_phase_seconds",
            "Seconds a lease spent in each phase (verify: listing its checked photos)",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=self.registry,
        )
        self._push_failures = Counter(
            "ccmirror_downloader_push_failures",
            "Push attempts that failed (each retry's failure, and the last)",
            registry=self.registry,
        )
        for outcome in REPORT_OUTCOMES.values():
            self._photos.labels(outcome)  # every series exists from the start, at 0
        for phase in PHASES:
            self._phase.labels(phase)
        spool = Gauge(
            "ccmirror_downloader_spool_bytes",
            "Bytes of files in the spool (the lease in hand, quarantine, the reserve)",
            registry=self.registry,
        )
        spool.set_function(lambda: spool_bytes(self.spool_root))
        free = Gauge(
            "ccmirror_downloader_spool_free_bytes",
            "Bytes free to the daemon on the spool's disk",
            registry=self.registry,
        )
        free.set_function(lambda: free_bytes(self.spool_root))

    def reported(self, answer: dict) -> None:
        """The queue's answer to one report (`QueueClient.complete`)."""
        for key, outcome in REPORT_OUTCOMES.items():
            count = len(answer.get(key) or ())
            if count:
                self._photos.labels(outcome).inc(count)

    def fetched_bytes(self, count: int) -> None:
        self._bytes.inc(count)

    def push_failed(self) -> None:
        self._push_failures.inc()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as `name` (one of PHASES), whether it ends well or not."""
        started = time.monotonic()
        try:
            yield
        finally:
            self._phase.labels(name).observe(time.monotonic() - started)


def spool_bytes(root: Path) -> int:
    """Sizes of the files under `root` (a spool holds one lease: a walk is cheap)."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:  # removed while walking: the lease finished meanwhile
                continue
    return total


def free_bytes(root: Path) -> int:
    try:
        stats = os.statvfs(root)
    except OSError:  # no spool yet
        return 0
    return stats.f_bavail * stats.f_frsize
