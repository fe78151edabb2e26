"""`GET /metrics`: the queue in Prometheus' text format.

Gauges come from the status snapshot (so a scrape costs no more than the status page);
counters count what this service process did since it started, as Prometheus expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from harvester.queue.leases import ReportOutcome

OUTCOMES = ("stored", "already_stored", "requeued", "failed", "gone", "ignored")


class QueueMetrics:
    def __init__(self, snapshot: Callable[[], dict]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_SnapshotCollector(snapshot))
        self._leased = Counter(
            "ccmirror_queue_items_leased",
            "Photos leased to workers",
            ["worker"],
            registry=self.registry,
        )
        self._reported = Counter(
            "ccmirror_queue_items_reported",
            "Photos reported by workers, by what the report did",
            ["worker", "outcome"],
            registry=self.registry,
        )
        self._expired = Counter(
            "ccmirror_queue_leases_expired", "Leases that lapsed", registry=self.registry
        )
        self._requeued = Counter(
            "ccmirror_queue_items_requeued_on_expiry",
            "Photos back in the queue because their lease lapsed",
            registry=self.registry,
        )
        self._refusals = Counter(
            "ccmirror_queue_maintenance_refusals",
            "Lease requests answered empty in maintenance mode",
            registry=self.registry,
        )
        # Set by this process's reaper, not the (cached) snapshot: 0 until its first sweep.
        self._reaped_at = Gauge(
            "ccmirror_queue_lease_reaper_last_run_timestamp_seconds",
            "Unix time the lease reaper last finished a sweep",
            registry=self.registry,
        )

    def leased(self, worker: str, items: int) -> None:
        self._leased.labels(worker).inc(items)

    def reported(self, worker: str, outcome: ReportOutcome) -> None:
        for name in OUTCOMES:
            count = len(getattr(outcome, name))
            if count:
                self._reported.labels(worker, name).inc(count)

    def expired(self, leases: int, items: int) -> None:
        self._expired.inc(leases)
        self._requeued.inc(items)

    def reaper_ran(self, at: float) -> None:
        self._reaped_at.set(at)

    def maintenance_refusal(self) -> None:
        self._refusals.inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _SnapshotCollector:
    def __init__(self, snapshot: Callable[[], dict]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self.snapshot()
        images = GaugeMetricFamily(
            "ccmirror_images", "Catalog photos by download state", labels=["state"]
        )
        for state, count in status["images"].items():
            images.add_metric([state], count)
        yield images
        yield GaugeMetricFamily(
            "ccmirror_queue_leases_active", "Leases held now", value=status["leases_active"]
        )
        yield GaugeMetricFamily(
            "ccmirror_queue_items_leased_out",
            "Photos under active leases, not yet reported",
            value=status["items_leased_out"],
        )
        yield GaugeMetricFamily(
            "ccmirror_queue_items_in_backoff",
            "Pending photos waiting out a retry's backoff before they are leased again",
            value=status["items_in_backoff"],
        )
        yield GaugeMetricFamily(
            "ccmirror_queue_maintenance", "1 in maintenance mode", value=int(status["maintenance"])
        )
        yield GaugeMetricFamily(
            "ccmirror_queue_oldest_lease_age_seconds",
            "Seconds the oldest active lease has been out (0 when none is)",
            value=status["oldest_lease_age_seconds"],
        )
        lag = status["catalog_lag"]["lag_seconds"]  # the operator figures' (queue/figures.py)
        if lag is not None:  # absent until a first slice is done
            yield GaugeMetricFamily(
                "ccmirror_catalog_lag_seconds",
                "Seconds between now and the upload time the catalog is harvested up to",
                value=lag,
            )
        rate = GaugeMetricFamily(
            "ccmirror_queue_worker_stored_per_second",
            "Photos stored per second over the last 5 minutes",
            labels=["worker"],
        )
        for worker in status["workers"]:
            rate.add_metric([worker["worker"]], worker["stored_per_second_5m"])
        yield rate
