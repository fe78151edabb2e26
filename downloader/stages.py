"""The daemon's two outside stages, built from the settings: fetch a lease's photos into its
spool (`downloader.fetch`) and push its files to storage: rsync over SSH (`downloader.push`)
or PUTs into an S3 bucket (`downloader.s3.push`), the same contract either way."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from downloader.config import Settings
from downloader.daemon import Stages
from downloader.fetch import Fetcher, FetchItem, FetchResult, FetchSettings, HostLimit, OnDisk
from downloader.fetch import run_async as run_fetch_loop
from downloader.metrics import DownloaderMetrics
from downloader.push import (
    Attempt,
    PushFailed,
    PushResult,
    PushStopped,
    StorageTarget,
    link_tree,
    push_tree,
)
from downloader.s3.target import S3Target
from downloader.spool import LeaseJournal, Spool, SpoolError, disk_full
from downloader.status import DaemonStatus

log = logging.getLogger("downloader.stages")
RECORD_EVERY = 1.0  # seconds between journal appends while fetching
STOP_POLL = 0.2


# Push one lease's files once (with the push's own retries): journal, stop, on_retry.
LeasePush = Callable[[LeaseJournal, threading.Event, Callable[[Attempt], None]], PushResult]


def build_stages(
    settings: Settings, status: DaemonStatus, metrics: DownloaderMetrics | None = None
) -> Stages:
    push_lease = lease_pusher(settings)
    fetch_settings = fetch_settings_from(settings)
    metrics = metrics or DownloaderMetrics(Path(settings.spool))

    def fetch(items: list[dict], journal: LeaseJournal, stop: threading.Event) -> None:
        run_fetch_loop(_fetch(items, journal, stop, fetch_settings, status, metrics))

    def push(journal: LeaseJournal, stop: threading.Event) -> bool:
        return _push(journal, stop, push_lease, status, metrics)

    return Stages(fetch=fetch, push=push)


def lease_pusher(settings: Settings) -> LeasePush:
    """The push the `storage` setting names: an S3 mapping, else rsync to user@host."""
    storage = settings.storage
    if isinstance(storage, S3Target):
        from downloader.s3.push import push_objects  # loaded only where S3 is used

        def put_lease(journal: LeaseJournal, stop: threading.Event, on_retry) -> PushResult:
            return push_objects(
                journal.files,
                journal.uploads(),  # each file PUT at its storage key
                storage,
                timeout=settings.push.timeout,
                retry_seconds=settings.push.retry_seconds,
                stop_event=stop,
                on_retry=on_retry,
                concurrency=settings.push.concurrency,
                digests=journal.digests(),
                already_put=journal.put_keys(),  # a resumed push puts only the rest
                on_put=journal.record_put,
            )

        return put_lease
    target = StorageTarget.from_spec(
        storage,
        port=settings.storage_port,
        key_path=settings.ssh_key,
        known_hosts_path=settings.known_hosts,
    )

    def rsync_lease(journal: LeaseJournal, stop: threading.Event, on_retry) -> PushResult:
        layout = journal.directory / "layout"
        keys = lay_out(journal, layout)  # rsync sends a file to the path it has here
        return push_tree(
            layout,
            keys,
            target,
            timeout=settings.push.timeout,
            retry_seconds=settings.push.retry_seconds,
            stop_event=stop,
            on_retry=on_retry,
        )

    return rsync_lease


def lay_out(journal: LeaseJournal, layout: Path) -> list[str]:
    """The lease's files at their storage keys under `layout` (hard links), for rsync. A full
    disk gives the spool's reserve back for the layout's directories, once; a file missing,
    or a disk still full, is a PushFailed that waiting does not fix."""
    for last_try in (False, True):
        try:
            return link_tree(journal.files, journal.uploads(), layout)
        except OSError as exc:
            if disk_full(exc) and not last_try:
                Spool(journal.directory.parent).free_reserve()
                continue
            raise PushFailed(
                f"cannot lay the lease out for rsync in {layout}: {exc.strerror or exc}",
                transient=False,
                attempts=0,
            ) from exc
    raise AssertionError("unreachable")


def fetch_settings_from(settings: Settings) -> FetchSettings:
    s = settings.fetch
    hosts = {
        host: HostLimit(int(limit.get("connections", 0)), float(limit.get("per_second", 0)))
        for host, limit in s.hosts.items()
    }
    return FetchSettings(
        concurrency=s.concurrency,
        hosts=hosts,
        default_host=HostLimit(s.per_host, s.per_host_rate),
        max_bytes=s.max_bytes,
        total_timeout=s.timeout,
        allow_hosts=s.allow_hosts,
    )


async def _fetch(
    items: list[dict],
    journal: LeaseJournal,
    stop: threading.Event,
    settings: FetchSettings,
    status: DaemonStatus,
    metrics: DownloaderMetrics,
) -> None:
    """Results go to the journal about once a second, so a restart fetches only what has
    none; a stop cancels what is in flight and keeps what finished. A spool that cannot be
    written raises SpoolError, with every result that could be recorded recorded."""
    wanted = [
        FetchItem(i["photo_id"], i["image_url"], i.get("fallback_url"), catalog_id=i["id"])
        for i in items
    ]
    done: list[dict] = []

    def flush() -> None:
        if done:
            try:
                journal.record(done)
            except OSError as exc:  # these photos are fetched again after the lease
                raise SpoolError(f"cannot write the journal: {exc.strerror or exc}") from exc
            finally:
                done.clear()
            status.fetched(journal)

    async def consume() -> None:
        async with Fetcher(journal.files, settings, present=OnDisk(journal.files)) as fetcher:
            async for result in fetcher.stream(wanted):
                done.append(_journal_entry(result))
                if result.outcome == "stored" and not result.reused:  # fetched, not found
                    metrics.fetched_bytes(result.bytes)

    task = asyncio.create_task(consume())
    last = time.monotonic()
    try:
        while not task.done():
            if stop.is_set():
                task.cancel()
                break
            await asyncio.wait({task}, timeout=STOP_POLL)
            if time.monotonic() - last >= RECORD_EVERY:
                flush()
                last = time.monotonic()
        await asyncio.gather(task, return_exceptions=stop.is_set())
    finally:
        flush()


def _journal_entry(result: FetchResult) -> dict:
    entry = result.report()
    entry["url"] = result.url
    if result.file is not None:
        entry["file"] = result.file  # under the spool's files/ (`path` is the storage key)
    if result.outcome != "stored":
        entry["error"] = result.error or result.outcome
    return entry


def _push(
    journal: LeaseJournal,
    stop: threading.Event,
    push_lease: LeasePush,
    status: DaemonStatus,
    metrics: DownloaderMetrics,
) -> bool:
    """Push until it is done, however long storage is away (the spool holds one lease, so
    it stays bounded); False on a stop. A refusal that waiting cannot fix (host key, key,
    rrsync, a bucket or digest the store refuses) is raised: it needs an operator."""

    def retrying(attempt: Attempt) -> None:
        metrics.push_failed()
        status.error("storage", attempt.error)

    while not stop.is_set():
        try:
            push_lease(journal, stop, retrying)
            return True
        except PushStopped:
            return False
        except PushFailed as exc:
            metrics.push_failed()  # its last attempt (the earlier ones were `retrying`)
            if not exc.transient:
                raise
            status.error("storage", str(exc))
            log.warning("lease %s: storage still away (%s); trying on", journal.lease_id, exc)
    return False
