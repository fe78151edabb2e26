"""Per-host concurrency and politeness: which job a worker runs next.

Each host has a gate (its connection limit, its request rate, a Retry-After pause and the
jobs queued for it); the scheduler hands a free worker the next job whose host can take a
request now, so a host at its limit, paused or rate-held never holds a worker another host
could use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable

from downloader.fetch.items import FetchItem, FetchResult
from downloader.fetch.settings import HostLimit

LOOKAHEAD = 10_000  # items read ahead of the workers, queued under their hosts


class HostGate:
    """One host's limits and state: requests in flight, the next start its rate allows, a
    Retry-After pause, and the jobs waiting for it."""

    __slots__ = ("limit", "interval", "next_start", "paused_until", "in_flight", "queue")

    def __init__(self, limit: HostLimit) -> None:
        self.limit = limit.connections
        self.interval = 1.0 / limit.per_second if limit.per_second > 0 else 0.0
        self.next_start = 0.0
        self.paused_until = 0.0
        self.in_flight = 0
        self.queue: deque[Job] = deque()

    def ready(self, now: float) -> bool:
        if self.limit and self.in_flight >= self.limit:
            return False
        return self.paused_until <= now and self.next_start <= now

    def pause(self, seconds: float, now: float) -> None:
        self.paused_until = max(self.paused_until, now + seconds)


class Job:
    """An item on its way: the URL to try next, on which host, and what happened before."""

    __slots__ = ("item", "url", "gate", "waits", "first", "fresh")

    def __init__(self, item: FetchItem, gate: HostGate, waits: int) -> None:
        self.item = item
        self.url = item.url
        self.gate = gate
        self.waits = waits  # Retry-After waits left for this URL
        self.first: FetchResult | None = None  # the main URL's refusal, once on the fallback
        self.fresh = True


class Scheduler:
    """Hands workers the next job whose host can take a request now.

    Workers never wait on one host: a job for a host that is at its connection limit, paused
    by Retry-After or held back by its rate stays queued under that host while workers take
    other hosts' jobs, so a slow host does not starve the others. Among hosts with queued
    jobs the one with the fewest requests in flight goes first. Items are read from the
    iterable lazily, at most LOOKAHEAD ahead of the workers.
    """

    def __init__(
        self, items: Iterable[FetchItem], gate_for: Callable[[str], HostGate], waits: int
    ) -> None:
        self._items = iter(items)
        self._more = True
        self._gate_for = gate_for
        self._waits = waits
        self._waiting: dict[HostGate, None] = {}  # gates with queued jobs, an ordered set
        self._queued = 0
        self._active = 0
        self._parked: deque[asyncio.Future] = deque()
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    async def next_job(self) -> Job | None:
        """The next job to run (its host's slot taken), or None when everything is done."""
        while True:
            now = self._loop.time()
            job = self._ready_job(now)
            if job is not None:
                gate = job.gate
                gate.in_flight += 1
                gate.next_start = now + gate.interval
                self._active += 1
                if self._parked and self._waiting:
                    self._wake_one()  # more may be ready (a pause ended): pass it on
                return job
            if not self._more and not self._queued and not self._active:
                self._wake_all()
                return None
            await self._park(now)

    def release(self, gate: HostGate, requeue: Job | None) -> None:
        """A job is off `gate`; `requeue` goes to the front of its (new) host's queue."""
        gate.in_flight -= 1
        self._active -= 1
        if requeue is not None:
            requeue.gate.queue.appendleft(requeue)
            self._waiting[requeue.gate] = None
            self._queued += 1
        if self._parked:
            if not self._more and not self._queued and not self._active:
                self._wake_all()
            else:
                self._wake_one()

    def _ready_job(self, now: float) -> Job | None:
        best: HostGate | None = None
        for gate in self._waiting:
            if gate.ready(now) and (best is None or gate.in_flight < best.in_flight):
                best = gate
        if best is not None:
            self._queued -= 1
            job = best.queue.popleft()
            if not best.queue:
                del self._waiting[best]
            return job
        while self._more and self._queued < LOOKAHEAD:
            item = next(self._items, None)
            if item is None:
                self._more = False
                break
            job = Job(item, self._gate_for(item.url), self._waits)
            gate = job.gate
            if not gate.queue and gate.ready(now):
                return job
            gate.queue.append(job)
            self._waiting[gate] = None
            self._queued += 1
        return None

    async def _park(self, now: float) -> None:
        self._arm_timer(now)
        waiter = self._loop.create_future()
        self._parked.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():  # cancelled
                with contextlib.suppress(ValueError):
                    self._parked.remove(waiter)

    def _arm_timer(self, now: float) -> None:
        """Wake a worker when the first host held back only by time (pause, rate) is free."""
        when = min(
            (
                max(g.paused_until, g.next_start)
                for g in self._waiting
                if not (g.limit and g.in_flight >= g.limit)
            ),
            default=float("inf"),
        )
        if when <= now or when >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        self._wake_one()

    def _wake_one(self) -> None:
        while self._parked:
            waiter = self._parked.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._parked:
            waiter = self._parked.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = float("inf")


def host_of(url: str) -> str:
    """The host part of an http(s) URL, lower case: what per-host limits are keyed by.
    Cheaper than urlsplit on the hot path; the client parses the URL in full."""
    authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")].lower()
    return host.split(":", 1)[0].lower()
