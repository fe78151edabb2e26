"""Search tasks in MariaDB: seeding, claiming under a lease, saving each page, finishing.

A search task is an inclusive upload-time range (optionally a search text, optionally one
license). A worker claims one with `FOR UPDATE SKIP LOCKED`, and every page it stores is one
transaction with the task's cursor, so a killed worker loses at most the page in flight and
whoever takes the task over resumes from the cursor. Every statement on the hot path uses an
index; seeding is one multi-row INSERT IGNORE per batch, which makes re-seeding a no-op.

A re-harvest seeds a range again as the next *generation* (`--regenerate`): the same task
keys, generation N+1 (the unique key is (task_key, generation)), refused while any task of the
range is still pending or running; a child task has its parent's generation.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from harvester.recheck.checks import recheck_missed
from harvester.search.photos import PhotoRow, store_rows

SEED_BATCH = 10_000
TASK_COLUMNS = (
    "id",
    "task_key",
    "generation",
    "source",
    "query_text",
    "min_upload",
    "max_upload",
    "licenses",
    "cursor_max_upload",
    "cursor_page",
    "window_seen",
    "window_oldest",
    "window_oldest_count",
    "attempts",
)


class LeaseLost(RuntimeError):
    """The task's lease expired and another worker holds it now."""


class SeedError(ValueError):
    """A seed request that would overlap tasks seeded with other boundaries."""


@dataclass(frozen=True)
class Cursor:
    """Where a task's walk stands: results are read newest first, `page` of the window
    [task.min_upload, max_upload]; a window is abandoned for a narrower one at the API cap."""

    max_upload: int
    page: int = 1
    window_seen: int = 0
    window_oldest: int | None = None
    window_oldest_count: int = 0  # results seen so far in the window's oldest second


@dataclass(frozen=True)
class SearchTask:
    id: int
    task_key: str
    generation: int
    source: str
    query_text: str | None
    min_upload: int
    max_upload: int
    licenses: tuple[int, ...] | None  # None: every CC license
    cursor: Cursor
    attempts: int

    @classmethod
    def from_row(cls, row: tuple) -> SearchTask:
        values = dict(zip(TASK_COLUMNS, row, strict=True))
        cursor = Cursor(
            values.pop("cursor_max_upload"),
            values.pop("cursor_page"),
            values.pop("window_seen"),
            values.pop("window_oldest"),
            values.pop("window_oldest_count"),
        )
        values["licenses"] = parse_licenses(values["licenses"])
        return cls(cursor=cursor, **values)


@dataclass(frozen=True)
class ChildTask:
    min_upload: int
    max_upload: int
    licenses: tuple[int, ...]


@dataclass(frozen=True)
class PageResult:
    """What one stored page changes: the new cursor, or done; children to seed."""

    cursor: Cursor
    done: bool
    children: tuple[ChildTask, ...] = ()
    note: str | None = None
    total_reported: int | None = None


# --- seeding -------------------------------------------------------------------------------


def format_licenses(licenses: tuple[int, ...] | None) -> str | None:
    return None if licenses is None else ",".join(str(i) for i in licenses)


def parse_licenses(text: str | None) -> tuple[int, ...] | None:
    return None if text is None else tuple(int(i) for i in text.split(","))


def timeslice_key(min_upload: int, max_upload: int, licenses: tuple[int, ...] | None = None) -> str:
    key = f"timeslice:{min_upload}:{max_upload}"
    return key if licenses is None else f"{key}:licenses={format_licenses(licenses)}"


def query_key(text: str, child: ChildTask | None = None) -> str:
    """A search text is seeded once whatever its range; children add their second/license."""
    key = "query:" + hashlib.sha1(normalize_query(text).encode()).hexdigest()[:20]
    if child is None:
        return key
    return f"{key}:{child.min_upload}:{child.max_upload}:licenses={format_licenses(child.licenses)}"


def normalize_query(text: str) -> str:
    return " ".join(text.split()).lower()


def timeslices(start: int, end: int, stride: int) -> Iterator[tuple[int, int]]:
    """Inclusive slices [t, t + stride - 1] covering [start, end) with no gap or overlap."""
    for lo in range(start, end, stride):
        yield lo, min(lo + stride, end) - 1


def seed_timeslices(conn, start: int, end: int, stride: int, *, regenerate: bool = False) -> int:
    """Create the time-slice tasks of [start, end); returns how many were new. With
    `regenerate`, each slice gets the generation after its latest one (a re-harvest)."""
    _refuse_misaligned(conn, start, end, stride)
    latest: dict[str, int] = {}
    if regenerate:
        range_sql = "source = 'timeslice' AND min_upload <= %s AND max_upload >= %s"
        _refuse_unfinished(conn, range_sql, (end - 1, start))
        latest = _latest_generations(conn, range_sql + " AND parent_id IS NULL", (end - 1, start))
    rows = (
        (key, latest.get(key, 0) + 1, "timeslice", None, lo, hi, hi)
        for lo, hi in timeslices(start, end, stride)
        for key in (timeslice_key(lo, hi),)
    )
    return _insert_tasks(conn, rows)


def seed_queries(
    conn, texts: Iterable[str], start: int, end: int, *, regenerate: bool = False
) -> int:
    """One task per distinct search text over [start, end); returns how many were new. With
    `regenerate`, each text gets the generation after its latest one (a re-harvest)."""
    seen: dict[str, str] = {}
    for text in texts:
        if normalize_query(text):
            seen.setdefault(normalize_query(text), " ".join(text.split()))
    keys = {text: query_key(text) for text in seen.values()}
    latest: dict[str, int] = {}
    if regenerate and keys:
        # A text's children have keys that start with its own (query_key).
        like = " OR ".join(["task_key LIKE %s"] * len(keys))
        prefixes = tuple(f"{key}%" for key in keys.values())
        _refuse_unfinished(conn, f"source = 'query' AND ({like})", prefixes)
        found = " OR ".join(["task_key = %s"] * len(keys))
        latest = _latest_generations(conn, f"({found})", tuple(keys.values()))
    rows = (
        (key, latest.get(key, 0) + 1, "query", text, start, end - 1, end - 1)
        for text, key in keys.items()
    )
    return _insert_tasks(conn, rows)


def _refuse_unfinished(conn, where: str, args: tuple) -> None:
    """A range is harvested again only once its latest generation is finished: two
    generations walking it at once would harvest it twice for nothing."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*), MIN(generation) FROM search_tasks"
            f" WHERE state IN ('pending', 'running') AND {where}",
            args,
        )
        count, generation = cur.fetchone()
    conn.commit()
    if count:
        raise SeedError(
            f"{count} search tasks of this range (generation {generation}) are still pending or"
            " running: let them finish (`harvester work`) before seeding the next generation"
        )


def _latest_generations(conn, where: str, args: tuple) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT task_key, MAX(generation) FROM search_tasks WHERE {where} GROUP BY task_key",
            args,
        )
        latest = {key: int(generation) for key, generation in cur.fetchall()}
    conn.commit()
    return latest


def _insert_tasks(conn, rows: Iterable[tuple]) -> int:
    created = 0
    batch: list[tuple] = []
    with conn.cursor() as cur:
        for row in rows:
            batch.append(row)
            if len(batch) >= SEED_BATCH:
                created += _insert_batch(cur, batch)
                batch = []
        created += _insert_batch(cur, batch)
    conn.commit()
    return created


def _insert_batch(cur, batch: list[tuple]) -> int:
    if not batch:
        return 0
    cur.executemany(
        "INSERT IGNORE INTO search_tasks (task_key, generation, source, query_text,"
        " min_upload, max_upload, cursor_max_upload) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        batch,
    )
    return cur.rowcount


def _refuse_misaligned(conn, start: int, end: int, stride: int) -> None:
    """Seeding over slices cut another way would harvest the overlap twice: refuse."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*), MIN(min_upload) FROM search_tasks"
            " WHERE source = 'timeslice' AND parent_id IS NULL"
            " AND min_upload <= %s AND max_upload >= %s"
            " AND (MOD(min_upload - %s, %s) <> 0"
            "      OR (max_upload - min_upload + 1 <> %s AND max_upload <> %s))",
            (end - 1, start, start, stride, stride, end - 1),
        )
        count, first = cur.fetchone()
    if count:
        raise SeedError(
            f"{count} time-slice tasks already cover part of this range with other boundaries"
            f" (first starts at {first}); seed a range that does not overlap them, or the same"
            " start and stride"
        )


# --- claiming and working ------------------------------------------------------------------


def claim(conn, worker: str, lease_seconds: int) -> SearchTask | None:
    """Take one task under a lease: this worker's own unfinished one first (a restart),
    then a pending one whose backoff is over, then one whose lease expired."""
    select = f"SELECT {', '.join(TASK_COLUMNS)} FROM search_tasks"
    candidates = (
        (f"{select} WHERE worker = %s AND state = 'running' LIMIT 1 FOR UPDATE", (worker,)),
        (
            f"{select} WHERE state = 'pending' AND not_before <= CURRENT_TIMESTAMP(6)"
            " ORDER BY not_before, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            (),
        ),
        (
            f"{select} WHERE state = 'running' AND lease_expires < CURRENT_TIMESTAMP(6)"
            " ORDER BY lease_expires LIMIT 1 FOR UPDATE SKIP LOCKED",
            (),
        ),
    )
    with conn.cursor() as cur:
        for sql, args in candidates:
            cur.execute(sql, args)
            row = cur.fetchone()
            if row is None:
                continue
            cur.execute(
                "UPDATE search_tasks SET state = 'running', worker = %s,"
                " lease_expires = CURRENT_TIMESTAMP(6) + INTERVAL %s SECOND WHERE id = %s",
                (worker, lease_seconds, row[0]),
            )
            conn.commit()
            return SearchTask.from_row(row)
    conn.commit()
    return None


def record_page(
    conn,
    task: SearchTask,
    worker: str,
    rows: list[PhotoRow],
    result: PageResult,
    *,
    calls: int,
    lease_seconds: int,
) -> None:
    """Store a page's photos, the new cursor (or done) and any children in one transaction."""
    cursor = result.cursor
    try:
        with conn.cursor() as cur:
            store_rows(cur, task.source, task.id, rows)
            cur.execute(
                "UPDATE search_tasks SET cursor_max_upload = %s, cursor_page = %s,"
                " window_seen = %s, window_oldest = %s, window_oldest_count = %s,"
                " total_reported = COALESCE(%s, total_reported),"
                " photos_seen = photos_seen + %s, api_calls = api_calls + %s,"
                " note = COALESCE(%s, note),"
                + (
                    " state = 'done', completions = completions + 1,"
                    " finished_at = CURRENT_TIMESTAMP(6), worker = NULL, lease_expires = NULL"
                    if result.done
                    else " lease_expires = CURRENT_TIMESTAMP(6) + INTERVAL %s SECOND"
                )
                + " WHERE id = %s AND worker = %s AND state = 'running'",
                (
                    cursor.max_upload,
                    cursor.page,
                    cursor.window_seen,
                    cursor.window_oldest,
                    cursor.window_oldest_count,
                    result.total_reported,
                    len(rows),
                    calls,
                    result.note,
                    *(() if result.done else (lease_seconds,)),
                    task.id,
                    worker,
                ),
            )
            if cur.rowcount != 1:
                raise LeaseLost(f"task {task.id}: lease lost to another worker")
            _insert_children(cur, task, result.children)
            # A re-harvested time slice (a query's photos share their time range with every
            # other query's: not seeing one again says nothing); a split task's children walk
            # its range.
            missed = result.done and not result.children and task.source == "timeslice"
            if missed and task.generation > 1:
                recheck_missed(cur, task.id, format_licenses(task.licenses))
            count_calls(cur, worker, calls, len(rows))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _insert_children(cur, task: SearchTask, children: tuple[ChildTask, ...]) -> None:
    if not children:
        return
    rows = []
    for child in children:
        if task.source == "query":
            key = query_key(task.query_text or "", child)
        else:
            key = timeslice_key(child.min_upload, child.max_upload, child.licenses)
        rows.append(
            (
                key,
                task.generation,
                task.source,
                task.query_text,
                child.min_upload,
                child.max_upload,
                child.max_upload,
                format_licenses(child.licenses),
                task.id,
            )
        )
    cur.executemany(
        "INSERT IGNORE INTO search_tasks (task_key, generation, source, query_text,"
        " min_upload, max_upload, cursor_max_upload, licenses, parent_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        rows,
    )


def count_calls(cur, worker: str, calls: int, photos: int) -> None:
    if calls or photos:
        cur.execute(
            "INSERT INTO api_call_minutes (minute, worker, calls, photos)"
            " VALUES (DATE_FORMAT(UTC_TIMESTAMP(), '%%Y-%%m-%%d %%H:%%i:00'), %s, %s, %s)"
            " ON DUPLICATE KEY UPDATE calls = calls + VALUES(calls),"
            " photos = photos + VALUES(photos)",
            (worker, calls, photos),
        )


def release(conn, task: SearchTask, worker: str, calls: int = 0) -> None:
    """Give the lease back (SIGTERM): the task is pending again, its cursor kept."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE search_tasks SET state = 'pending', worker = NULL, lease_expires = NULL,"
            " api_calls = api_calls + %s WHERE id = %s AND worker = %s AND state = 'running'",
            (calls, task.id, worker),
        )
        count_calls(cur, worker, calls, 0)
    conn.commit()


def fail(
    conn,
    task: SearchTask,
    worker: str,
    reason: str,
    *,
    max_attempts: int,
    backoff_seconds: float,
    calls: int = 0,
) -> bool:
    """Count a failed attempt; the task waits out an exponential backoff with jitter, or is
    marked failed after `max_attempts`. Returns True when it is now failed for good."""
    attempts = task.attempts + 1
    final = attempts >= max_attempts
    delay = backoff_seconds * 2 ** (attempts - 1) * random.uniform(0.5, 1.5)
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE search_tasks SET attempts = %s, last_error = %s, state = %s,"
            " not_before = CURRENT_TIMESTAMP(6) + INTERVAL %s MICROSECOND,"
            " finished_at = IF(%s, CURRENT_TIMESTAMP(6), NULL), worker = NULL,"
            " lease_expires = NULL, api_calls = api_calls + %s"
            " WHERE id = %s AND worker = %s AND state = 'running'",
            (
                attempts,
                reason[:1000],
                "failed" if final else "pending",
                int(delay * 1e6),
                final,
                calls,
                task.id,
                worker,
            ),
        )
        count_calls(cur, worker, calls, 0)
    conn.commit()
    return final


def seconds_until_claimable(conn) -> float | None:
    """None when no task can ever be claimed again (all done, split or failed); else how
    long until the next pending task's backoff or running task's lease ends (0 = now)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT MIN(TIMESTAMPDIFF(MICROSECOND, CURRENT_TIMESTAMP(6), not_before))"
            " FROM search_tasks WHERE state = 'pending'"
        )
        pending = cur.fetchone()[0]
        cur.execute(
            "SELECT MIN(TIMESTAMPDIFF(MICROSECOND, CURRENT_TIMESTAMP(6), lease_expires))"
            " FROM search_tasks WHERE state = 'running'"
        )
        running = cur.fetchone()[0]
    conn.commit()
    waits = [max(0, int(w)) / 1e6 for w in (pending, running) if w is not None]
    return min(waits) if waits else None


def counts_by_state(conn) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute("SELECT state, COUNT(*) FROM search_tasks GROUP BY state")
        counts = {state: int(n) for state, n in cur.fetchall()}
    conn.commit()
    return counts


def running_tasks(conn, worker: str) -> list[dict]:
    """The tasks `worker` holds now (`harvester tasks`, for ccmirror.status and drain)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, task_key, cursor_page, lease_expires FROM search_tasks"
            " WHERE worker = %s AND state = 'running'",
            (worker,),
        )
        rows = cur.fetchall()
    conn.commit()
    return [
        {"id": task_id, "task": key, "page": page, "lease_expires": str(expires)}
        for task_id, key, page, expires in rows
    ]
