"""The per-key token bucket, on a fake clock."""

from __future__ import annotations

import threading

from harvester.search import rate_limit
from harvester.search.rate_limit import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeStop(threading.Event):
    """Waiting advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waited = 0.0

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.now += timeout or 0.0
        self.waited += timeout or 0.0
        return self.is_set()


def test_3600_an_hour_allows_a_minute_of_burst_then_one_a_second(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(rate_limit.time, "monotonic", clock.monotonic)
    stop = FakeStop(clock)
    bucket = TokenBucket(3600, stop)
    for _ in range(60):
        assert bucket.acquire()
    assert stop.waited == 0.0
    for _ in range(30):
        assert bucket.acquire()
    assert abs(stop.waited - 30.0) < 1e-6  # 30 more calls took 30 seconds


def test_zero_lifts_the_limit():
    bucket = TokenBucket(0)
    assert all(bucket.acquire() for _ in range(10_000))


def test_stop_ends_the_wait(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(rate_limit.time, "monotonic", clock.monotonic)
    stop = FakeStop(clock)
    bucket = TokenBucket(60, stop)  # one token, then one a minute
    assert bucket.acquire()
    stop.set()
    assert bucket.acquire() is False


def test_each_wait_is_told_with_its_seconds(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(rate_limit.time, "monotonic", clock.monotonic)
    waits: list[float] = []
    bucket = TokenBucket(3600, FakeStop(clock), on_wait=waits.append)
    for _ in range(90):
        assert bucket.acquire()
    assert len(waits) == 30 and abs(sum(waits) - 30.0) < 1e-6  # the metric's seconds
