"""Push files to an S3 bucket: one PUT per file, at its relative path or at the key a mapping
gives it (the spool keeps its files flat, their keys in the journal: downloader/spool.py).

The contract is `downloader.push.push_tree`'s, so the daemon calls one or the other: a
PushResult, or PushFailed (with `.transient`) or PushStopped; transient failures retried with
exponential backoff and jitter until `retry_seconds` or `attempts`; `on_retry` told before
each wait; `stop_event` ends it between PUTs.

An attempt is one pass over the keys not yet stored, `concurrency` PUTs at a time on one
asyncio loop in the caller's thread (the fetch's own HTTP client; no thread per PUT); a key
the store took is never put again: `on_put` is told at once (the spool's journal appends it)
and a later pass, or a push resumed after a kill, is given those keys as `already_put`. A key
put twice anyway (killed between the store's answer and the journal's line) is harmless: the
bucket is versioned, so it gains an identical version.

Fatal, because waiting does not fix it: a key or signature the store refuses, a missing
bucket, a digest it does not accept (the spool's file is not what was fetched), another 4xx,
and a local file that is missing or unreadable.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from downloader.push import (
    Attempt,
    PushFailed,
    PushResult,
    PushStopped,
    backoff_delay,
    checked_sources,
)
from downloader.s3.client import ObjectWriter, PutError
from downloader.s3.target import S3Target

log = logging.getLogger("downloader.s3")


class _Pass:
    """What one pass over the remaining keys did."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.bytes = 0
        self.transient: list[PutError] = []
        self.fatal: PutError | None = None


def push_objects(
    local_root: Path,
    paths: list[str] | Mapping[str, str] | None,
    target: S3Target,
    *,
    timeout: float = 120.0,
    connect_timeout: float = 10.0,
    retry_seconds: float = 600.0,
    attempts: int | None = None,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    stop_event: threading.Event | None = None,
    on_retry: Callable[[Attempt], None] | None = None,
    concurrency: int = 16,
    digests: Mapping[str, str] | None = None,
    already_put: Collection[str] = (),
    on_put: Callable[[list[str]], None] | None = None,
) -> PushResult:
    """Put `paths` into `target`'s bucket: a list of files relative to `local_root`, each at
    the same key (None: every file under it), or a mapping key -> its file relative to
    `local_root`. `digests`, `already_put` and `on_put` speak of keys; `digests`: key ->
    SHA-256 hex known beforehand (the others are hashed here)."""
    started = time.monotonic()
    stop_event = stop_event or threading.Event()
    if paths is None:
        paths = _all_files(local_root)
    try:
        sources = checked_sources(
            local_root, paths if isinstance(paths, Mapping) else {p: p for p in paths}
        )
    except FileNotFoundError as exc:
        raise PushFailed(
            f"push to {target.label} failed: {exc}", transient=False, attempts=0
        ) from None
    done = set(already_put)
    remaining = [key for key in sources if key not in done]
    if not remaining:
        return PushResult(0, 0, 0, 0, time.monotonic() - started)
    writer = ObjectWriter(
        target, connections=concurrency, timeout=timeout, connect_timeout=connect_timeout
    )
    files = {key: local_root / sources[key] for key in remaining}
    return _passes(
        writer, files, remaining, digests or {}, on_put, stop_event, on_retry,
        deadline=started + retry_seconds, attempts=attempts, backoff=(backoff, max_backoff),
        started=started, concurrency=concurrency,
    )  # fmt: skip


def _passes(
    writer: ObjectWriter,
    local_files: Mapping[str, Path],
    remaining: list[str],
    digests: Mapping[str, str],
    on_put: Callable[[list[str]], None] | None,
    stop_event: threading.Event,
    on_retry: Callable[[Attempt], None] | None,
    *,
    deadline: float,
    attempts: int | None,
    backoff: tuple[float, float],
    started: float,
    concurrency: int,
) -> PushResult:
    label = writer.target.label
    files = sent = 0
    number = 0
    while True:
        number += 1
        outcome = _one_pass(
            writer, local_files, remaining, digests, on_put, stop_event, concurrency
        )
        files += len(outcome.stored)
        sent += outcome.bytes
        if outcome.fatal is not None:
            raise PushFailed(
                f"push to {label} failed: {outcome.fatal}", transient=False, attempts=number
            )
        if stop_event.is_set() and (outcome.transient or len(outcome.stored) < len(remaining)):
            raise PushStopped(f"stopped after {number} attempts, {files} objects put")
        if not outcome.transient:
            return PushResult(number, files, sent, sent, time.monotonic() - started)
        stored = set(outcome.stored)
        remaining = [p for p in remaining if p not in stored]
        error = (
            f"{len(outcome.transient)} of {len(remaining)} PUTs failed, "
            f"first {outcome.transient[0]}"
        )
        left = deadline - time.monotonic()
        if left <= 0 or (attempts is not None and number >= attempts):
            raise PushFailed(
                f"push to {label} gave up after {number} attempts in "
                f"{time.monotonic() - started:.0f}s: {error}",
                transient=True,
                attempts=number,
            )
        delay = min(backoff_delay(number, *backoff), left)
        log.warning("push attempt %d failed (%s); retrying in %.1fs", number, error, delay)
        if on_retry is not None:
            on_retry(Attempt(number, outcome.transient[0].status, error, delay))
        if stop_event.wait(delay):
            raise PushStopped(f"stopped after {number} attempts: {error}")


def _one_pass(
    writer: ObjectWriter,
    files: Mapping[str, Path],
    keys: list[str],
    digests: Mapping[str, str],
    on_put: Callable[[list[str]], None] | None,
    stop_event: threading.Event,
    concurrency: int,
) -> _Pass:
    """PUT `keys`, at most `concurrency` in flight; stops starting new ones on a stop or a
    fatal error. Every key stored is told to `on_put` (from this thread only) as it lands."""
    outcome = _Pass()
    todo = iter(keys)

    async def worker() -> None:
        while outcome.fatal is None and not stop_event.is_set():
            key = next(todo, None)
            if key is None:
                return
            try:
                size = await _put(writer, files[key], key, digests.get(key))
            except PutError as exc:
                if exc.transient:
                    outcome.transient.append(exc)
                elif outcome.fatal is None:
                    outcome.fatal = exc
                continue
            outcome.bytes += size  # after the await: `+= await` would add to a stale sum
            outcome.stored.append(key)
            if on_put is not None:
                # At once, one key: a kill -9 then puts again at most the PUTs in flight.
                on_put([key])

    async def run() -> None:
        async with writer:
            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(keys)))))

    asyncio.run(run())
    return outcome


async def _put(writer: ObjectWriter, file: Path, key: str, digest: str | None) -> int:
    try:
        return await writer.put_file(key, file, digest)
    except OSError as exc:  # the spool's own file: waiting will not bring it back
        raise PutError(key, f"cannot read {file}: {exc.strerror or exc}",
                       transient=False) from None  # fmt: skip


def _all_files(local_root: Path) -> list[str]:
    return sorted(str(p.relative_to(local_root)) for p in local_root.rglob("*") if p.is_file())
