"""What the download queue is doing: counts by state, leases out, per-worker throughput,
ETA to drain, and the operator page's figures (harvester/queue/figures.py). One snapshot
feeds `GET /v1/status`, `GET /metrics` and the operator's page.

Counting the catalog by state walks its state index, which takes seconds on hundreds
of millions of rows, so a snapshot is cached for a while that grows with what it cost.
Throughput comes from the lease rows (each counts what was stored and failed under it), so it
survives a restart of the service and adds up across service processes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from ccmirror_common.progress import mirror_words
from harvester.catalog.queue_order import BACKOFF_WORKER
from harvester.catalog.reconcile import image_counts
from harvester.db import DatabaseError
from harvester.queue.backoff import items_in_backoff
from harvester.queue.figures import operator_figures

log = logging.getLogger("harvester.queue.status")

IMAGE_STATES = ("pending", "leased", "stored", "failed", "gone", "withdrawn", "taken_down")
OUT_OF_QUEUE = ("withdrawn", "taken_down")  # no longer CC; taken down (never coming back)
SETTLED_STATES = ("stored", "failed", "gone")
RECENT_WINDOW = timedelta(minutes=5)
HOUR = timedelta(hours=1)


def queue_status(conn, now: datetime, known_workers: list[str], maintenance: bool) -> dict:
    images = dict.fromkeys(IMAGE_STATES, 0) | image_counts(conn)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*), COALESCE(SUM(items - reported), 0), MIN(expires_at),"
            " MIN(created_at) FROM leases WHERE state = 'active'"
        )
        leases, items_out, next_expiry, oldest = cur.fetchone()
        in_backoff = items_in_backoff(cur)
        cur.execute(
            "SELECT worker, SUM(IF(last_report_at >= %s, stored, 0)),"
            " SUM(IF(last_report_at >= %s, failed, 0)), SUM(stored), SUM(failed)"
            " FROM leases WHERE last_report_at >= %s GROUP BY worker",
            (now - RECENT_WINDOW, now - RECENT_WINDOW, now - HOUR),
        )
        recent = {row[0]: [int(v) for v in row[1:]] for row in cur.fetchall()}
        cur.execute(
            "SELECT worker, MAX(last_report_at) FROM leases WHERE worker <> %s GROUP BY worker",
            (BACKOFF_WORKER,),
        )
        last_report = dict(cur.fetchall())
    conn.commit()
    workers = [
        _worker_row(name, recent.get(name, [0, 0, 0, 0]), last_report.get(name), now)
        for name in sorted(set(known_workers) | set(last_report))
    ]
    per_second = sum(w["stored_per_second_5m"] for w in workers)
    to_do = images["pending"] + images["leased"]
    in_queue = sum(images.values()) - sum(images[s] for s in OUT_OF_QUEUE)
    settled = sum(images[s] for s in SETTLED_STATES)
    words = mirror_words(images, in_backoff)
    words["mirrored"] = round(words["mirrored"], 6)
    return {
        "as_of": _iso(now),
        "maintenance": maintenance,
        "images": images,
        # Stored of the CC photos that count; `progress` is every settled photo's share
        # (stored, failed or gone: no longer in the queue's way), never called "mirrored".
        "mirrored": words["mirrored"],
        "mirror": words,
        "progress": round(settled / in_queue, 6) if in_queue else 0.0,
        "leases_active": int(leases),
        "items_leased_out": int(items_out),
        "next_lease_expiry": _iso(next_expiry) if next_expiry else None,
        # How long the oldest active lease has been out (0 with none): a stuck downloader.
        "oldest_lease_age_seconds": max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        # Pending photos (counted in `images`) that wait out a retry's backoff.
        "items_in_backoff": in_backoff,
        "stored_per_second_5m": round(per_second, 2),
        "eta_seconds": round(to_do / per_second) if per_second > 0 else None,
        "workers": workers,
        **operator_figures(conn, now, to_do),
    }


def _worker_row(name: str, counts: list[int], last: datetime | None, now: datetime) -> dict:
    stored_5m, failed_5m, stored_1h, failed_1h = counts
    return {
        "worker": name,
        "stored_5m": stored_5m,
        "failed_5m": failed_5m,
        "stored_1h": stored_1h,
        "failed_1h": failed_1h,
        "stored_per_second_5m": round(stored_5m / RECENT_WINDOW.total_seconds(), 2),
        "last_report": _iso(last) if last else None,
        "seconds_since_report": round((now - last).total_seconds()) if last else None,
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds") + "Z"


class CachedStatus:
    """The last snapshot, refreshed in the background once it is older than `min_age` or ten
    times what the last one cost, whichever is longer: no reader waits for a count of the
    catalog but the very first."""

    def __init__(self, compute: Callable[[], dict], min_age: float = 2.0) -> None:
        self.compute = compute
        self.min_age = min_age
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._value: dict | None = None
        self._taken = 0.0
        self._cost = 0.0
        self._refreshing = False

    def get(self, wait: float = 60.0) -> dict:
        with self._lock:
            age = time.monotonic() - self._taken
            start = not self._refreshing and (
                self._value is None or age > max(self.min_age, 10 * self._cost)
            )
            self._refreshing = self._refreshing or start
        if start and self._value is None:
            self._refresh()  # the first snapshot: its error is the caller's
        elif start:
            threading.Thread(target=self._refresh_quietly, daemon=True).start()
        if not self._ready.wait(wait):
            raise DatabaseError("the queue status is still being counted; try again")
        return self._value

    def _refresh(self) -> None:
        try:
            began = time.monotonic()
            value = self.compute()
            with self._lock:
                self._value, self._taken = value, time.monotonic()
                self._cost = self._taken - began
            self._ready.set()
        finally:
            self._refreshing = False

    def _refresh_quietly(self) -> None:
        try:
            self._refresh()
        except Exception as exc:  # the last snapshot stays; the next reader tries again
            log.warning("queue status not refreshed: %s", exc)
