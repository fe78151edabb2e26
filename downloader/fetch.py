"""The fetch stage: download images concurrently, verify them while streaming, hash and write.

One `Fetcher` (asyncio + aiohttp, one connection pool) serves a whole run. A daemon hands it
one lease's items and takes results as they finish::

    async with Fetcher(spool, FetchSettings(...), present=OnDisk(spool)) as fetcher:
        async for result in fetcher.stream(items):
            journal.record(result)            # result.report() is the queue's item format
        fetcher.progress.line(len(items))     # counts by outcome, rate, ETA

Each item ends in exactly one outcome: `stored` (written to `<out>/<layout.image_path>` by
temp file and rename, with its sha256), or a failure class for the queue: `gone` (404, 410,
Flickr's "photo unavailable" placeholder), `retry` (5xx, 429, 403, timeouts, resets,
truncated bodies, redirect loops) or `bad` (not an image, body longer than announced, over
the size cap, other 4xx). Nothing but a verified image is ever renamed into place.

Why our own HTTP client (downloader/http_client.py): CPU per image is the budget on a one-vCPU
droplet. One event loop with pooled keep-alive connections costs a fraction of a thread per
connection, and a bare Protocol parser costs a fraction of aiohttp's per request; the body is
hashed, checked and kept as it arrives, in the connection's data_received (see bench/fetch.py).
Workers take jobs from a scheduler that keeps per-host queues, so hosts at their limit, paused
or rate-held never hold workers that other hosts could use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import re
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Container, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar
from urllib.parse import urlsplit

from ccmirror_common.hosts import DEFAULT_POLICY, HostPolicy
from downloader import http_client, verify
from downloader.fetch_body import Body, Refused, sniff, write_all
from downloader.http_client import HttpClient, Response
from downloader.layout import IMAGE_EXTENSIONS, image_path
from downloader.spool import SpoolError, disk_full  # SpoolError: callers catch it from here

OUTCOMES = ("stored", "gone", "retry", "bad")
LOOKAHEAD = 10_000  # items read ahead of the workers, queued under their hosts
USER_AGENT = "ccmirror-downloader/0.1"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FetchItem:
    photo_id: int
    url: str
    fallback_url: str | None = None
    catalog_id: int | None = None  # the queue's id for the photo, passed through untouched


@dataclass(frozen=True, slots=True)
class FetchResult:
    item: FetchItem
    outcome: str  # one of OUTCOMES
    path: str | None = None  # relative to the output root: layout.image_path(photo_id, ext)
    sha256: str | None = None
    bytes: int = 0
    ext: str | None = None
    url: str | None = None  # the URL the bytes came from, after redirects (or the one tried)
    error: str | None = None  # one line, for failures
    reused: bool = False  # already present from an earlier run: hashed from disk, not fetched

    def __post_init__(self) -> None:
        # The one place every error is made: whatever a host sent (a long redirect target,
        # control bytes) leaves the fetcher as a bounded, printable line.
        if self.error is not None:
            object.__setattr__(self, "error", verify.printable(self.error))

    def report(self) -> dict:
        """The item as the queue's `complete` call takes it."""
        key = self.item.catalog_id if self.item.catalog_id is not None else self.item.photo_id
        if self.outcome == "stored":
            return {
                "id": key,
                "result": "stored",
                "sha256": self.sha256,
                "bytes": self.bytes,
                "path": self.path,
            }
        return {"id": key, "result": self.outcome, "error": self.error}


@dataclass(frozen=True, slots=True)
class HostLimit:
    connections: int = 0  # requests in flight to the host at once; 0: only the global limit
    per_second: float = 0.0  # requests started per second; 0: unlimited


@dataclass(frozen=True)
class FetchSettings:
    concurrency: int = 64  # connections in flight, all hosts together
    # Per-domain limits, like img2dataset's / wget's max_downloads tables: a key matches the
    # host itself and its subdomains ("staticflickr.com" covers farm1.staticflickr.com).
    hosts: Mapping[str, HostLimit] = field(default_factory=dict)
    default_host: HostLimit = HostLimit()
    max_bytes: int = 50 * 1024 * 1024
    max_redirects: int = 5
    total_timeout: float = 120.0  # one request, connect to last byte
    read_timeout: float = 30.0  # longest silence while reading
    connect_timeout: float = 10.0
    # A 429/503 pauses its host for Retry-After (or `default_backoff`), at most `max_pause`;
    # the item then waits it out and tries again up to `waits_per_item` times before `retry`.
    default_backoff: float = 1.0
    max_pause: float = 60.0
    waits_per_item: int = 1
    fallback: bool = True  # on 403/404/410/placeholder, try the item's fallback URL
    fsync: bool = False  # a spool that a crash may lose is re-fetched: the rename suffices
    user_agent: str = USER_AGENT
    allow_hosts: HostPolicy = DEFAULT_POLICY  # the only hosts requested (no SSRF)

    def host_limit(self, host: str) -> HostLimit:
        domain = host
        while True:
            if domain in self.hosts:
                return self.hosts[domain]
            if "." not in domain:
                return self.default_host
            domain = domain.split(".", 1)[1]


class OnDisk(Container[str]):
    """`present` for a daemon resuming a spool: a path is present when its file exists."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __contains__(self, relpath: object) -> bool:
        return isinstance(relpath, str) and (self.root / relpath).is_file()


def scan_present(root: Path) -> set[str]:
    """Every image file under `root/images`, as relative paths: one walk instead of a stat
    per item, for a whole URL list."""
    found: set[str] = set()
    base = root / "images"
    for directory, _, files in os.walk(base):
        rel = Path(directory).relative_to(root).as_posix()
        found.update(f"{rel}/{name}" for name in files if not name.endswith(".part"))
    return found


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
            text += f", ETA {_duration(eta)}"
        return text


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _HostGate:
    """One host's limits and state: requests in flight, the next start its rate allows, a
    Retry-After pause, and the jobs waiting for it."""

    __slots__ = ("limit", "interval", "next_start", "paused_until", "in_flight", "queue")

    def __init__(self, limit: HostLimit) -> None:
        self.limit = limit.connections
        self.interval = 1.0 / limit.per_second if limit.per_second > 0 else 0.0
        self.next_start = 0.0
        self.paused_until = 0.0
        self.in_flight = 0
        self.queue: deque[_Job] = deque()

    def ready(self, now: float) -> bool:
        if self.limit and self.in_flight >= self.limit:
            return False
        return self.paused_until <= now and self.next_start <= now

    def pause(self, seconds: float, now: float) -> None:
        self.paused_until = max(self.paused_until, now + seconds)


class _Job:
    """An item on its way: the URL to try next, on which host, and what happened before."""

    __slots__ = ("item", "url", "gate", "waits", "first", "fresh")

    def __init__(self, item: FetchItem, gate: _HostGate, waits: int) -> None:
        self.item = item
        self.url = item.url
        self.gate = gate
        self.waits = waits  # Retry-After waits left for this URL
        self.first: FetchResult | None = None  # the main URL's refusal, once on the fallback
        self.fresh = True


class _Scheduler:
    """Hands workers the next job whose host can take a request now.

    Workers never wait on one host: a job for a host that is at its connection limit, paused
    by Retry-After or held back by its rate stays queued under that host while workers take
    other hosts' jobs, so a slow host does not starve the others. Among hosts with queued
    jobs the one with the fewest requests in flight goes first. Items are read from the
    iterable lazily, at most LOOKAHEAD ahead of the workers.
    """

    def __init__(
        self, items: Iterable[FetchItem], gate_for: Callable[[str], _HostGate], waits: int
    ) -> None:
        self._items = iter(items)
        self._more = True
        self._gate_for = gate_for
        self._waits = waits
        self._waiting: dict[_HostGate, None] = {}  # gates with queued jobs, an ordered set
        self._queued = 0
        self._active = 0
        self._parked: deque[asyncio.Future] = deque()
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    async def next_job(self) -> _Job | None:
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

    def release(self, gate: _HostGate, requeue: _Job | None) -> None:
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

    def _ready_job(self, now: float) -> _Job | None:
        best: _HostGate | None = None
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
            job = _Job(item, self._gate_for(item.url), self._waits)
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


@dataclass(slots=True)
class _Attempt:
    """One URL tried: a result, and for a 429/503 how long its host asked us to wait."""

    result: FetchResult
    wait: float | None = None
    status: int | None = None


class Fetcher:
    """Fetch items into `out` (see the module docstring). Use as an async context manager."""

    def __init__(
        self,
        out: Path,
        settings: FetchSettings | None = None,
        present: Container[str] | None = None,
    ) -> None:
        self.out = Path(out)
        self.settings = settings or FetchSettings()
        self.present = present
        self.progress = FetchProgress()
        self._gates: dict[str, _HostGate] = {}
        self._made_dirs: set[str] = set()
        self._client: HttpClient | None = None
        self._temp_names = itertools.count()
        self._root = str(self.out)
        self._pid = os.getpid()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> Fetcher:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self._client = HttpClient(
            user_agent=s.user_agent,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            total_timeout=s.total_timeout,
            allow_hosts=s.allow_hosts,
            max_idle_per_host=s.concurrency,
        )
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # ---------------------------------------------------------------------- public calls
    async def stream(self, items: Iterable[FetchItem]) -> AsyncIterator[FetchResult]:
        """Fetch `items` with `concurrency` workers; yield each result as it finishes.

        Workers pull from the iterable lazily (see _Scheduler), so a long URL list never
        becomes a task each. Breaking out of the loop cancels what is still in flight (no
        partial file is left).
        """
        assert self._client is not None, "use `async with`"
        scheduler = _Scheduler(items, self._gate, self.settings.waits_per_item)
        results: asyncio.Queue[FetchResult | Exception | None] = asyncio.Queue()

        async def worker() -> None:
            try:
                while (job := await scheduler.next_job()) is not None:
                    gate = job.gate
                    try:
                        result = await self._run(job)
                    except BaseException:
                        scheduler.release(gate, None)
                        raise
                    scheduler.release(gate, job if result is None else None)
                    if result is not None:
                        self.progress.add(result)
                        results.put_nowait(result)
            except Exception as e:  # a SpoolError (or a bug): the caller sees it, not a result
                results.put_nowait(e)
            finally:
                results.put_nowait(None)

        workers = [asyncio.create_task(worker()) for _ in range(self.settings.concurrency)]
        running = len(workers)
        try:
            while running:
                result = await results.get()
                if result is None:
                    running -= 1
                elif isinstance(result, Exception):
                    raise result
                else:
                    yield result
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def fetch(self, item: FetchItem) -> FetchResult:
        """One item alone (its own stream)."""
        async for result in self.stream([item]):
            return result
        raise AssertionError("a stream yields one result per item")

    # ---------------------------------------------------------------------- one job
    async def _run(self, job: _Job) -> FetchResult | None:
        """One step of a job (see _step). Whatever goes wrong with one photo is that photo's
        outcome, never the run's: only a spool that cannot be written stops the run."""
        try:
            return await self._step(job)
        except SpoolError:
            raise
        except Exception as e:
            if disk_full(e):
                raise SpoolError(f"cannot write the spool: {e.strerror}") from e
            error = f"unexpected {type(e).__name__}: {e}"
            return FetchResult(job.item, "retry", url=job.url, error=error)

    async def _step(self, job: _Job) -> FetchResult | None:
        """The result, or None when the job was changed to be queued again (a Retry-After
        wait on the same host, or the fallback URL on its host)."""
        item = job.item
        if job.fresh:
            job.fresh = False
            reused = self._reuse(item)
            if reused is not None:
                return reused
        attempt = await self._attempt(item, job.url, job.gate)
        s = self.settings
        if attempt.wait is not None and job.waits > 0 and attempt.wait <= s.max_pause:
            job.waits -= 1  # the host is paused: the scheduler holds the job until it ends
            return None
        if job.first is None:
            if not self._wants_fallback(item, attempt):
                return attempt.result
            job.first = attempt.result
            job.url = item.fallback_url  # type: ignore[assignment]
            job.gate = self._gate(job.url)
            job.waits = s.waits_per_item
            return None
        first, second = job.first, attempt.result
        if second.outcome == "stored":
            return second
        # Both refused: say so about both; a fallback that may still work keeps it `retry`.
        outcome = "retry" if "retry" in (first.outcome, second.outcome) else "gone"
        error = f"{first.error}; fallback: {second.error}"
        return FetchResult(item, outcome, url=second.url, error=error)

    def _reuse(self, item: FetchItem) -> FetchResult | None:
        if self.present is None:
            return None
        for ext in IMAGE_EXTENSIONS:  # the extension is the body's: any of them may be there
            rel = image_path(item.photo_id, ext)
            if rel in self.present:
                try:
                    with open(self.out / rel, "rb") as f:
                        digest = hashlib.file_digest(f, "sha256")
                        size = f.tell()
                except FileNotFoundError:
                    continue
                return FetchResult(
                    item, "stored", rel, digest.hexdigest(), size, ext, item.url, reused=True
                )
        return None

    def _wants_fallback(self, item: FetchItem, attempt: _Attempt) -> bool:
        # Flickr refuses originals whose owner disallows downloads (403) and some originals
        # are gone while the 500px copy is served: both are worth one request to the fallback.
        if not (self.settings.fallback and item.fallback_url and item.fallback_url != item.url):
            return False
        return attempt.result.outcome == "gone" or attempt.status == 403

    def _gate(self, url: str) -> _HostGate:
        host = _host_of(url)
        gate = self._gates.get(host)
        if gate is None:
            gate = self._gates[host] = _HostGate(self.settings.host_limit(host))
        return gate

    async def _attempt(self, item: FetchItem, url: str, gate: _HostGate) -> _Attempt:
        s = self.settings
        if verify.is_placeholder_url(url):
            return _Attempt(FetchResult(item, "gone", url=url, error="photo unavailable (URL)"))
        response: Response | None = None
        try:
            response = await self._client.get(  # type: ignore[union-attr]
                url, max_redirects=s.max_redirects, stop_at=verify.is_placeholder_url
            )
            return self._answer(item, response, gate) or _Attempt(await self._store(item, response))
        except Refused as refused:
            if response is not None:
                response.discard()
            final = response.url if response is not None else url
            return _Attempt(FetchResult(item, refused.outcome, url=final, error=refused.reason))
        except http_client.HttpError as e:
            final = response.url if response is not None else url
            outcome, reason = self._failure(e)
            return _Attempt(FetchResult(item, outcome, url=final, error=reason))
        except BaseException:
            if response is not None:
                response.discard()  # the connection cannot be reused mid-answer
            raise

    def _failure(self, error: http_client.HttpError) -> tuple[str, str]:
        """The outcome class of an exchange that failed, and why."""
        s = self.settings
        if isinstance(error, http_client.TooManyRedirects):
            # A loop is a CDN or cookie misconfiguration, not a verdict on the photo: `retry`,
            # which the queue turns into `failed` after max_attempts if it never clears.
            return "retry", f"redirect loop: more than {s.max_redirects} redirects"
        if isinstance(error, http_client.RequestTimeout):
            return "retry", f"timeout (total {s.total_timeout:g}s, read {s.read_timeout:g}s)"
        if isinstance(error, http_client.Truncated):
            return "retry", f"truncated body: {error}"
        if isinstance(error, http_client.Malformed):
            # Most often bytes past the announced Content-Length: the server's framing cannot
            # be trusted, and a server that sends it once for a URL sends it again: final.
            return "bad", f"malformed response (length not as announced?): {error}"
        if isinstance(error, http_client.BadUrl):
            return "bad", str(error)
        return "retry", f"connection: {error}"

    def _answer(self, item: FetchItem, response: Response, gate: _HostGate) -> _Attempt | None:
        """The verdict on a status line and headers; None when the body is worth reading."""
        if response.location is not None:
            reason = f"photo unavailable (redirected to {response.location})"
            return _Attempt(FetchResult(item, "gone", url=response.location, error=reason))
        status = response.status
        if status != 200:
            response.discard()
            outcome, reason = verify.status_outcome(status)
            wait = self._backoff(response, gate) if status in (429, 503) else None
            return _Attempt(
                FetchResult(item, outcome, url=response.url, error=reason), wait, status
            )
        if not verify.content_type_ok(response.headers.get("content-type")):
            raise Refused("bad", f"not an image: Content-Type {response.content_type}")
        announced = response.content_length
        cap = self.settings.max_bytes
        if announced is not None and announced > cap:
            raise Refused("bad", f"too large: announces {announced:,} bytes, cap {cap:,}")
        return None

    def _backoff(self, response: Response, gate: _HostGate) -> float | None:
        """Pause the host as asked (or by the default for a bare 429); the wait for the item."""
        asked = verify.retry_after_seconds(response.headers.get("retry-after"))
        if asked is None and response.status == 503:
            return None  # an ordinary 5xx: no pause asked for
        wait = self.settings.default_backoff if asked is None else asked
        gate.pause(min(wait, self.settings.max_pause), self._loop.time())  # type: ignore[union-attr]
        return wait

    # ---------------------------------------------------------------------- the body
    async def _store(self, item: FetchItem, response: Response) -> FetchResult:
        """Read the body through a Body, verify what only the whole body tells (length,
        placeholder), write it and rename it into place."""
        body = Body(self._open_temp, item.photo_id, self.settings.max_bytes)
        try:
            await response.read(body.feed)
            size = body.size
            announced = response.content_length
            if announced is not None and size != announced:
                raise Refused("bad", f"length not as announced: {size:,} of {announced:,} bytes")
            ext = body.ext or sniff(body.in_memory())
            sha = body.digest.hexdigest()
            if body.fd is None:
                data = body.in_memory()
                if verify.is_placeholder(data, sha):
                    raise Refused("gone", "photo unavailable (placeholder image)")
                body.temp, body.fd = self._open_temp(item.photo_id, ext)
                write_all(body.fd, data)
            rel = image_path(item.photo_id, ext)
            self._finish(body.fd, body.temp, f"{self._root}/{rel}")  # type: ignore[arg-type]
            body.fd = body.temp = None
            return FetchResult(item, "stored", rel, sha, size, ext, response.url)
        finally:
            body.discard()

    def _open_temp(self, photo_id: int, ext: str) -> tuple[str, int]:
        """A temp file beside the final path, as a raw descriptor (no buffer to copy through:
        bodies are written in one or a few large writes). Strings, not Paths: cheaper."""
        directory, name = os.path.split(f"{self._root}/{image_path(photo_id, ext)}")
        # A name of its own per attempt, so two fetches of one photo never share a temp file;
        # `.part` files are never taken for images (scan_present skips them).
        temp = f"{directory}/.{name}.{self._pid}.{next(self._temp_names)}.part"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            if directory not in self._made_dirs:
                self._make_dir(directory)
            return temp, os.open(temp, flags, 0o644)
        except OSError as e:
            raise SpoolError(f"cannot write {temp}: {e.strerror or e}") from e

    def _make_dir(self, directory: str) -> None:
        # A mkdir per new leaf, its parent made only when missing (os.makedirs stats first).
        try:
            os.mkdir(directory)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
        self._made_dirs.add(directory)

    def _finish(self, fd: int, temp: str, final: str) -> None:
        try:
            if self.settings.fsync:
                os.fsync(fd)
            os.close(fd)
            os.replace(temp, final)  # atomic: readers see the whole image or none
        except OSError as e:
            raise SpoolError(f"cannot write {final}: {e.strerror or e}") from e


def _host_of(url: str) -> str:
    """The host part of an http(s) URL, lower case: what per-host limits are keyed by.
    Cheaper than urlsplit on the hot path; the client parses the URL in full."""
    authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")].lower()
    return host.split(":", 1)[0].lower()


# -------------------------------------------------------------- `downloader fetch --urls`
_FLICKR_NAME = re.compile(r"^(\d+)_")


class BadInput(Exception):
    """A URL list or output directory we refuse before fetching anything."""


def read_url_list(path: Path) -> list[FetchItem]:
    """One URL per line (blank lines and `#` comments skipped). The photo id comes from a
    Flickr file name `<id>_<secret>...`, else the line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read: {e}") from None
    items = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = urlsplit(line)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput(f"{path}:{number}: not an http(s) URL: {line[:100]!r}")
        name = _FLICKR_NAME.match(parts.path.rsplit("/", 1)[-1])
        items.append(FetchItem(int(name.group(1)) if name else number, line))
    if not items:
        raise BadInput(f"{path}: no URLs in it")
    return items


def prepare_out_dir(out: Path) -> None:
    """Create `out` if needed and prove it writable, so a bad path fails before any fetch."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".ccmirror-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise BadInput(f"{out}: not a writable directory ({e.strerror or e})") from None


async def fetch_url_list(
    items: list[FetchItem], out: Path, settings: FetchSettings, stream: TextIO
) -> FetchProgress:
    """The daemon's code path for a plain URL list: progress lines, then a summary."""
    tty = stream.isatty()
    interval = 1.0 if tty else 30.0
    present = scan_present(out) or None  # an empty set: no lookups at all
    async with Fetcher(out, settings, present) as fetcher:
        progress = fetcher.progress
        last = time.monotonic()
        errors: Counter = Counter()
        async for result in fetcher.stream(items):
            if result.error:
                errors[(result.outcome, result.error.split(":", 1)[0])] += 1
            if time.monotonic() - last >= interval:
                last = time.monotonic()
                _show(stream, progress.line(len(items)), tty)
    _show(stream, progress.line(len(items)), tty, final=True)
    for (outcome, reason), count in errors.most_common(10):
        stream.write(f"  {outcome:5} {count:>8,}  {reason}\n")
    return progress


def _show(stream: TextIO, line: str, tty: bool, final: bool = False) -> None:
    if tty:
        stream.write("\r\x1b[K" + line + ("\n" if final else ""))
    else:
        stream.write(line + "\n")
    stream.flush()


def run_fetch_command(
    urls: Path, out: Path, concurrency: int, allow_hosts: HostPolicy = DEFAULT_POLICY
) -> int:
    """`downloader fetch`: exit 0 after a run (the summary says what failed), 1 on bad input."""
    try:
        if concurrency < 1:
            raise BadInput(f"--concurrency must be at least 1, not {concurrency}")
        items = read_url_list(urls)
        prepare_out_dir(out)
    except BadInput as e:
        print(f"downloader fetch: {e}", file=sys.stderr)
        return 1
    settings = FetchSettings(concurrency=concurrency, allow_hosts=allow_hosts)
    try:
        run_async(fetch_url_list(items, out, settings, sys.stderr))
    except SpoolError as e:
        print(f"\ndownloader fetch: stopped: {e}", file=sys.stderr)
        return 1
    return 0


def run_async(coro: Coroutine[object, object, T]) -> T:
    """Run on uvloop when it is installed: a cheaper event loop is CPU saved per image."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
