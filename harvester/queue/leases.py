"""The download queue in the catalog: lease photos to workers, take their reports, expire
leases that lapse. The HTTP layer (`harvester.queue.service`) is a thin shell around this.

A photo's place in the queue is `images.state`, and while a lease holds it, `lease_id`:

    pending --lease--> pending + lease_id --stored--> stored
                         (leased)   |  --gone-----> gone      (404/410, "photo unavailable")
                                    |  --bad------> failed    (not an image, too large)
                                    |  --retry----> pending + a parking lease (backoff), or
                                    |               failed after max_attempts
                                    +--expired/released--> pending (lease_id cleared)

A photo taken down (`harvester takedown`) while a lease holds it is `taken_down` with its
`lease_id` kept, so the lease is still settled by its report: whatever the report says, the
photo stays taken down; a `stored` one is logged in `takedown_log` (its bytes landed, and
`harvester takedown apply` moves them out of the public prefix).

A photo reported `retry` waits out a backoff under a parking lease of state `backoff`
(harvester/queue/backoff.py); pending photos are leased by priority level, highest first
(harvester/catalog/queue_order.py).

A leased photo keeps `state = 'pending'`: marking it in a column of no index, rather than
moving it in the state index and back, halves the index work of a photo's way through
the queue. A lease's photos are found through its `item_ids`, and a scan for work skips rows
that carry a lease. (The `leased` value of the ENUM is no longer written; migration 0005
moved rows that had it.)

Nothing is lost: a lease that is not settled by its expiry goes back to pending, and a
`stored` report is always taken, even after the lease lapsed and the photo went to another
worker (its bytes are on storage; the other worker's report then finds it stored). Reports are
idempotent: a second report of the same photo changes nothing.

Each call is one transaction of a few statements, every one by primary key or by the
`(state, priority, id)` index, whatever the size of the catalog. Times are the service's
clock, passed in, so the expiry checks and the reaper agree.

Over 500 lines, one module: every function is a transition of the one state machine above,
and each transaction must keep all of its rules (a split would scatter them).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from harvester.catalog.queue_order import LEVELS
from harvester.db import with_retry
from harvester.queue.backoff import NO_BACKOFF, Backoff, park
from harvester.queue.taken_down import TAKEN_DOWN, stored_after_takedown

# Columns a downloader needs: the image and the attribution written beside it.
ITEM_COLUMNS = (
    "id",
    "photo_id",
    "image_url",
    "image_size",
    "fallback_url",
    "license_id",
    "owner",
    "owner_name",
    "title",
    "page_url",
    "uploaded_at",
    "width",
    "height",
)
# The license's name and URL come along: the attribution a downloader writes needs them.
ITEMS_JSON = (
    "JSON_ARRAYAGG(JSON_OBJECT("
    + ", ".join(f"'{c}', i.{c}" for c in ITEM_COLUMNS)
    + ", 'license_name', l.name, 'license_url', l.url) ORDER BY i.id)"
)
LICENSE_JOIN = "LEFT JOIN licenses l ON l.id = i.license_id"
# JSON_ARRAYAGG is bounded by group_concat_max_len; 1,000 items of long titles fit in this.
SESSION_SQL = ("SET SESSION group_concat_max_len = 67108864",)


class QueueError(Exception):
    """A request the queue refuses; `status` is the HTTP status that says why."""

    status = 400


class LeaseNotFound(QueueError):
    status = 404


class NotYourLease(QueueError):
    status = 403


class LeaseClosed(QueueError):
    status = 409


class BadReport(QueueError):
    """A report or release that names photos wrongly (validation passed, the lease says no)."""

    status = 400


class TooManyLeases(QueueError):
    """The worker holds as many open leases as it may: 429, and `retry_after` seconds to
    wait (the downloader waits and asks again, as for any 429)."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# The longest a worker at its open-lease cap is told to wait: it may report a lease sooner.
MAX_CAP_WAIT = 30


@dataclass(frozen=True)
class Lease:
    id: int
    worker: str
    expires_at: datetime
    item_ids: list[int]
    # The items as a JSON array, built by MariaDB: a service passes it on without decoding
    # 500 rows into Python objects and encoding them again.
    items_json: str
    ends: dict[int, int] = field(default_factory=dict)  # per level: the highest id leased


@dataclass(frozen=True)
class Report:
    """One photo's outcome: `stored` (with sha256 hex, bytes, path) or a failure class."""

    id: int
    result: str  # stored | gone | retry | bad
    sha256: str = ""
    bytes: int = 0
    path: str = ""
    error: str = ""
    md5: str | None = None  # hex; absent from reports of older downloaders


@dataclass
class ReportOutcome:
    lease_id: int
    stored: list[int] = field(default_factory=list)
    already_stored: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    # Failures of photos this lease no longer holds (lapsed, released, reported already).
    ignored: list[int] = field(default_factory=list)
    # Photos taken down meanwhile: they stay so, whatever was reported.
    taken_down: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def lease(
    conn,
    worker: str,
    max_items: int,
    seconds: int,
    now: datetime,
    after: int | Mapping[int, int] = 0,
    max_open: int = 0,
) -> Lease | None:
    """Up to `max_items` pending photos under a new lease, highest priority level first, in
    each the lowest ids above its `after` mark (an int: every level's); None when there is
    none. Photos another transaction holds are skipped, never waited for. TooManyLeases when
    the worker holds `max_open` unexpired leases (0: no cap). `after` lets a busy service
    start past the photos it leased a moment ago, which stay in the index's pending range."""
    marks = after if isinstance(after, Mapping) else dict.fromkeys(LEVELS, after)

    def work(cur) -> Lease | None:
        if max_open:
            _check_open_leases(cur, worker, max_open, now)
        picked: dict[int, tuple[list[int], str]] = {}
        for level in LEVELS:
            wanted = max_items - sum(len(ids) for ids, _ in picked.values())
            if wanted <= 0:
                break
            found = _pick(cur, level, marks.get(level, 0), wanted)
            if found is not None:
                picked[level] = found
        if not picked:
            return None
        ids = sorted(i for level_ids, _ in picked.values() for i in level_ids)
        id_list = _id_list(ids)
        expires = now + timedelta(seconds=seconds)
        cur.execute(
            "INSERT INTO leases (worker, items, item_ids, created_at, expires_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (worker, len(ids), id_list, now, expires),
        )
        lease_id = cur.lastrowid
        cur.execute(f"UPDATE images SET lease_id = %s WHERE id IN ({id_list})", (lease_id,))
        # The levels' JSON arrays as one, highest level first, without decoding them.
        items_json = "[" + ", ".join(part[1:-1] for _, part in picked.values()) + "]"
        ends = {level: level_ids[-1] for level, (level_ids, _) in picked.items()}
        return Lease(lease_id, worker, expires, ids, items_json, ends)

    return with_retry(conn, work)


def _pick(cur, level: int, after: int, limit: int) -> tuple[list[int], str] | None:
    """Lock and describe up to `limit` pending photos of one priority level above `after`:
    their ids in order and their items as a JSON array; None when there is none (an index
    dive). The derived table's locking read locks only `images` rows, not the licenses.
    FORCE INDEX: left to itself, MariaDB reads the index by `state` alone and filters entry
    by entry from the first pending photo (29,100 entries for 100 photos leased 29,000 past
    the start); forced, it reads a range from ('pending', level, after)."""
    cur.execute(
        f"SELECT GROUP_CONCAT(i.id ORDER BY i.id), {ITEMS_JSON}"
        f" FROM (SELECT {', '.join(ITEM_COLUMNS)} FROM images FORCE INDEX (images_state)"
        "  WHERE state = 'pending' AND priority = %s AND id > %s AND lease_id = 0"
        "  ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
        f" i {LICENSE_JOIN}",
        (level, after, limit),
    )
    id_list, items_json = cur.fetchone()
    if id_list is None:
        return None
    return [int(i) for i in id_list.split(",")], items_json


def _check_open_leases(cur, worker: str, max_open: int, now: datetime) -> None:
    """TooManyLeases when `worker` holds `max_open` unexpired active leases. The range of
    `(state, expires_at)` it reads holds only unexpired leases, at most every worker's cap
    of them; by `worker` MariaDB would walk the worker's closed leases of the retention
    period too."""
    cur.execute(
        "SELECT COUNT(*), MIN(expires_at) FROM leases FORCE INDEX (leases_state_expires)"
        " WHERE state = 'active' AND expires_at > %s AND worker = %s",
        (now, worker),
    )
    held, first_expiry = cur.fetchone()
    if held >= max_open:
        lapses_in = math.ceil((first_expiry - now).total_seconds())
        raise TooManyLeases(
            f"worker {worker} holds {held} open leases (queue.max_open_leases is {max_open}):"
            " report or release one, or wait for one to lapse",
            retry_after=max(1, min(lapses_in, MAX_CAP_WAIT)),
        )


def complete(
    conn,
    worker: str,
    lease_id: int,
    reports: Sequence[Report],
    max_attempts: int,
    now: datetime,
    backoff: Backoff = NO_BACKOFF,
) -> ReportOutcome:
    """Apply a worker's reports for photos of its lease; see the module docstring. A photo
    requeued by a `retry` waits out `backoff` under a parking lease (`backoff.park`)."""
    ids = [r.id for r in reports]
    counts = Counter(ids)  # linear: `ids.count` per photo was quadratic in a 10,000-item report
    if len(counts) != len(ids):
        twice = sorted(i for i, n in counts.items() if n > 1)
        raise BadReport(f"photos reported twice in one request: {_sample(twice)}")

    def work(cur) -> ReportOutcome:
        held_ids = _lease_for_update(cur, worker, lease_id)[1]
        foreign = [i for i in ids if i not in held_ids]
        if foreign:
            raise BadReport(f"photos not in lease {lease_id}: {_sample(foreign)}")
        outcome = ReportOutcome(lease_id)
        if not reports:
            return outcome
        down = _store_new(cur, reports, worker, lease_id, now) if all(
            r.result == "stored" for r in reports
        ) else None  # fmt: skip
        if down is not None:
            outcome.stored.extend(i for i in ids if i not in down)
            outcome.taken_down.extend(down)
            return outcome
        # One JSON value rather than a row per photo: PyMySQL decodes rows slowly.
        cur.execute(
            "SELECT JSON_ARRAYAGG(JSON_ARRAY(id, state, lease_id, attempts)) FROM images"
            f" WHERE id IN ({_id_list(ids)}) FOR UPDATE"
        )
        current = {row[0]: tuple(row[1:]) for row in json.loads(cur.fetchone()[0] or "[]")}
        reported_stored = [r.id for r in reports if r.result == "stored"]
        if any(current[i][0] == TAKEN_DOWN for i in reported_stored):
            stored_after_takedown(cur, _id_list(reported_stored), worker, lease_id)
        changes = _decide(reports, current, lease_id, max_attempts, outcome)
        stored_ids = set(outcome.stored)
        _write_stored(cur, [r for r in reports if r.id in stored_ids], worker, lease_id, now)
        parked = park(cur, outcome.requeued, current, backoff, now)
        _write_states(cur, changes, parked)
        settled = sum(1 for r in reports if current[r.id][1] == lease_id)
        failed = len(outcome.failed) + len(outcome.gone) + len(outcome.requeued)
        _count_report(cur, lease_id, settled, len(outcome.stored), failed, now)
        return outcome

    return with_retry(conn, work)


def _store_new(
    cur, reports: Sequence[Report], worker: str, lease_id: int, now: datetime
) -> list[int] | None:
    """The common report, every photo stored for the first time, without reading the
    photos' states first: the photos of it taken down when it is done, None when a photo was
    stored before; the rows written so far are the new ones, which the full path then finds."""
    if _write_stored(cur, reports, worker, lease_id, now) < len(reports):
        return None
    ids = _id_list(r.id for r in reports)
    done = "state = 'stored', lease_id = 0, last_error = NULL"
    # Only a pending photo carries a lease, unless it was taken down under it.
    cur.execute(
        f"UPDATE images SET {done} WHERE id IN ({ids}) AND lease_id = %s AND state = 'pending'",
        (lease_id,),
    )
    settled, down = cur.rowcount, []
    if settled < len(reports):  # photos that lapsed from this lease: stored all the same
        down, held = stored_after_takedown(cur, ids, worker, lease_id)
        settled += held
        cur.execute(
            f"UPDATE images SET {done} WHERE id IN ({ids})"
            f" AND state NOT IN ('stored', '{TAKEN_DOWN}')"
        )
    _count_report(cur, lease_id, settled, len(reports) - len(down), 0, now)
    return down


# A photo's change: new state, whether a `retry` attempt is counted, the error to keep.
Change = tuple[str, bool, str | None]


def _decide(
    reports: Sequence[Report],
    current: dict[int, tuple],
    lease_id: int,
    max_attempts: int,
    outcome: ReportOutcome,
) -> dict[int, Change]:
    """The change of every photo the reports change; fills `outcome`."""
    changes: dict[int, Change] = {}
    for report in reports:
        state, holder, attempts = current[report.id]
        if state == TAKEN_DOWN:  # stays so; a failure's report only ends the lease's hold
            outcome.taken_down.append(report.id)
            if holder == lease_id and report.result != "stored":
                changes[report.id] = (TAKEN_DOWN, False, None)
            continue
        if report.result == "stored":
            if state == "stored":
                outcome.already_stored.append(report.id)
            else:
                outcome.stored.append(report.id)
                changes[report.id] = ("stored", False, None)
            continue
        if holder != lease_id:  # a lease holds a photo until its report clears lease_id
            outcome.ignored.append(report.id)
            continue
        error = f"{report.result}: {report.error}"[:255]
        retry = report.result == "retry"
        if report.result == "gone":
            outcome.gone.append(report.id)
            changes[report.id] = ("gone", False, error)
        elif not retry or attempts + 1 >= max_attempts:
            outcome.failed.append(report.id)
            changes[report.id] = ("failed", retry, error)
        else:
            outcome.requeued.append(report.id)
            changes[report.id] = ("pending", True, error)
    return changes


def _write_stored(cur, stored: Sequence[Report], worker: str, lease_id: int, now: datetime) -> int:
    """Record what is on storage; the first report of a photo wins (INSERT IGNORE). Returns
    the rows written. The VALUES are written here: ids and sizes are ints, the digest is hex
    re-made from its bytes, so only the path and the worker need escaping; PyMySQL's
    escaping of every value of 500 rows cost more than the insert."""
    if not stored:
        return 0
    escape = cur.connection.escape
    tail = f"{escape(worker)}, {int(lease_id)}, {escape(now)})"
    rows = ",".join(
        f"({int(r.id)}, x'{bytes.fromhex(r.sha256).hex()}', {int(r.bytes)}, {escape(r.path)},"
        f" {_md5_value(r.md5)}, {tail}"
        for r in stored
    )
    cur.execute(
        "INSERT IGNORE INTO stored_images"
        f" (image_id, sha256, bytes, path, md5, worker, lease_id, stored_at) VALUES {rows}"
    )
    return cur.rowcount


def _md5_value(md5: str | None) -> str:
    """The MD5 as SQL: its bytes re-made from hex (never the text as sent), or NULL."""
    return "NULL" if md5 is None else f"x'{bytes.fromhex(md5).hex()}'"


def _write_states(cur, changes: dict[int, Change], parked: dict[int, int]) -> None:
    """One UPDATE for every changed photo, whatever mix of outcomes the report holds; a
    parked photo takes its parking lease, every other one leaves its lease."""
    if not changes:
        return
    state_sql, state_args = _case({image_id: c[0] for image_id, c in changes.items()})
    error_sql, error_args = _case({image_id: c[2] for image_id, c in changes.items()})
    lease_sql, lease_args = _case({image_id: parked.get(image_id, 0) for image_id in changes})
    bumped = [image_id for image_id, c in changes.items() if c[1]]
    attempts = f", attempts = attempts + (id IN ({_id_list(bumped)}))" if bumped else ""
    cur.execute(
        f"UPDATE images SET state = {state_sql}, last_error = {error_sql}{attempts},"
        f" lease_id = {lease_sql} WHERE id IN ({_id_list(changes)})",
        [*state_args, *error_args, *lease_args],
    )


def _case(values: dict[int, object]) -> tuple[str, list]:
    """A SQL expression giving each photo id its value: a CASE over the id groups of each
    distinct value (a few, whatever the number of photos), or the one value itself."""
    groups: dict[object, list[int]] = {}
    for image_id, value in values.items():
        groups.setdefault(value, []).append(image_id)
    if len(groups) == 1:
        return "%s", [next(iter(groups))]
    whens = " ".join(f"WHEN id IN ({_id_list(ids)}) THEN %s" for ids in groups.values())
    return f"CASE {whens} END", list(groups)


def _count_report(
    cur, lease_id: int, settled: int, stored: int, failed: int, now: datetime
) -> None:
    """Count the report on its lease; a lease whose every photo is settled is done."""
    cur.execute(
        "UPDATE leases SET reported = reported + %s, stored = stored + %s,"
        " failed = failed + %s, last_report_at = %s,"
        " closed_at = IF(state = 'active' AND reported >= items, %s, closed_at),"
        " state = IF(state = 'active' AND reported >= items, 'done', state)"
        " WHERE id = %s",
        (settled, stored, failed, now, now, lease_id),
    )


def extend(conn, worker: str, lease_id: int, seconds: int, now: datetime) -> datetime:
    """Move an active lease's expiry to `seconds` from now; LeaseClosed once it lapsed."""

    def work(cur) -> datetime:
        state, _, expires = _lease_for_update(cur, worker, lease_id)
        if state != "active" or expires <= now:
            raise LeaseClosed(
                f"lease {lease_id} is {'expired' if state == 'active' else state}:"
                " its unreported photos went back to the queue; lease again"
            )
        expires = now + timedelta(seconds=seconds)
        cur.execute("UPDATE leases SET expires_at = %s WHERE id = %s", (expires, lease_id))
        return expires

    return with_retry(conn, work)


def release(conn, worker: str, lease_id: int, item_ids: Iterable[int] | None, now: datetime) -> int:
    """Give photos of a lease (all when `item_ids` is None) back to the queue without counting
    an attempt; returns how many went back. Releasing twice releases nothing more."""

    def work(cur) -> int:
        state, held_ids, _ = _lease_for_update(cur, worker, lease_id)
        ids = sorted(held_ids) if item_ids is None else list(item_ids)
        foreign = [i for i in ids if i not in held_ids]
        if foreign:
            raise BadReport(f"photos not in lease {lease_id}: {_sample(foreign)}")
        if state != "active" or not ids:
            return 0
        cur.execute(
            f"UPDATE images SET lease_id = 0 WHERE id IN ({_id_list(ids)}) AND lease_id = %s",
            (lease_id,),
        )
        released = cur.rowcount
        cur.execute(
            "UPDATE leases SET reported = reported + %s,"
            " closed_at = IF(reported >= items, %s, closed_at),"
            " state = IF(reported >= items, 'released', state) WHERE id = %s",
            (released, now, lease_id),
        )
        return released

    return with_retry(conn, work)


class Reaped(NamedTuple):
    leases: int  # workers' leases that lapsed
    photos: int  # their unsettled photos, back in the queue
    waits: int  # parking leases whose backoff ended
    waited: int  # their photos, back in the queue


def reap(conn, now: datetime, limit: int = 200) -> Reaped:
    """Expire active leases past their expiry: their unsettled photos go back to pending.
    Parking leases (state `backoff`) are reaped alike, counted apart: their photos' backoff
    ended. Leases another reaper holds are skipped."""

    def work(cur) -> Reaped:
        cur.execute(
            "SELECT id, item_ids, state = 'backoff' FROM leases"
            " WHERE state IN ('active', 'backoff') AND expires_at < %s"
            " ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit),
        )
        rows = cur.fetchall()
        counts = [0, 0, 0, 0]
        for parking in (False, True):  # workers' leases, then parking leases: two UPDATEs
            lease_ids = [row[0] for row in rows if bool(row[2]) == parking]
            if not lease_ids:
                continue
            photo_ids = [i for row in rows if bool(row[2]) == parking for i in row[1].split(",")]
            cur.execute(
                f"UPDATE images SET lease_id = 0 WHERE id IN ({_id_list(photo_ids)})"
                f" AND lease_id IN ({_id_list(lease_ids)})"
            )
            counts[2 * parking : 2 * parking + 2] = [len(lease_ids), cur.rowcount]
        if rows:
            cur.execute(
                "UPDATE leases SET state = 'expired', closed_at = %s"
                f" WHERE id IN ({_id_list(row[0] for row in rows)})",
                (now,),
            )
        return Reaped(*counts)

    return with_retry(conn, work)


def prune_leases(conn, before: datetime, limit: int = 10_000) -> int:
    """Delete closed leases that expired before `before` (their reports are long settled)."""

    def work(cur) -> int:
        cur.execute(
            "DELETE FROM leases WHERE state IN ('released', 'expired', 'done')"
            " AND expires_at < %s LIMIT %s",
            (before, limit),
        )
        return cur.rowcount

    return with_retry(conn, work)


def _lease_for_update(cur, worker: str, lease_id: int) -> tuple[str, set[int], datetime]:
    """Lock the lease row; (state, its photo ids, expiry), or the error that refuses it."""
    cur.execute(
        "SELECT worker, state, item_ids, expires_at FROM leases WHERE id = %s FOR UPDATE",
        (lease_id,),
    )
    row = cur.fetchone()
    if row is None:
        raise LeaseNotFound(f"no lease {lease_id}")
    owner, state, item_ids, expires = row
    if owner != worker:
        raise NotYourLease(f"lease {lease_id} belongs to another worker")
    return state, {int(i) for i in item_ids.split(",")}, expires


def _id_list(ids: Iterable[int]) -> str:
    """Catalog ids inline in SQL: they are ints, checked here, so nothing is injected."""
    return ",".join(str(int(i)) for i in ids)


def _sample(ids: list[int], most: int = 10) -> str:
    shown = ", ".join(map(str, ids[:most]))
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")
