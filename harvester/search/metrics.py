"""`harvester work`'s Prometheus metrics (the names are #22's contract, shared with the alert
rules): Flickr calls by method and outcome, photos recorded, seconds slept on the key's
budget, the budget itself, and the task table as this worker last counted it.

Counted where the thing happens: each HTTP call's outcome in the Flickr client, each wait in
the token bucket, each page recorded by the worker, the task counts its progress line reads.
Served by ccmirror_common/metrics_server.py when `metrics.listen` is set.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

# ok: an answer with stat ok; flickr_error: stat fail (any code); http_error: no usable
# answer (5xx, another status, not JSON, the connection refused or cut); timeout: none in
# flickr.timeout; rate_limited: HTTP 429.
CALL_OUTCOMES = ("ok", "flickr_error", "http_error", "timeout", "rate_limited")
TASK_STATES = ("pending", "running", "done", "failed")


class HarvesterMetrics:
    def __init__(self, calls_per_hour: float = 0.0) -> None:
        self.registry = CollectorRegistry()
        self._calls = Counter(
            "ccmirror_harvester_api_calls",
            "Flickr API calls (HTTP requests, retries included) by method and outcome",
            ["method", "outcome"],
            registry=self.registry,
        )
        self._photos = Counter(
            "ccmirror_harvester_photos",
            "Photos recorded from search results",
            registry=self.registry,
        )
        self._waited = Counter(
            "ccmirror_harvester_rate_limit_wait_seconds",
            "Seconds slept waiting for the API key's call budget",
            registry=self.registry,
        )
        budget = Gauge(
            "ccmirror_harvester_api_budget_calls_per_hour",
            "The worker's configured Flickr call budget (flickr.rate_limit_per_hour; 0: none)",
            registry=self.registry,
        )
        budget.set(calls_per_hour)
        self._tasks = Gauge(
            "ccmirror_harvester_search_tasks",
            "Search tasks by state, as this worker last counted them",
            ["state"],
            registry=self.registry,
        )

    def api_call(self, method: str, outcome: str) -> None:
        self._calls.labels(method, outcome).inc()

    def photos(self, count: int) -> None:
        self._photos.inc(count)

    def rate_limit_waited(self, seconds: float) -> None:
        self._waited.inc(seconds)

    def task_states(self, counts: dict[str, int]) -> None:
        for state in sorted({*TASK_STATES, *counts}):
            self._tasks.labels(state).set(counts.get(state, 0))
