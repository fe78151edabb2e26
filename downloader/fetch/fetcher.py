"""The fetcher: items in, one outcome each out, with workers over one HTTP client.

It runs each item's exchanges (the main URL, Retry-After waits, the fallback URL), classes
every answer (`stored`, `gone`, `retry`, `bad`; see the package docstring), and writes a
verified body to `<out>/<photo_id>.<ext>` (flat: a directory per photo would cost more than
the photo, see downloader/spool.py) by temp file and rename; its result's `path` is where it
goes on storage, `layout.image_path`. Which job runs when is
the scheduler's (downloader/fetch/scheduler.py); what happens to the bytes as they arrive is
the body's (downloader/fetch/body.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from collections.abc import AsyncIterator, Container, Iterable
from dataclasses import dataclass
from pathlib import Path

from ccmirror_common.layout import IMAGE_EXTENSIONS, image_path
from downloader import verify
from downloader.fetch.body import Body, Refused, sniff, write_all
from downloader.fetch.http import (
    BadUrl,
    HttpClient,
    HttpError,
    Malformed,
    RequestTimeout,
    Response,
    TooManyRedirects,
    Truncated,
)
from downloader.fetch.items import FetchItem, FetchResult
from downloader.fetch.progress import FetchProgress
from downloader.fetch.scheduler import HostGate, Job, Scheduler, host_of
from downloader.fetch.settings import FetchSettings
from downloader.spool import SpoolError, disk_full


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
        self._gates: dict[str, HostGate] = {}
        self._out_made = False
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

        Workers pull from the iterable lazily (see Scheduler), so a long URL list never
        becomes a task each. Breaking out of the loop cancels what is still in flight (no
        partial file is left).
        """
        assert self._client is not None, "use `async with`"
        scheduler = Scheduler(items, self._gate, self.settings.waits_per_item)
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
    async def _run(self, job: Job) -> FetchResult | None:
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

    async def _step(self, job: Job) -> FetchResult | None:
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
            name = local_name(item.photo_id, ext)
            if name in self.present:
                try:
                    sha256, md5, size = _file_digests(self.out / name)
                except FileNotFoundError:
                    continue
                key = image_path(item.photo_id, ext)
                return FetchResult(
                    item, "stored", key, sha256, size, ext, item.url, reused=True, md5=md5,
                    file=name,
                )  # fmt: skip
        return None

    def _wants_fallback(self, item: FetchItem, attempt: _Attempt) -> bool:
        # Flickr refuses originals whose owner disallows downloads (403) and some originals
        # are gone while the 500px copy is served: both are worth one request to the fallback,
        # and only when the fallback refuses too is a 403 (private) the photo's `gone`.
        if not (self.settings.fallback and item.fallback_url and item.fallback_url != item.url):
            return False
        return attempt.result.outcome == "gone" or attempt.status == 403

    def _gate(self, url: str) -> HostGate:
        host = host_of(url)
        gate = self._gates.get(host)
        if gate is None:
            gate = self._gates[host] = HostGate(self.settings.host_limit(host))
        return gate

    async def _attempt(self, item: FetchItem, url: str, gate: HostGate) -> _Attempt:
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
        except HttpError as e:
            final = response.url if response is not None else url
            outcome, reason = self._failure(e)
            return _Attempt(FetchResult(item, outcome, url=final, error=reason))
        except BaseException:
            if response is not None:
                response.discard()  # the connection cannot be reused mid-answer
            raise

    def _failure(self, error: HttpError) -> tuple[str, str]:
        """The outcome class of an exchange that failed, and why."""
        s = self.settings
        if isinstance(error, TooManyRedirects):
            # A loop is a CDN or cookie misconfiguration, not a verdict on the photo: `retry`,
            # which the queue turns into `failed` after max_attempts if it never clears.
            return "retry", f"redirect loop: more than {s.max_redirects} redirects"
        if isinstance(error, RequestTimeout):
            return "retry", f"timeout (total {s.total_timeout:g}s, read {s.read_timeout:g}s)"
        if isinstance(error, Truncated):
            return "retry", f"truncated body: {error}"
        if isinstance(error, Malformed):
            # Most often bytes past the announced Content-Length: the server's framing cannot
            # be trusted, and a server that sends it once for a URL sends it again: final.
            return "bad", f"malformed response (length not as announced?): {error}"
        if isinstance(error, BadUrl):
            return "bad", str(error)
        return "retry", f"connection: {error}"

    def _answer(self, item: FetchItem, response: Response, gate: HostGate) -> _Attempt | None:
        """The verdict on a status line and headers; None when the body is worth reading."""
        if response.location is not None:
            reason = f"photo unavailable (redirected to {response.location})"
            return _Attempt(FetchResult(item, "gone", url=response.location, error=reason))
        status = response.status
        if status != 200:
            response.discard()
            outcome, reason = verify.status_outcome(status, response.headers.get("retry-after"))
            throttled = status in (429, 503) or (status == 403 and outcome == "retry")
            wait = self._backoff(response, gate) if throttled else None
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

    def _backoff(self, response: Response, gate: HostGate) -> float | None:
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
            name = local_name(item.photo_id, ext)
            self._finish(body.fd, body.temp, f"{self._root}/{name}")  # type: ignore[arg-type]
            body.fd = body.temp = None
            key = image_path(item.photo_id, ext)
            md5 = body.md5.hexdigest()
            return FetchResult(
                item, "stored", key, sha, size, ext, response.url, md5=md5, file=name
            )
        finally:
            body.discard()

    def _open_temp(self, photo_id: int, ext: str) -> tuple[str, int]:
        """A temp file beside the final path, as a raw descriptor (no buffer to copy through:
        bodies are written in one or a few large writes). Strings, not Paths: cheaper."""
        # A name of its own per attempt, so two fetches of one photo never share a temp file;
        # `.part` files are never taken for images (scan_present skips them).
        name = local_name(photo_id, ext)
        temp = f"{self._root}/.{name}.{self._pid}.{next(self._temp_names)}.part"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            if not self._out_made:
                os.makedirs(self._root, exist_ok=True)
                self._out_made = True
            return temp, os.open(temp, flags, 0o644)
        except OSError as e:
            raise SpoolError(f"cannot write {temp}: {e.strerror or e}") from e

    def _finish(self, fd: int, temp: str, final: str) -> None:
        try:
            if self.settings.fsync:
                os.fsync(fd)
            os.close(fd)
            os.replace(temp, final)  # atomic: readers see the whole image or none
        except OSError as e:
            raise SpoolError(f"cannot write {final}: {e.strerror or e}") from e


def local_name(photo_id: int, ext: str) -> str:
    """The file a photo is written to in the output directory: `<photo_id>.<ext>`, the last
    part of its storage key."""
    return f"{photo_id}.{ext}"


def _file_digests(path: Path) -> tuple[str, str, int]:
    """SHA-256 and MD5 (hex) and size of a file, read once."""
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha256.hexdigest(), md5.hexdigest(), size
