"""`downloader run`: lease, fetch, verify, push, report, clean; one lease at a time.

Each lease is a journal in the spool (`downloader.spool`), so a daemon killed at any point
resumes where it stood: nothing fetched twice that is already in the spool, no report lost.
SIGTERM takes no new lease; the lease in hand is finished when most of it is fetched, else
its unfetched photos are released and the fetched ones pushed and reported. The daemon
stops leasing while the spool's disk is short of space, and waits out maintenance mode,
an empty queue and an unreachable service or storage with the waits they ask for.

One photo never stops a droplet. A lease the daemon fails to finish `lease_attempts` times
in a row (each start that resumes it counts one; a clean stop resets the count) is released
and its spool moved to `<spool>/quarantine/` for a person to read, and the daemon goes on
with a new lease: a poison lease costs that lease, never an endless restart loop. A report
the queue refuses for some items (422 names them; a 400 or 413 is narrowed by halving) is
sent again without them, and those are released. A full spool disk stops the fetch: what
was fetched is pushed and reported, the rest released (the photos are not at fault).

A drain request (the file `<spool>/drain`, made by `downloader drain`) acts like SIGTERM on
the lease in hand (finished when most of it is fetched, else the rest released) but the
daemon stays up, takes no lease and reports `drained` until the file is removed. The file
lives in the spool, not under /run, so a droplet drained for maintenance stays drained
across a reboot or a restart by systemd until an operator resumes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from downloader.config import Settings
from downloader.metrics import DownloaderMetrics
from downloader.queue_client import (
    LeaseLost,
    QueueClient,
    QueueError,
    QueueRefused,
    QueueUnavailable,
)
from downloader.spool import JournalError, LeaseJournal, Spool, SpoolError
from downloader.status import DaemonStatus, drain_requested

log = logging.getLogger("downloader.daemon")
FINISH_WHEN_FETCHED = 0.8  # on SIGTERM, a lease this far fetched is finished, not released
REPORT_CHUNK = 5_000
MAX_WAIT = 60.0
STOP_GRACE = 30.0  # seconds a stopping daemon gives storage to take the lease's files
DRAIN_POLL = 0.5  # seconds between looks for a drain request (a stat of one file)
# A refusal of a report that may be about some of its items, not the whole request: 422
# (validation, naming the items), 400 (photos not in the lease, twice), 413 (too large).
REFUSED_FOR_ITEMS = (400, 413, 422)


@dataclass
class Stages:
    """The two stages that reach outside: fetching into the spool and pushing to storage.
    Each takes the stop event and returns early (with what it has) when it is set."""

    fetch: Callable[[list[dict], LeaseJournal, threading.Event], None]
    push: Callable[[LeaseJournal, threading.Event], bool]  # False: stopped before done


@dataclass
class Daemon:
    settings: Settings
    client: QueueClient
    spool: Spool
    stages: Stages
    stop: threading.Event = field(default_factory=threading.Event)
    status: DaemonStatus | None = None
    metrics: DownloaderMetrics | None = None

    def __post_init__(self) -> None:
        if self.status is None:
            self.status = DaemonStatus(self.spool.root, self.settings.worker)
        if self.metrics is None:  # counted all the same; served when `metrics.listen` is set
            self.metrics = DownloaderMetrics(self.spool.root)

    def run(self, once: bool = False) -> int:
        """Until SIGTERM (or one lease with `once`); 0 on a clean stop."""
        try:
            journal = self.resumable()
            if journal is not None:
                log.info("resuming lease %s in phase %s", journal.lease_id, journal.phase)
                self.process(journal)
                if once:
                    return 0
            while not self.stop.is_set():
                if self.drained():
                    if once:
                        log.info("no lease: drained")
                        return 0
                    self.stay_drained()
                    continue
                journal = self.next_lease(wait=not once)
                if journal is not None:
                    self.process(journal)
                if once:
                    return 0
            return 0
        finally:
            self.status.write(phase="stopped", force=True)

    def resumable(self) -> LeaseJournal | None:
        """The lease a previous run left, to resume, counted as one more start on it; None
        when there is none, or when it cannot be read or has failed to finish too often:
        then it is released (best effort) and its spool quarantined."""
        try:
            journal = self.spool.current()
        except JournalError as exc:
            self.give_up(None, f"cannot read its journal: {exc}")
            return None
        if journal is None:
            return None
        failures = 1 + journal.starts()  # the run that leased it, then each resume
        if failures >= self.settings.lease_attempts:
            self.give_up(journal, f"failed to finish {failures} times in a row")
            return None
        try:
            journal.count_start()
        except OSError:
            self.spool.free_reserve()  # a full disk: the reserve is there for the journal
            try:
                journal.count_start()
            except OSError as exc:
                self.give_up(journal, f"cannot write its journal: {exc.strerror or exc}")
                return None
        return journal

    def give_up(self, journal: LeaseJournal | None, why: str) -> None:
        lease_id = journal.lease_id if journal is not None else None
        log.error("lease %s %s: releasing it, its spool to quarantine", lease_id, why)
        if lease_id is not None:
            try:
                self.client.release(lease_id)
            except QueueError as exc:  # not released: it lapses and goes back all the same
                log.warning("could not release lease %s: %s", lease_id, exc)
        where = self.spool.quarantine(f"lease {lease_id} {why}", lease_id)
        self.status.error("lease", f"lease {lease_id} {why}; kept in {where}")

    def next_lease(self, wait: bool = True) -> LeaseJournal | None:
        """A new lease in the spool, or None after waiting as told (unless `wait` is off)."""
        free_mb = self.spool.free_bytes() / 2**20
        if free_mb < self.settings.min_free_mb:
            self.idle(30, f"spool disk has {free_mb:.0f} MB free, below min_free_mb", wait)
            return None
        try:
            with self.metrics.phase("lease"):
                batch = self.client.lease(self.settings.batch_size, self.settings.lease_seconds)
        except QueueUnavailable as exc:
            self.status.error("queue", str(exc))
            self.idle(exc.retry_after, str(exc), wait)
            return None
        if not batch.items:
            why = "maintenance mode" if batch.maintenance else "the queue is empty"
            self.idle(batch.retry_after or 30, why, wait)
            return None
        log.info("lease %s: %d photos", batch.lease_id, len(batch.items))
        self.spool.hold_reserve()
        return self.spool.begin(batch.lease_id, batch.expires_at, batch.items)

    def drained(self) -> bool:
        return drain_requested(self.spool.root)

    def stay_drained(self) -> None:
        """Idle, still running (systemd must not restart a drained daemon in a loop), until
        the drain request is removed or a stop comes."""
        log.info("drained: no new lease until `downloader resume`")
        self.status.write(phase="drained", note="drain requested", force=True)
        while self.drained() and not self.stop.wait(DRAIN_POLL):
            self.status.write(phase="drained", note="drain requested")
        if not self.stop.is_set():
            log.info("drain request removed: leasing again")

    def process(self, journal: LeaseJournal) -> None:
        self.status.lease(journal)
        with LeaseKeeper(self.client, journal.lease_id, self.settings.lease_seconds):
            if journal.phase == "fetching":
                with DrainWatch(self.spool.root, self.stop) as halt, self.metrics.phase("fetch"):
                    self.fetch(journal, halt)
                with self.metrics.phase("verify"):  # what was checked as it came in, listed
                    journal.write_manifest()
                journal.set_phase("fetched")
            if journal.phase == "fetched":
                self.status.write(phase="pushing")
                with self.metrics.phase("push"):
                    pushed = self.stages.push(journal, self._halt())
                if not pushed:
                    # Stopped while storage was away: pushed again at the next start. A clean
                    # stop is no failure of the lease.
                    journal.clear_starts()
                    return
                journal.set_phase("pushed")
            if journal.phase == "pushed":
                with self.metrics.phase("report"):
                    reported = self.report(journal)
                if not reported:
                    journal.clear_starts()
                    return
                journal.set_phase("reported")
        self.status.finished(journal)
        self.spool.finish(journal)

    def fetch(self, journal: LeaseJournal, halt: threading.Event) -> None:
        """Fetch what the journal has no result for; on SIGTERM or a drain request (`halt`)
        give back what is left unless most of the lease is done."""
        todo = journal.unfetched()
        if todo:
            self.status.write(phase="fetching")
            if not self.fetch_stage(todo, journal, halt):
                self.give_back(journal, "the spool disk is full")
                return
        left = journal.unfetched()
        if not left:
            return
        done = 1 - len(left) / len(journal.items)
        why = "stopping" if self.stop.is_set() else "draining"
        if not self.stop.is_set():
            self.status.write(phase="draining", note="finishing or releasing the lease in hand")
        if done >= FINISH_WHEN_FETCHED:
            log.info(
                "%s: lease %s is %.0f%% fetched, finishing it", why, journal.lease_id, 100 * done
            )
            if not self.fetch_stage(left, journal, threading.Event()):
                self.give_back(journal, "the spool disk is full")
            return
        self.give_back(journal, why)

    def fetch_stage(self, items: list[dict], journal: LeaseJournal, halt: threading.Event) -> bool:
        """The fetch stage; False when it stopped because the spool cannot be written (a
        full disk: no photo's fault, and no reason to die). The reserve is freed then, so
        that the journal has room to push and report what was fetched."""
        try:
            self.stages.fetch(items, journal, halt)
            return True
        except SpoolError as exc:
            self.spool.free_reserve()
            log.error("lease %s: fetch stopped: %s", journal.lease_id, exc)
            self.status.error("spool", str(exc))
            return False

    def give_back(self, journal: LeaseJournal, why: str) -> None:
        """Release what the lease has not fetched and keep only what it has."""
        left = journal.unfetched()
        if not left:
            return
        released = self._release(journal, [item["id"] for item in left])
        log.info("%s: released %d unfetched photos of lease %s", why, released, journal.lease_id)
        journal.items = [item for item in journal.items if item["id"] in journal.results()]
        journal.save()

    def _release(self, journal: LeaseJournal, ids: list[int]) -> int:
        try:
            return self.client.release(journal.lease_id, ids)
        except QueueError as exc:
            # Not released: the lease lapses and the queue takes them back all the same.
            log.warning("could not release photos of lease %s: %s", journal.lease_id, exc)
            return 0

    def report(self, journal: LeaseJournal) -> bool:
        """Send every result; True once the queue has them all, or has refused some for
        themselves (those are left out and released). Retried while the service is away; a
        stop meanwhile leaves the lease `pushed`, to report at the next start."""
        reports = journal.reports()
        todo = [reports[i : i + REPORT_CHUNK] for i in range(0, len(reports), REPORT_CHUNK)]
        todo.reverse()  # a stack: chunks in order, the parts of a refused one first
        refused: list[dict] = []
        backoff = 1.0
        while todo:
            chunk = todo.pop()
            try:
                self.metrics.reported(self.client.complete(journal.lease_id, chunk))
            except QueueUnavailable as exc:
                self.status.error("queue", str(exc))
                todo.append(chunk)
                if not self.wait(max(exc.retry_after, backoff), str(exc)):
                    return False
                backoff = min(backoff * 2, MAX_WAIT)
            except LeaseLost as exc:
                # The lease is gone from the queue (pruned): nothing left to tell it.
                log.error("lease %s: reports not taken: %s", journal.lease_id, exc)
                return True
            except QueueRefused as exc:
                if exc.status not in REFUSED_FOR_ITEMS:
                    raise  # the token or the service: an operator's matter
                todo.extend(reversed(self._narrow(journal, chunk, exc, refused)))
        left_out = {report["id"] for report in refused}
        if left_out:
            self._release(journal, sorted(left_out))  # back to the queue now, not at expiry
        self.status.reported([report for report in reports if report["id"] not in left_out])
        return True

    def _narrow(
        self, journal: LeaseJournal, chunk: list[dict], exc: QueueRefused, refused: list[dict]
    ) -> list[list[dict]]:
        """What to send again of a refused chunk: without the items the refusal names, else
        its two halves; a single item refused is left out (added to `refused`)."""
        named = {0} if len(chunk) == 1 else {i for i in exc.item_indices if 0 <= i < len(chunk)}
        if not named:
            half = len(chunk) // 2
            return [chunk[:half], chunk[half:]]
        for index in sorted(named):
            log.error(
                "lease %s: the queue refused the report of photo %s, left out: %s",
                journal.lease_id,
                chunk[index].get("id"),
                exc,
            )
            refused.append(chunk[index])
        self.status.error("report", f"lease {journal.lease_id}: {exc}")
        rest = [report for i, report in enumerate(chunk) if i not in named]
        return [rest] if rest else []

    def _halt(self) -> threading.Event:
        """What stops a push: the stop itself, or, when the stop came earlier (the lease is
        being finished after a SIGTERM), the end of a grace period, so that a stop never
        waits long on storage; an unpushed lease is pushed at the next start."""
        if not self.stop.is_set():
            return self.stop
        grace = threading.Event()
        timer = threading.Timer(STOP_GRACE, grace.set)
        timer.daemon = True
        timer.start()
        return grace

    def idle(self, seconds: float, why: str, wait: bool) -> None:
        """Wait before asking again; a drain request ends the wait at once, so that
        `downloader drain --wait` does not wait out a long Retry-After."""
        self.status.write(phase="waiting", note=why)
        if not wait:
            log.info("no lease: %s", why)
            return
        log.info("waiting %.0fs: %s", min(seconds, MAX_WAIT), why)
        deadline = time.monotonic() + min(max(seconds, 0.5), MAX_WAIT)
        while not self.drained():
            left = deadline - time.monotonic()
            if left <= 0 or self.stop.wait(min(left, DRAIN_POLL)):
                return

    def wait(self, seconds: float, why: str) -> bool:
        """Wait up to `seconds` (at most a minute); False when a stop came first."""
        log.info("waiting %.0fs: %s", min(seconds, MAX_WAIT), why)
        return not self.stop.wait(min(max(seconds, 0.5), MAX_WAIT))


class DrainWatch:
    """An event set when the daemon is stopped or a drain request appears, for the fetch
    stage, which polls one event; watched from a thread while the fetch runs."""

    def __init__(self, spool_root: Path, stop: threading.Event) -> None:
        self.spool_root = spool_root
        self.stop = stop
        self.halt = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="drain-watch", daemon=True)

    def __enter__(self) -> threading.Event:
        self._thread.start()
        return self.halt

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._done.is_set():
            if self.stop.is_set() or drain_requested(self.spool_root):
                self.halt.set()
                return
            self._done.wait(DRAIN_POLL / 5)


class LeaseKeeper:
    """Extends the lease in hand when half of its life has passed, in the background, so a
    slow fetch or a long wait for storage does not let it lapse. A lapsed lease is no loss:
    stored photos are reported late and taken; the rest are leased again elsewhere."""

    def __init__(self, client: QueueClient, lease_id: int, seconds: int) -> None:
        self.client = client
        self.lease_id = lease_id
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _keep(self) -> None:
        while not self._stop.wait(self.seconds / 2):
            try:
                self.client.extend(self.lease_id, self.seconds)
            except LeaseLost as exc:
                log.warning("lease %s lapsed: %s", self.lease_id, exc)
                return
            except (QueueUnavailable, QueueRefused) as exc:
                log.warning("lease %s not extended: %s", self.lease_id, exc)
