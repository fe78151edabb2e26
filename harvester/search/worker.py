"""`harvester work`: claim search tasks one at a time and walk them to the end.

The worker reads the license table from Flickr first (only CC licenses are requested), then
loops: claim a task under a lease, request its pages, store each page with the task's cursor
in one transaction, and mark it done. It exits 0 when no task is left, or with `follow`
(the service's mode) waits for new tasks until stopped. SIGTERM (the `stop`
event) ends the current call, gives the lease back and exits; a task that keeps failing is
retried with backoff and finally marked failed with its reason.

The worker pauses after its current page while the queue's maintenance switch is on
(`harvester maintenance on`, read every few seconds) or a local drain request exists (the
file `worker.drain_file`, /var/lib/ccmirror/harvester.drain, made by `ccmirror.drain`; kept across
restarts, like the downloader's): it gives its task back and waits, still running, until
both are off.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from harvester.config import Settings
from harvester.db import DATABASE_GONE, connect, reconnect
from harvester.queue.maintenance import get_maintenance
from harvester.search.flickr_api import (
    APIError,
    FlickrClient,
    Interrupted,
    SearchPage,
    TransientError,
)
from harvester.search.licenses import store_licenses
from harvester.search.metrics import HarvesterMetrics
from harvester.search.photos import PhotoRow, photo_rows
from harvester.search.progress import HarvestProgress
from harvester.search.tasks import (
    LeaseLost,
    PageResult,
    SearchTask,
    claim,
    counts_by_state,
    fail,
    record_page,
    release,
    seconds_until_claimable,
)
from harvester.search.walk import next_step

log = logging.getLogger("harvester.search.worker")
# What PyMySQL raises when the server restarts or the connection drops.


@dataclass
class WorkerStats:
    tasks_done: int = 0
    tasks_failed: int = 0
    photos: int = 0
    refused: Counter = field(default_factory=Counter)  # photos refused, by reason


class Worker:
    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        *,
        stop: threading.Event | None = None,
        progress: HarvestProgress | None = None,
        follow: bool = False,
        metrics: HarvesterMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.stop = stop or threading.Event()
        self.follow = follow  # when no task is left: wait for more rather than return
        self.metrics = metrics or HarvesterMetrics(settings.flickr.rate_limit_per_hour)
        self.client = FlickrClient(settings.flickr, self.stop, self.metrics)
        self.conn = connect(settings.db_url)
        self.progress = progress or HarvestProgress(self.conn, worker_id)
        self.progress.on_counts = self.metrics.task_states  # the task table, as last counted
        self.stats = WorkerStats()
        self.fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch")
        self.cc_license_ids: list[int] = []
        self._calls_reported = 0  # API calls already counted in the database
        # The switch is read as often as an idle worker looks for tasks, not per page.
        self.pause = PauseSwitch(
            lambda: get_maintenance(self.conn).on,
            Path(settings.worker.drain_file),
            settings.worker.idle_poll_seconds,
        )

    def run(self) -> WorkerStats:
        """Work until no task is left (or, following, until `stop` is set)."""
        licenses = self.client.licenses()
        store_licenses(self.conn, licenses)
        self.cc_license_ids = sorted(lic.id for lic in licenses if lic.is_cc)
        log.info("worker %s: CC licenses %s", self.worker_id, self.cc_license_ids)
        # The task table as this worker sees it from the start; then with each progress line.
        self.metrics.task_states(counts_by_state(self.conn))
        while not self.stop.is_set():
            try:
                if not self.work_once():
                    break
            except DATABASE_GONE as exc:
                self._reconnect(exc)
        with contextlib.suppress(*DATABASE_GONE):  # stopped while the database was away
            self.progress.report(self.client.calls, self.stats.photos, final=True)
        return self.stats

    def work_once(self) -> bool:
        """Claim a task and walk it; False when no task is left to claim, now or later."""
        if self.pause.why():
            self.stop.wait(self.settings.worker.idle_poll_seconds)
            return True
        task = claim(self.conn, self.worker_id, self.settings.worker.lease_seconds)
        if task is None:
            wait = seconds_until_claimable(self.conn)
            if wait is None:
                if not self.follow:
                    return False
                wait = self.settings.worker.idle_poll_seconds
            self.stop.wait(min(max(wait, 0.05), self.settings.worker.idle_poll_seconds))
            return True
        self.work_on(task)
        self.progress.maybe_report(self.client.calls, self.stats.photos)
        return True

    def _reconnect(self, exc: Exception) -> None:
        """MariaDB went away (a restart, a failover): wait for it to answer again. The task in
        hand stays leased to this worker, which claims it first and resumes from its cursor;
        only the page in flight is fetched again."""
        conn = reconnect(self.settings.db_url, self.stop,
                         self.settings.worker.db_reconnect_seconds, exc, self.conn)  # fmt: skip
        if conn is not None:
            self.conn = self.progress.conn = conn

    def work_on(self, task: SearchTask) -> None:
        """Walk one task to its end. The next page is fetched while this one is stored: the
        cursor after a page is known before its commit, and the two waits overlap."""
        log.debug("task %s (%s) from %s", task.id, task.task_key, task.cursor)
        fetching = self.fetcher.submit(self._search, task)
        while True:
            try:
                page = fetching.result()
            except Interrupted:
                release(self.conn, task, self.worker_id, self._new_calls())
                return
            except (TransientError, APIError) as exc:
                self._fail(task, exc)
                return
            result = next_step(
                task,
                cc_license_ids=self.cc_license_ids,
                page=task.cursor.page,
                pages=page.pages,
                per_page=page.per_page,
                uploads=[int(p["dateupload"]) for p in page.photos],
                total_reported=page.total,
            )
            following = replace(task, cursor=result.cursor)
            if not result.done and not self.stop.is_set() and not self.pause.why():
                fetching = self.fetcher.submit(self._search, following)
            stored = self._keep(task, page)
            try:
                self._record(task, stored, result)
            except LeaseLost as exc:
                log.warning("%s", exc)
                _wait_quietly(fetching)
                return
            self.stats.photos += len(stored)
            self.metrics.photos(len(stored))
            self.progress.maybe_report(self.client.calls, self.stats.photos)
            if result.done:
                self.stats.tasks_done += 1
                return
            paused = self.pause.why()
            if self.stop.is_set() or paused:
                _wait_quietly(fetching)
                release(self.conn, following, self.worker_id, self._new_calls())
                log.info("task %s released on %s", task.id, paused or "stop")
                return
            task = following

    def _fail(self, task: SearchTask, exc: Exception) -> None:
        final = fail(
            self.conn,
            task,
            self.worker_id,
            str(exc),
            max_attempts=self.settings.worker.max_attempts,
            backoff_seconds=self.settings.worker.backoff_seconds,
            calls=self._new_calls(),
        )
        self.stats.tasks_failed += final
        log.warning("task %s %s: %s", task.id, "failed" if final else "will retry", exc)

    def _search(self, task: SearchTask) -> SearchPage:
        licenses = list(task.licenses) if task.licenses is not None else self.cc_license_ids
        return self.client.search(
            min_upload=task.min_upload,
            max_upload=task.cursor.max_upload,
            licenses=licenses,
            page=task.cursor.page,
            text=task.query_text,
        )

    def _keep(self, task: SearchTask, page: SearchPage) -> list[PhotoRow]:
        """Only CC photos inside the task's range, with an image URL on an allowed host
        (`fetch.allow_hosts`), are stored, whatever the API sent."""
        cc = set(self.cc_license_ids)
        rows, refused = photo_rows(page.photos, self.settings.fetch.allow_hosts)
        if refused:
            self.stats.refused.update(reason for reason, _ in refused)
            log.warning(
                "task %s: %d photo(s) refused, first %s", task.id, len(refused), refused[0][1]
            )
        return [
            row
            for row in rows
            if row.license_id in cc and task.min_upload <= row.uploaded_at <= task.max_upload
        ]

    def _record(self, task: SearchTask, rows: list[PhotoRow], result: PageResult) -> None:
        record_page(
            self.conn,
            task,
            self.worker_id,
            rows,
            result,
            calls=self._new_calls(),
            lease_seconds=self.settings.worker.lease_seconds,
        )

    def _new_calls(self) -> int:
        """API calls made since the last count was written to the database. `client.calls`
        is read once: the prefetch thread may count a call between two reads, and that call
        would then be in neither count (test_harvest saw 188 calls recorded for 189 made)."""
        made = self.client.calls
        calls, self._calls_reported = made - self._calls_reported, made
        return calls


class PauseSwitch:
    """Why the worker should pause now ("" when it should not): the queue's maintenance
    switch, read at most every `cache_seconds`, or a local drain request. Logs each change,
    so the journal says when the worker paused and resumed."""

    def __init__(
        self, maintenance_on: Callable[[], bool], drain_file: Path, cache_seconds: float
    ) -> None:
        self.maintenance_on = maintenance_on
        self.drain_file = drain_file
        self.cache_seconds = cache_seconds
        self._maintenance = False
        self._read_at = float("-inf")
        self._reason = ""

    def why(self) -> str:
        now = time.monotonic()
        if now - self._read_at >= self.cache_seconds:
            self._maintenance = self.maintenance_on()
            self._read_at = now
        reasons = [
            *(["maintenance mode"] if self._maintenance else []),
            *([f"drain requested ({self.drain_file})"] if self.drain_file.exists() else []),
        ]
        reason = " and ".join(reasons)
        if reason != self._reason:
            if reason:
                log.info("paused: %s; the task in hand is given back after its page", reason)
            else:
                log.info("resuming: %s is over", self._reason)
            self._reason = reason
        return reason


def _wait_quietly(fetching: Future) -> None:
    """Let a prefetch that is no longer wanted end; its page is not stored."""
    with contextlib.suppress(Exception):  # the page is dropped whatever happened to it
        fetching.result()
