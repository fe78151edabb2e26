"""Put failed or gone photos back in the download queue, in batches of the catalog's state
index: never one UPDATE of a 500M-row table.

The walk reads the `(state, priority, id)` index of the state asked for, one priority level
at a time, a window of `batch` entries at a time; each window is one transaction that moves
the photos of its primary-key range that match the filters. Only the photos in that state are
read (usually a small share of the catalog), and a stopped run is simply run again: what it
moved is pending and no longer matches.

A re-driven photo is `pending` with `attempts = 0` and no lease. Its `last_error` is kept as
history: it says why the photo had failed until its next outcome replaces it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

STATES = ("failed", "gone")  # what a re-drive takes back; stored photos are never touched


@dataclass(frozen=True)
class Filters:
    state: str
    error_like: str | None = None  # a LIKE pattern of last_error
    since: datetime | None = None  # naive UTC: photos whose updated_at is at or after it

    def sql(self) -> tuple[str, list]:
        """The conditions beyond the state (which the index range gives) and their values."""
        conditions, values = ["state = %s"], [self.state]
        if self.error_like is not None:
            conditions.append("last_error LIKE %s")
            values.append(self.error_like)
        if self.since is not None:
            conditions.append("updated_at >= %s")
            values.append(self.since)
        return " AND ".join(conditions), values


@dataclass
class RequeueResult:
    state: str
    dry_run: bool
    matched: int = 0  # photos that matched (moved, unless a dry run)
    requeued: int = 0
    examined: int = 0  # index entries of the state walked
    batches: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


Progress = Callable[[RequeueResult], None]


def requeue(
    conn,
    filters: Filters,
    *,
    dry_run: bool = False,
    batch: int = 10_000,
    progress: Progress | None = None,
) -> RequeueResult:
    """Move the photos matching `filters` back to pending (count them only, with
    `dry_run`); `progress` is called after each batch."""
    if filters.state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, not {filters.state!r}")
    result = RequeueResult(filters.state, dry_run)
    began = time.monotonic()
    level = _next_level(conn, filters.state, None)
    while level is not None:
        low = 0
        while low is not None:
            low = _one_batch(conn, filters, level, low, batch, result)
            result.seconds = round(time.monotonic() - began, 3)
            if progress is not None:
                progress(result)
        level = _next_level(conn, filters.state, level)
    return result


def _next_level(conn, state: str, above: int | None) -> int | None:
    """The lowest priority level above `above` with photos in `state`: one index dive."""
    # `>= 0` for the first: MariaDB finds no range for `priority > -1` of an unsigned column
    # and answered 1 with rows of priority 0 there.
    after = ">= 0" if above is None else f"> {int(above)}"
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT MIN(priority) FROM images WHERE state = %s AND priority {after}", (state,)
        )
        (level,) = cur.fetchone()
    conn.commit()
    return level


def _one_batch(
    conn, filters: Filters, level: int, low: int, size: int, result: RequeueResult
) -> int | None:
    """One window of the level's index range: ids above `low` up to its `size`-th entry (or
    its last). Returns the next window's `low`, None after the last window."""
    base = "FROM images FORCE INDEX (images_state) WHERE state = %s AND priority = %s"
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT id {base} AND id > %s ORDER BY id LIMIT 1 OFFSET %s",
                (filters.state, level, low, size - 1),
            )
            row = cur.fetchone()
            last = row is None
            if last:
                cur.execute(f"SELECT MAX(id) {base}", (filters.state, level))
                row = cur.fetchone()
            high = low if row[0] is None else int(row[0])
            window = [filters.state, level, low, high]
            if last:  # a full window holds `size` entries: counted again only for the last
                cur.execute(f"SELECT COUNT(*) {base} AND id > %s AND id <= %s", window)
            result.examined += int(cur.fetchone()[0]) if last else size
            result.matched += _move(cur, filters, window, result.dry_run)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    result.requeued = 0 if result.dry_run else result.matched
    result.batches += 1
    return None if last else high


def _move(cur, filters: Filters, window: list, dry_run: bool) -> int:
    """The window's photos that match: moved back to pending, or only counted."""
    conditions, values = filters.sql()
    where = f"{conditions} AND priority = %s AND id > %s AND id <= %s"
    # The window's index range, forced: by primary key, MariaDB could walk every row between
    # two failed photos far apart in the catalog.
    table = "images FORCE INDEX (images_state)"
    if dry_run:
        cur.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", [*values, *window[1:]])
        return int(cur.fetchone()[0])
    cur.execute(
        f"UPDATE {table} SET state = 'pending', attempts = 0, lease_id = 0 WHERE {where}",
        [*values, *window[1:]],
    )
    return cur.rowcount
