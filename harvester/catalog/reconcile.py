"""`harvester reconcile`: merge every source table into the `images` catalog.

A pass walks photo ids in bounded batches (each at most `batch_size` rows of every source),
and each batch is one transaction of a few set-based statements, so the queue never sees a
half-applied batch and no row lock is held for long. Per photo:

- the fields come from the newest API row (time slices or queries, by `last_seen`), else from
  YFCC100M (2014); the catalog records every source that saw the photo;
- a license different from the catalog's is recorded in `image_license_changes`;
- a new photo enters the download queue as `pending` if its license is CC, else `withdrawn`;
  a `pending` photo whose license is no longer CC is `withdrawn` (and comes back when it is
  CC again); `stored`, `failed` and `gone` are never reset, a photo a lease holds (pending
  with a `lease_id`) is left as it is, and a stored or leased photo keeps the image URL it
  was fetched from;
- a photo taken down (`harvester takedown`: its id, or its owner) is never put back in the
  queue: a new one is inserted `taken_down`, a known one keeps that state, and both are
  logged in `takedown_log` as a harvest refused.
- a `stored` photo whose license leaves CC stays `stored` (its object is kept) and is flagged
  `not_cc` in `image_flags`; the flag goes when its license is CC again.

A pass records where it stands in `reconcile_runs`; a pass that was killed resumes there, and
since every batch is idempotent, the end state is the same as an uninterrupted pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ccmirror_common.progress import ProgressLine, format_duration
from harvester.catalog.queue_order import QUERY, TIMESLICE
from harvester.db import connect, upsert_counts
from harvester.search.licenses import DEFAULT_CC_LICENSE_IDS

log = logging.getLogger("harvester.catalog.reconcile")

# Every source table, in the order of `images.sources` (its SET bits 1, 2, 4), with its alias
# in `BatchSQL`, which decides which one a photo's fields come from.
SOURCE_TABLES = ("flickr_timeslice_photos", "flickr_query_photos", "yfcc_photos")
SOURCE_ALIASES = ("t", "q", "y")
DATA_COLUMNS = (
    "owner",
    "owner_name",
    "title",
    "license_id",
    "page_url",
    "image_url",
    "image_size",
    "fallback_url",
    "width",
    "height",
    "uploaded_at",
)
# A stored photo, or one a lease holds, keeps its image fields.
KEEPS_IMAGE = "({t}.state = 'stored' OR {t}.lease_id <> 0)"
# Fields a stored or leased photo keeps: they say which bytes were (or are being) fetched.
FETCHED_COLUMNS = ("image_url", "image_size", "fallback_url", "width", "height")
MAX_PHOTO_ID = 2**64 - 1


@dataclass
class ReconcileStats:
    run_id: int = 0
    batches: int = 0
    source_rows: int = 0
    inserted: int = 0
    updated: int = 0
    license_changes: int = 0
    longest_batch_seconds: float = 0.0
    resumed_from: int = 0


@dataclass(frozen=True)
class BatchResult:
    high: int
    source_rows: int
    inserted: int
    updated: int
    license_changes: int
    seconds: float


def cc_license_ids(conn) -> list[int]:
    """CC ids from the license table Flickr gave the harvester, or the known ones."""
    with conn.cursor() as cur:
        cur.execute("SELECT id, is_cc FROM licenses")
        rows = cur.fetchall()
    return sorted(i for i, cc in rows if cc) if rows else sorted(DEFAULT_CC_LICENSE_IDS)


def reconcile(
    db_url: str,
    *,
    batch_size: int = 10_000,
    parallel: int = 2,
    restart: bool = False,
    on_progress: Callable[[ReconcileStats, int], None] | None = None,
) -> ReconcileStats:
    """One pass over every source; resumes an interrupted pass unless `restart`.

    `parallel` batches of disjoint photo-id ranges run at once, each on its own connection:
    they touch disjoint catalog rows, so the result is the same as one at a time."""
    main = connect(db_url)
    connections: list = []
    local = threading.local()

    def run_batch(bounds: tuple[int, int]) -> BatchResult:
        if not hasattr(local, "conn"):
            local.conn = _batch_connection(db_url, sql)
            connections.append(local.conn)
        return _apply_batch(local.conn, sql, *bounds)

    try:
        stats = _start_run(main, restart)
        sql = BatchSQL(cc_license_ids(main))
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="reconcile") as pool:
            ranges = _next_ranges(main, stats.resumed_from, batch_size, parallel)
            while ranges:
                running = [pool.submit(run_batch, bounds) for bounds in ranges]
                # The next ranges are found while these batches run, so the walk of the
                # source indexes leaves no gap between batches.
                last = ranges[-1][1]
                following = (
                    _next_ranges(main, last + 1, batch_size, parallel)
                    if last < MAX_PHOTO_ID
                    else []
                )
                _record_progress(main, stats, [batch.result() for batch in running])
                if on_progress:
                    on_progress(stats, last)
                ranges = following
        _finish_run(main, stats)
        return stats
    finally:
        for conn in (main, *connections):
            conn.close()


def _batch_connection(db_url: str, sql: BatchSQL):
    # Changed rows counted, not found ones: the upsert's counts then need no second pass.
    conn = connect(db_url, found_rows=False)
    with conn.cursor() as cur:
        # Consistent reads of the sources without locking them: the harvester keeps writing.
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cur.execute(sql.create_batch_table, {"low": 0, "high": 0})
    conn.commit()
    return conn


def _next_ranges(conn, low: int, size: int, count: int) -> list[tuple[int, int]]:
    """Up to `count` consecutive batches from `low`, each at most `size` rows per source."""
    ranges: list[tuple[int, int]] = []
    with conn.cursor() as cur:
        while len(ranges) < count:
            start = _next_photo_id(cur, low)
            if start is None:
                break
            high = _batch_end(cur, start, size)
            ranges.append((start, high))
            if high >= MAX_PHOTO_ID:
                break
            low = high + 1
    conn.commit()
    return ranges


def _record_progress(conn, stats: ReconcileStats, results: list[BatchResult]) -> None:
    """Move the resume point past batches that all committed; a kill before this only
    means they are applied again, which changes nothing."""
    stats.batches += len(results)
    stats.source_rows += sum(r.source_rows for r in results)
    stats.inserted += sum(r.inserted for r in results)
    stats.updated += sum(r.updated for r in results)
    stats.license_changes += sum(r.license_changes for r in results)
    stats.longest_batch_seconds = max(stats.longest_batch_seconds, *(r.seconds for r in results))
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE reconcile_runs SET next_photo_id = %s, batches = %s, source_rows = %s,"
            " inserted = %s, updated = %s, license_changes = %s WHERE id = %s",
            (
                min(results[-1].high + 1, MAX_PHOTO_ID),
                stats.batches,
                stats.source_rows,
                stats.inserted,
                stats.updated,
                stats.license_changes,
                stats.run_id,
            ),
        )
    conn.commit()


def _finish_run(conn, stats: ReconcileStats) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE reconcile_runs SET state = 'done', finished_at = CURRENT_TIMESTAMP(6)"
            " WHERE id = %s",
            (stats.run_id,),
        )
    conn.commit()


def _start_run(conn, restart: bool) -> ReconcileStats:
    with conn.cursor() as cur:
        if restart:
            cur.execute(
                "UPDATE reconcile_runs SET state = 'done', finished_at = CURRENT_TIMESTAMP(6)"
                " WHERE state = 'running'"
            )
        cur.execute(
            "SELECT id, next_photo_id, batches, source_rows, inserted, updated, license_changes"
            " FROM reconcile_runs WHERE state = 'running' ORDER BY id DESC LIMIT 1"
        )
        row = cur.fetchone()
        if row is None:
            cur.execute("INSERT INTO reconcile_runs () VALUES ()")
            stats = ReconcileStats(run_id=cur.lastrowid)
        else:
            run_id, next_id, batches, rows, inserted, updated, changes = row
            stats = ReconcileStats(
                run_id, batches, rows, inserted, updated, changes, resumed_from=next_id
            )
            log.info("resuming reconcile pass %s at photo id %s", run_id, next_id)
    conn.commit()
    return stats


def _next_photo_id(cur, low: int) -> int | None:
    """The smallest photo id at or above `low` in any source (skips empty id ranges)."""
    found = []
    for table in SOURCE_TABLES:
        cur.execute(f"SELECT MIN(photo_id) FROM {table} WHERE photo_id >= %s", (low,))
        value = cur.fetchone()[0]
        if value is not None:
            found.append(int(value))
    return min(found) if found else None


def _batch_end(cur, low: int, size: int) -> int:
    """The last photo id of a batch from `low` holding at most `size` rows of each source."""
    ends = []
    for table in SOURCE_TABLES:
        cur.execute(
            f"SELECT photo_id FROM {table} WHERE photo_id >= %s ORDER BY photo_id"
            " LIMIT 1 OFFSET %s",
            (low, size),
        )
        row = cur.fetchone()
        if row is not None:
            ends.append(int(row[0]) - 1)
    return min(ends) if ends else MAX_PHOTO_ID


class BatchSQL:
    """The statements of one batch over photo ids [%(low)s, %(high)s].

    Each source's rows of the batch are read in primary-key order, and each photo is looked
    up by primary key in the other sources and in the catalog (no sort of wide rows, no list
    of ids to gather first); only photos that are new or differ from their catalog row are
    written, with the fields of the chosen source row: the newest API row (time slices on a
    tie), else YFCC100M."""

    def __init__(self, cc_license_ids: list[int]) -> None:
        cc = ",".join(str(i) for i in cc_license_ids)
        # Which source the fields come from: 1 time slices, 2 queries, 4 YFCC (the SET bits).
        pick = (
            "CASE WHEN t.photo_id IS NOT NULL"
            " AND (q.photo_id IS NULL OR t.last_seen >= q.last_seen) THEN 1"
            " WHEN q.photo_id IS NOT NULL THEN 2 ELSE 4 END"
        )
        new = {
            c: f"CASE {pick} WHEN 1 THEN t.{c} WHEN 2 THEN q.{c} ELSE y.{c} END"
            for c in DATA_COLUMNS
        }
        new["fallback_url"] = "y.fallback_url"  # only the dataset has one
        sources = (
            "(t.photo_id IS NOT NULL) | (q.photo_id IS NOT NULL) << 1"
            " | (y.photo_id IS NOT NULL) << 2"
        )
        data_source = f"ELT({pick}, 'timeslice', 'query', NULL, 'yfcc')"
        # A photo any query task saw is leased first (harvester/catalog/queue_order.py). Compared
        # in `same` too: a row from before migration 0011 gets it on the next pass.
        priority = f"IF(q.photo_id IS NOT NULL, {QUERY}, {TIMESLICE})"
        # A stored or leased photo keeps its image fields, so only the others count there.
        same_data = " AND ".join(
            f"i.{c} <=> {new[c]}" for c in DATA_COLUMNS if c not in FETCHED_COLUMNS
        )
        same_image = " AND ".join(f"i.{c} <=> {new[c]}" for c in FETCHED_COLUMNS)
        same = (
            f"{same_data} AND i.sources <=> ({sources}) AND i.data_source <=> {data_source}"
            f" AND i.priority <=> {priority}"
            f" AND ({KEEPS_IMAGE.format(t='i')} OR ({same_image}))"
        )
        columns = ", ".join(DATA_COLUMNS)
        fields = ", ".join(f"{new[c]} AS {c}" for c in DATA_COLUMNS)
        # State first: it reads the old license-independent state and the new license, and a
        # stored or leased photo's state and image fields never change here.
        state = (
            f"images.state = CASE WHEN images.state = 'pending' AND images.lease_id = 0"
            f" AND VALUES(license_id) NOT IN ({cc}) THEN 'withdrawn'"
            f" WHEN images.state = 'withdrawn' AND VALUES(license_id) IN ({cc}) THEN 'pending'"
            " ELSE images.state END"
        )
        refresh = ", ".join(
            f"images.{c} = IF({KEEPS_IMAGE.format(t='images')}, images.{c}, VALUES({c}))"
            if c in FETCHED_COLUMNS
            else f"images.{c} = VALUES({c})"
            for c in (*DATA_COLUMNS, "sources", "data_source", "priority")
        )

        def merged(first: int) -> str:
            """The batch's new and changed photos, with the license and state the catalog
            held, of those whose first source (in SOURCE_TABLES order) is `first`: one
            statement per source, each walking that source's primary-key range."""
            d = SOURCE_ALIASES[first]
            others = "".join(
                f" LEFT JOIN {table} {alias} ON {alias}.photo_id = {d}.photo_id"
                for table, alias in zip(SOURCE_TABLES, SOURCE_ALIASES, strict=True)
                if alias != d
            )
            # A photo an earlier source has was taken by that source's statement.
            taken = "".join(f" AND {alias}.photo_id IS NULL" for alias in SOURCE_ALIASES[:first])
            # Two lookups by the takedowns' unique keys (an OR would read them all).
            taken_down = (
                f"EXISTS (SELECT 1 FROM takedowns k WHERE k.photo_id = {d}.photo_id)"
                f" OR EXISTS (SELECT 1 FROM takedowns k WHERE k.owner = {new['owner']})"
            )
            return (
                f"SELECT i.id, {d}.photo_id, {fields}, {sources} AS sources,"
                f" {data_source} AS data_source, {priority} AS priority,"
                f" IF({taken_down}, 'taken_down',"
                f" IF({new['license_id']} IN ({cc}), 'pending', 'withdrawn')) AS state,"
                " i.license_id AS old_license_id, i.state AS state_before"
                f" FROM {SOURCE_TABLES[first]} {d}{others}"
                f" LEFT JOIN images i ON i.photo_id = {d}.photo_id"
                f" WHERE {d}.photo_id BETWEEN %(low)s AND %(high)s{taken}"
                f" AND (i.id IS NULL OR NOT ({same}))"
            )

        # They are selected once into a table of the session, which the license log and the
        # upsert both read: the join of the sources runs once per batch, not once for each.
        # Aria, not transactional: it is scratch, cleared before each batch, seen by no one
        # else, and an InnoDB table costs more (1M photos, second pass: 58k vs 73k rows/s).
        self.create_batch_table = (
            "CREATE TEMPORARY TABLE IF NOT EXISTS reconcile_batch (PRIMARY KEY (photo_id))"
            f" ENGINE=Aria TRANSACTIONAL=0 {merged(0)} LIMIT 0"
        )
        self.clear_batch_table = "TRUNCATE TABLE reconcile_batch"
        self.fill_batch_table = tuple(
            f"INSERT INTO reconcile_batch {merged(first)}" for first in range(len(SOURCE_TABLES))
        )
        self.license_changes = (
            "INSERT INTO image_license_changes"
            " (photo_id, old_license_id, new_license_id, source, state_before)"
            " SELECT photo_id, old_license_id, license_id, data_source, state_before"
            " FROM reconcile_batch WHERE old_license_id <> license_id"
        )
        self.takedown_log = (
            "INSERT INTO takedown_log (takedown_id, photo_id, step, actor, detail)"
            " SELECT COALESCE((SELECT k.id FROM takedowns k WHERE k.photo_id = b.photo_id),"
            " (SELECT k.id FROM takedowns k WHERE k.owner = b.owner)), b.photo_id,"
            " 'harvest_refused', 'reconcile', IF(b.id IS NULL,"
            " 'found by a source: inserted taken down', 'seen again by a source: kept taken down')"
            " FROM reconcile_batch b WHERE b.state = 'taken_down'"
        )
        # A stored photo keeps its state and its bytes: a license leaving CC flags it, one
        # coming back to CC takes the flag away (migration 0013, image_flags).
        changed_stored = "state_before = 'stored' AND old_license_id <> license_id"
        self.flag_not_cc = (
            "INSERT INTO image_flags (image_id, flag, since, detail)"
            " SELECT id, 'not_cc', CURRENT_TIMESTAMP(6),"
            " CONCAT('license ', old_license_id, ' -> ', license_id, ' (reconcile)')"
            f" FROM reconcile_batch WHERE {changed_stored} AND license_id NOT IN ({cc})"
            " ON DUPLICATE KEY UPDATE detail = VALUES(detail)"
        )
        self.unflag_cc = (
            "DELETE f FROM image_flags f JOIN reconcile_batch b ON f.image_id = b.id"
            f" WHERE f.flag = 'not_cc' AND b.{changed_stored} AND b.license_id IN ({cc})"
        )
        # A known photo carries its catalog id, so the upsert meets it on the primary key
        # and updates in place; on the photo_id key it would first insert a row, then undo it.
        # In photo id order, so new photos get catalog ids in that order.
        self.upsert = (
            f"INSERT INTO images (id, photo_id, {columns}, sources, data_source, priority, state)"
            f" SELECT id, photo_id, {columns}, sources, data_source, priority, state"
            " FROM reconcile_batch ORDER BY photo_id"
            f" ON DUPLICATE KEY UPDATE {state}, {refresh}"
        )


def _apply_batch(conn, sql: BatchSQL, low: int, high: int) -> BatchResult:
    """One batch, one transaction: the new and changed photos into the session's batch
    table, the license log from it, then one upsert of them, whose info message counts them."""
    began = time.monotonic()
    bounds = {"low": low, "high": high}
    try:
        with conn.cursor() as cur:
            cur.execute(sql.clear_batch_table)
            for fill in sql.fill_batch_table:
                cur.execute(fill, bounds)
            cur.execute(sql.license_changes)
            changes = cur.rowcount
            cur.execute(sql.takedown_log)
            if changes:
                cur.execute(sql.flag_not_cc)
                cur.execute(sql.unflag_cc)
            counts = upsert_counts(cur, cur.execute(sql.upsert))
            if counts is None:
                raise RuntimeError("the catalog upsert reported no counts")
            source_rows = _count_source_rows(cur, low, high)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return BatchResult(
        high, source_rows, counts.new, counts.changed, changes, time.monotonic() - began
    )


def _count_source_rows(cur, low: int, high: int) -> int:
    total = 0
    for table in SOURCE_TABLES:
        cur.execute(f"SELECT COUNT(*) FROM {table} WHERE photo_id BETWEEN %s AND %s", (low, high))
        total += int(cur.fetchone()[0])
    return total


class ReconcileProgress:
    """How far through the photo ids a pass is, rows merged per second, ETA."""

    def __init__(self, db_url: str) -> None:
        conn = connect(db_url)
        with conn.cursor() as cur:
            self.first, self.last = _id_span(cur)
        conn.close()
        self.out = ProgressLine()

    def report(self, stats: ReconcileStats, high: int) -> None:
        if self.out.due():
            self.out.show(self.line(stats, high))

    def line(self, stats: ReconcileStats, high: int) -> str:
        span = max(self.last - self.first, 1)
        done = min(max(high - self.first, 0), span) / span
        rate = stats.source_rows / self.out.elapsed
        eta = self.out.elapsed * (1 - done) / done if done > 0 else None
        return (
            f"reconcile: {100 * done:.1f}% of photo ids | {stats.batches:,} batches,"
            f" {stats.source_rows:,} source rows ({rate:,.0f}/s) | new {stats.inserted:,},"
            f" changed {stats.updated:,}, license changes {stats.license_changes:,}"
            f" | ETA {format_duration(eta)}"
        )

    def done(self, stats: ReconcileStats) -> None:
        self.out.show(self.line(stats, self.last), final=True)
        print(
            f"reconcile pass {stats.run_id} done: {stats.inserted:,} new photos,"
            f" {stats.updated:,} changed, {stats.license_changes:,} license changes"
            f" from {stats.source_rows:,} source rows in {self.out.elapsed:.1f}s"
            + (f" (resumed at photo id {stats.resumed_from})" if stats.resumed_from else "")
        )


def _id_span(cur) -> tuple[int, int]:
    lows, highs = [], []
    for table in SOURCE_TABLES:
        cur.execute(f"SELECT MIN(photo_id), MAX(photo_id) FROM {table}")
        low, high = cur.fetchone()
        if low is not None:
            lows.append(int(low))
            highs.append(int(high))
    return (min(lows), max(highs)) if lows else (0, 0)


def image_counts(conn) -> dict[str, int]:
    """Catalog rows by download state. A leased photo is `pending` with a lease in the
    catalog; its count comes from the active leases (what they hold and have not settled),
    since counting lease marks would read every pending row, not just the index."""
    with conn.cursor() as cur:
        cur.execute("SELECT state, COUNT(*) FROM images GROUP BY state")
        counts = {state: int(n) for state, n in cur.fetchall()}
        cur.execute("SELECT COALESCE(SUM(items - reported), 0) FROM leases WHERE state = 'active'")
        leased = min(int(cur.fetchone()[0]), counts.get("pending", 0))
    conn.commit()
    if leased:
        counts["leased"] = counts.get("leased", 0) + leased
        counts["pending"] -= leased
    return counts
