"""The wait of a photo reported `retry` before it is leased again, and where it waits: under
a parking lease (`park`), which the reaper ends as it ends any lapsed lease."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from harvester.catalog.queue_order import BACKOFF_WORKER


@dataclass(frozen=True)
class Backoff:
    """How long a photo reported `retry` waits before it is leased again: `base` seconds,
    doubled for every retry it had before, at most `cap` (queue.retry_backoff_seconds and
    retry_backoff_max_seconds). A base of 0: back to the queue at once."""

    base: float = 0.0
    cap: float = 0.0

    def seconds(self, attempts: int) -> float:
        return min(self.base * 2 ** min(attempts, 32), self.cap)


NO_BACKOFF = Backoff()


def park(
    cur, requeued: list[int], current: dict[int, tuple], backoff: Backoff, now: datetime
) -> dict[int, int]:
    """Park photos requeued by a `retry` under a lease of BACKOFF_WORKER in state `backoff`
    that expires when their wait ends: one lease per distinct wait (a few: one per attempt
    count). Returns each parked photo's parking lease. Its own state keeps it out of
    everything that counts `active` leases (open leases per worker, leases out, photos
    leased); its worker, which no token can name, keeps it from any worker's report,
    extend or release.

    Why a lease rather than a column of `images` such as `retry_at`: the lease scan already
    steps past photos with a `lease_id`, and the reaper already returns a lapsed lease's
    photos to the queue by the `(state, expires_at)` index of the small leases table, so the
    wait costs no schema change, no index on the catalog and no scan of it."""
    waits: dict[float, list[int]] = {}
    for image_id in requeued:
        wait = backoff.seconds(current[image_id][2])
        if wait > 0:
            waits.setdefault(wait, []).append(image_id)
    parked: dict[int, int] = {}
    for wait, ids in waits.items():
        until = now + timedelta(seconds=wait)
        cur.execute(
            "INSERT INTO leases (worker, state, items, item_ids, created_at, expires_at)"
            " VALUES (%s, 'backoff', %s, %s, %s, %s)",
            (BACKOFF_WORKER, len(ids), ",".join(map(str, sorted(ids))), now, until),
        )
        parked.update(dict.fromkeys(ids, cur.lastrowid))
    return parked


def items_in_backoff(cur) -> int:
    """Photos parked under a parking lease, waiting out a retry's backoff (pending photos);
    a range of the small leases table's `(state, expires_at)` index."""
    cur.execute("SELECT COALESCE(SUM(items), 0) FROM leases WHERE state = 'backoff'")
    return int(cur.fetchone()[0])
