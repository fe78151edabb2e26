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

Why aiohttp: CPU per image is the budget on a one-vCPU droplet, and one event loop with a
pooled keep-alive connector costs a fraction of a thread per connection (see bench/fetch.py).
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
from collections import Counter
from collections.abc import AsyncIterator, Container, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar
from urllib.parse import urlsplit

import aiohttp
import yarl

from downloader import verify
from downloader.layout import IMAGE_EXTENSIONS, image_path

OUTCOMES = ("stored", "gone", "retry", "bad")
SPILL_BYTES = 1024 * 1024  # bodies up to this stay in memory until verified, larger ones spill
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
    """One host's concurrency, request rate and Retry-After pause."""

    def __init__(self, limit: HostLimit) -> None:
        self.slots = asyncio.Semaphore(limit.connections) if limit.connections > 0 else None
        self.interval = 1.0 / limit.per_second if limit.per_second > 0 else 0.0
        self.next_start = 0.0
        self.paused_until = 0.0

    async def turn(self) -> None:
        """Wait until the host's pause is over and its rate allows one more request."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            ready = max(self.paused_until, self.next_start)
            if ready <= now:
                self.next_start = now + self.interval
                return
            await asyncio.sleep(ready - now)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, asyncio.get_running_loop().time() + seconds)


class SpoolError(Exception):
    """Writing under `out` failed (disk full, a bad path): a local fault, never the photo's,
    so it stops the run instead of burning the photo's attempts with `retry` reports."""


class _Refused(Exception):
    """A verification failure found while reading: the outcome class and why."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


@dataclass
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
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._temp_names = itertools.count()
        self._root = str(self.out)
        self._pid = os.getpid()

    async def __aenter__(self) -> Fetcher:
        s = self.settings
        connector = aiohttp.TCPConnector(limit=s.concurrency, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=s.total_timeout, sock_connect=s.connect_timeout, sock_read=s.read_timeout
            ),
            headers={"User-Agent": s.user_agent},
            # Images are not compressed in transit; asking for identity keeps bytes as stored.
            skip_auto_headers=("Accept-Encoding",),
            auto_decompress=False,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # no cookies: and none of their CPU per request
        )
        self._slots = asyncio.Semaphore(s.concurrency)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---------------------------------------------------------------------- public calls
    async def stream(self, items: Iterable[FetchItem]) -> AsyncIterator[FetchResult]:
        """Fetch `items` with `concurrency` workers; yield each result as it finishes.

        Workers pull from the iterable lazily, so a long URL list never becomes a task each.
        Breaking out of the loop cancels what is still in flight (no partial file is left).
        """
        pending = iter(items)
        results: asyncio.Queue[FetchResult | Exception | None] = asyncio.Queue()

        async def worker() -> None:
            try:
                for item in pending:
                    await results.put(await self.fetch(item))
            except Exception as e:  # a SpoolError (or a bug): the caller sees it, not a result
                await results.put(e)
            finally:
                await results.put(None)

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
        """One item: reuse a present file, else the URL, else (when refused) the fallback."""
        result = self._reuse(item) or await self._fetch_urls(item)
        self.progress.add(result)
        return result

    # ---------------------------------------------------------------------- one item
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

    async def _fetch_urls(self, item: FetchItem) -> FetchResult:
        first = await self._fetch_url(item, item.url)
        if not self._wants_fallback(item, first):
            return first.result
        second = await self._fetch_url(item, item.fallback_url)  # type: ignore[arg-type]
        if second.result.outcome == "stored":
            return second.result
        # Both refused: say so about both; a fallback that may still work keeps it `retry`.
        outcome = "retry" if "retry" in (first.result.outcome, second.result.outcome) else "gone"
        error = f"{first.result.error}; fallback: {second.result.error}"
        return FetchResult(item, outcome, url=second.result.url, error=error)

    def _wants_fallback(self, item: FetchItem, attempt: _Attempt) -> bool:
        # Flickr refuses originals whose owner disallows downloads (403) and some originals
        # are gone while the 500px copy is served: both are worth one request to the fallback.
        if not (self.settings.fallback and item.fallback_url and item.fallback_url != item.url):
            return False
        return attempt.result.outcome == "gone" or attempt.status == 403

    async def _fetch_url(self, item: FetchItem, url: str) -> _Attempt:
        waits = self.settings.waits_per_item
        while True:
            attempt = await self._attempt(item, url)
            if attempt.wait is None or waits <= 0 or attempt.wait > self.settings.max_pause:
                return attempt
            waits -= 1  # the host gate holds this and every other request until the pause ends

    async def _attempt(self, item: FetchItem, url: str) -> _Attempt:
        assert self._session is not None and self._slots is not None, "use `async with`"
        target = _url(url)
        gate = self._gate(target.host or "")
        async with self._slots:
            if gate.slots is not None:
                async with gate.slots:
                    await gate.turn()
                    return await self._request(item, url, target, gate)
            await gate.turn()
            return await self._request(item, url, target, gate)

    def _gate(self, host: str) -> _HostGate:
        gate = self._gates.get(host)
        if gate is None:
            gate = self._gates[host] = _HostGate(self.settings.host_limit(host))
        return gate

    async def _request(
        self, item: FetchItem, url: str, target: yarl.URL, gate: _HostGate
    ) -> _Attempt:
        s = self.settings
        final = url
        try:
            async with self._session.get(  # type: ignore[union-attr]
                target, allow_redirects=True, max_redirects=s.max_redirects
            ) as response:
                final = str(response.url)
                return await self._receive(item, response, gate)
        except _Refused as refused:
            return _Attempt(FetchResult(item, refused.outcome, url=final, error=refused.reason))
        except aiohttp.TooManyRedirects:
            # A loop is a CDN or cookie misconfiguration, not a verdict on the photo: `retry`,
            # which the queue turns into `failed` after max_attempts if it never clears.
            reason = f"redirect loop: more than {s.max_redirects} redirects"
            return _Attempt(FetchResult(item, "retry", url=final, error=reason))
        except TimeoutError:
            reason = f"timeout (total {s.total_timeout:g}s, read {s.read_timeout:g}s)"
            return _Attempt(FetchResult(item, "retry", url=final, error=reason))
        except aiohttp.ClientPayloadError as e:
            return _Attempt(FetchResult(item, "retry", url=final, error=_truncated(e)))
        except aiohttp.ClientResponseError as e:
            # Malformed HTTP, most often bytes past the announced Content-Length that reach the
            # parser as a bogus next response: the server's framing cannot be trusted, and a
            # server that sends it once for a URL sends it again, so this is final.
            reason = f"malformed response (length not as announced?): {_first_line(e.message)}"
            return _Attempt(FetchResult(item, "bad", url=final, error=reason))
        except (aiohttp.ClientError, OSError) as e:
            reason = f"connection: {type(e).__name__}: {_first_line(str(e))}"
            return _Attempt(FetchResult(item, "retry", url=final, error=reason))

    async def _receive(
        self, item: FetchItem, response: aiohttp.ClientResponse, gate: _HostGate
    ) -> _Attempt:
        s = self.settings
        final = str(response.url)
        if verify.is_placeholder_url(final):
            raise _Refused("gone", f"photo unavailable (redirected to {final})")
        status = response.status
        if status != 200:
            outcome, reason = verify.status_outcome(status)
            wait = self._backoff(response, gate) if status in (429, 503) else None
            return _Attempt(FetchResult(item, outcome, url=final, error=reason), wait, status)
        if not verify.content_type_ok(response.headers.get("Content-Type")):
            raise _Refused("bad", f"not an image: Content-Type {response.content_type}")
        announced = response.content_length
        if announced is not None and announced > s.max_bytes:
            raise _Refused("bad", f"too large: announces {announced:,} bytes, cap {s.max_bytes:,}")
        return _Attempt(await self._store(item, response, final, announced))

    def _backoff(self, response: aiohttp.ClientResponse, gate: _HostGate) -> float | None:
        """Pause the host as asked (or by the default for a bare 429); the wait for the item."""
        asked = verify.retry_after_seconds(response.headers.get("Retry-After"))
        if asked is None and response.status == 503:
            return None  # an ordinary 5xx: no pause asked for
        wait = self.settings.default_backoff if asked is None else asked
        gate.pause(min(wait, self.settings.max_pause))
        return wait

    # ---------------------------------------------------------------------- the body
    async def _store(
        self, item: FetchItem, response: aiohttp.ClientResponse, url: str, announced: int | None
    ) -> FetchResult:
        """Stream the body: check magic bytes first, the cap as it grows, hash as it goes;
        small bodies stay in memory, large ones spill to the temp file. Rename at the end."""
        cap = self.settings.max_bytes
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        size = 0
        ext: str | None = None
        temp: Path | None = None
        spill = None
        try:
            try:
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > cap:
                        raise _Refused("bad", f"too large: over the {cap:,}-byte cap while reading")
                    digest.update(chunk)
                    if spill is not None:
                        _write_all(spill, chunk)
                        continue
                    chunks.append(chunk)
                    if ext is None and size >= verify.MAGIC_BYTES_NEEDED:
                        ext = self._sniff(b"".join(chunks))
                    if size > SPILL_BYTES:
                        temp, spill = self._open_temp(item.photo_id, ext or "jpg")
                        _write_all(spill, b"".join(chunks))
                        chunks = []
            except aiohttp.ClientPayloadError:
                raise
            except aiohttp.ClientResponseError as e:
                # Bytes past the announced Content-Length reach the parser as a bogus next
                # response: the server's length is wrong, so the body cannot be trusted.
                raise _Refused("bad", "length not as announced: body longer than it") from e
            body = b"".join(chunks) if spill is None else b""
            if ext is None:
                ext = self._sniff(body)
            if announced is not None and size != announced:
                raise _Refused("bad", f"length not as announced: {size:,} of {announced:,} bytes")
            sha = digest.hexdigest()
            if size <= verify.PLACEHOLDER_MAX_BYTES and sha in verify.PLACEHOLDER_SHA256:
                raise _Refused("gone", "photo unavailable (placeholder image)")
            if spill is None:
                temp, spill = self._open_temp(item.photo_id, ext)
                _write_all(spill, body)
            rel = image_path(item.photo_id, ext)
            self._finish(spill, temp, os.path.join(self._root, rel))
            spill = temp = None
            return FetchResult(item, "stored", rel, sha, size, ext, url)
        finally:
            if spill is not None:
                os.close(spill)
            if temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)

    @staticmethod
    def _sniff(head: bytes) -> str:
        ext = verify.sniff_ext(head)
        if ext is None:
            raise _Refused("bad", f"not an image: starts with {head[:8]!r}")
        return ext

    def _open_temp(self, photo_id: int, ext: str) -> tuple[str, int]:
        """A temp file beside the final path, as a raw descriptor (no buffer to copy through:
        bodies are written in one or a few large writes). Strings, not Paths: cheaper."""
        directory, name = os.path.split(os.path.join(self._root, image_path(photo_id, ext)))
        # A name of its own per attempt, so two fetches of one photo never share a temp file;
        # `.part` files are never taken for images (scan_present skips them).
        temp = f"{directory}/.{name}.{self._pid}.{next(self._temp_names)}.part"
        try:
            if directory not in self._made_dirs:
                os.makedirs(directory, exist_ok=True)
                self._made_dirs.add(directory)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            return temp, os.open(temp, flags, 0o644)
        except OSError as e:
            raise SpoolError(f"cannot write {temp}: {e.strerror or e}") from e

    def _finish(self, spill: int, temp: str, final: str) -> None:
        try:
            if self.settings.fsync:
                os.fsync(spill)
            os.close(spill)
            os.replace(temp, final)  # atomic: readers see the whole image or none
        except OSError as e:
            raise SpoolError(f"cannot write {final}: {e.strerror or e}") from e


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as e:
        raise SpoolError(f"cannot write the spool: {e.strerror or e}") from e


def _url(url: str) -> yarl.URL:
    """Plain ASCII URLs (all of Flickr's) skip yarl's requoting: CPU saved per request."""
    if url.isascii() and " " not in url and "%" not in url:
        return yarl.URL(url, encoded=True)
    return yarl.URL(url)


def _truncated(error: aiohttp.ClientPayloadError) -> str:
    return f"truncated body: {_first_line(str(error))}"


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


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


def run_fetch_command(urls: Path, out: Path, concurrency: int) -> int:
    """`downloader fetch`: exit 0 after a run (the summary says what failed), 1 on bad input."""
    try:
        if concurrency < 1:
            raise BadInput(f"--concurrency must be at least 1, not {concurrency}")
        items = read_url_list(urls)
        prepare_out_dir(out)
    except BadInput as e:
        print(f"downloader fetch: {e}", file=sys.stderr)
        return 1
    settings = FetchSettings(concurrency=concurrency)
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
