"""The download queue in the catalog: lease photos to workers, take their reports, expire
leases that lapse. The HTTP layer (`harvester.queue_service`) is a thin shell around this.

A photo's place in the queue is `images.state`:

    pending --lease--> leased --stored--> stored
                         |  --gone-----> gone            (404/410, "photo unavailable")
                         |  --bad------> failed          (not an image, too large)
                         |  --retry----> pending, or failed after max_attempts
                         +--expired/released--> pending

Nothing is lost: a lease that is not settled by its expiry goes back to pending, and a
`stored` report is always taken, even after the lease lapsed and the photo went to another
worker (its bytes are on storage; the other worker's report then finds it stored). Reports are
idempotent: a second report of the same photo changes nothing.

Each call is one transaction of a few statements, every one by primary key or by the
`(state, id)` index, whatever the size of the catalog. Times are the service's clock, passed
in, so the expiry checks and the reaper agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pymysql

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
FAILURE_CLASSES = ("gone", "retry", "bad")
LOCK_ERRORS = (1205, 1213)  # lock wait timeout, deadlock: the transaction is retried


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
    status = 422


@dataclass(frozen=True)
class Lease:
    id: int
    worker: str
    expires_at: datetime
    items: list[dict]


@dataclass(frozen=True)
class Report:
    """One photo's outcome: `stored` (with sha256 hex, bytes, path) or a failure class."""

    id: int
    result: str  # stored | gone | retry | bad
    sha256: str = ""
    bytes: int = 0
    path: str = ""
    error: str = ""


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

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def with_retry(conn, work, attempts: int = 5):
    """Run `work(cur)` as one transaction, again when it loses a deadlock."""
    for attempt in range(attempts):
        try:
            with conn.cursor() as cur:
                result = work(cur)
            conn.commit()
            return result
        except pymysql.err.OperationalError as exc:
            conn.rollback()
            if exc.args[0] not in LOCK_ERRORS or attempt == attempts - 1:
                raise
        except BaseException:
            conn.rollback()
            raise
    raise AssertionError("unreachable")


def lease(conn, worker: str, max_items: int, seconds: int, now: datetime) -> Lease | None:
    """Up to `max_items` pending photos, oldest catalog id first, under a new lease; None when
    nothing is pending. Photos another transaction holds are skipped, never waited for."""

    def work(cur) -> Lease | None:
        cur.execute(
            f"SELECT {', '.join(ITEM_COLUMNS)} FROM images WHERE state = 'pending'"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (max_items,),
        )
        rows = cur.fetchall()
        if not rows:
            return None
        ids = [row[0] for row in rows]
        expires = now + timedelta(seconds=seconds)
        cur.execute(
            "INSERT INTO leases (worker, items, item_ids, created_at, expires_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (worker, len(ids), ",".join(map(str, ids)), now, expires),
        )
        lease_id = cur.lastrowid
        cur.execute(
            f"UPDATE images SET state = 'leased', lease_id = %s WHERE id IN ({_id_list(ids)})",
            (lease_id,),
        )
        items = [dict(zip(ITEM_COLUMNS, row, strict=True)) for row in rows]
        return Lease(lease_id, worker, expires, items)

    return with_retry(conn, work)


def complete(
    conn, worker: str, lease_id: int, reports: Sequence[Report], max_attempts: int, now: datetime
) -> ReportOutcome:
    """Apply a worker's reports for photos of its lease; see the module docstring."""
    ids = [r.id for r in reports]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise BadReport(f"photos reported twice in one request: {_sample(twice)}")

    def work(cur) -> ReportOutcome:
        held_ids = _lease_for_update(cur, worker, lease_id)[1]
        foreign = [i for i in ids if i not in held_ids]
        if foreign:
            raise BadReport(f"photos not in lease {lease_id}: {_sample(foreign)}")
        outcome = ReportOutcome(lease_id)
        if not reports:
            return outcome
        cur.execute(
            f"SELECT id, state, lease_id, attempts FROM images WHERE id IN ({_id_list(ids)})"
            " FOR UPDATE"
        )
        current = {row[0]: row[1:] for row in cur.fetchall()}
        changes = _decide(reports, current, lease_id, max_attempts, outcome)
        _write_stored(
            cur, [r for r in reports if r.id in set(outcome.stored)], worker, lease_id, now
        )
        _write_states(cur, changes)
        settled = sum(1 for r in reports if current[r.id][:2] == ("leased", lease_id))
        _count_report(
            cur,
            lease_id,
            settled,
            len(outcome.stored),
            len(outcome.failed) + len(outcome.gone) + len(outcome.requeued),
            now,
        )
        return outcome

    return with_retry(conn, work)


def _decide(
    reports: Sequence[Report],
    current: dict[int, tuple],
    lease_id: int,
    max_attempts: int,
    outcome: ReportOutcome,
) -> dict[int, tuple[str, int, str | None]]:
    """New (state, attempts, last_error) per photo that changes; fills `outcome`."""
    changes: dict[int, tuple[str, int, str | None]] = {}
    for report in reports:
        state, holder, attempts = current[report.id]
        if report.result == "stored":
            if state == "stored":
                outcome.already_stored.append(report.id)
            else:
                outcome.stored.append(report.id)
                changes[report.id] = ("stored", attempts, None)
            continue
        if (state, holder) != ("leased", lease_id):
            outcome.ignored.append(report.id)
            continue
        error = f"{report.result}: {report.error}"[:255]
        if report.result == "gone":
            outcome.gone.append(report.id)
            changes[report.id] = ("gone", attempts, error)
        elif report.result == "bad" or attempts + 1 >= max_attempts:
            outcome.failed.append(report.id)
            changes[report.id] = ("failed", attempts + (report.result == "retry"), error)
        else:
            outcome.requeued.append(report.id)
            changes[report.id] = ("pending", attempts + 1, error)
    return changes


def _write_stored(cur, stored: list[Report], worker: str, lease_id: int, now: datetime) -> None:
    if not stored:
        return
    # The first report of a photo wins: pushing the same photo twice is one file.
    cur.executemany(
        "INSERT INTO stored_images (image_id, sha256, bytes, path, worker, lease_id, stored_at)"
        " VALUES (%s, UNHEX(%s), %s, %s, %s, %s, %s)"
        " ON DUPLICATE KEY UPDATE image_id = image_id",
        [(r.id, r.sha256, r.bytes, r.path, worker, lease_id, now) for r in stored],
    )


def _write_states(cur, changes: dict[int, tuple[str, int, str | None]]) -> None:
    """One UPDATE for every changed photo, whatever mix of outcomes the report holds."""
    if not changes:
        return
    by_state: dict[str, list[int]] = {}
    for image_id, (state, _, _) in changes.items():
        by_state.setdefault(state, []).append(image_id)
    state_case = " ".join(
        f"WHEN id IN ({_id_list(ids)}) THEN '{state}'" for state, ids in by_state.items()
    )
    attempts_case = " ".join(f"WHEN {i} THEN {int(a)}" for i, (_, a, _) in changes.items())
    error_case = " ".join(f"WHEN {i} THEN %s" for i in changes)
    cur.execute(
        f"UPDATE images SET state = CASE {state_case} END,"
        f" attempts = CASE id {attempts_case} END, last_error = CASE id {error_case} END,"
        f" lease_id = NULL WHERE id IN ({_id_list(changes)})",
        [error for _, _, error in changes.values()],
    )


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
            "UPDATE images SET state = 'pending', lease_id = NULL"
            f" WHERE id IN ({_id_list(ids)}) AND state = 'leased' AND lease_id = %s",
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


def reap(conn, now: datetime, limit: int = 200) -> tuple[int, int]:
    """Expire active leases past their expiry: their unsettled photos go back to pending.
    Returns (leases expired, photos requeued). Leases another reaper holds are skipped."""

    def work(cur) -> tuple[int, int]:
        cur.execute(
            "SELECT id, item_ids FROM leases WHERE state = 'active' AND expires_at < %s"
            " ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit),
        )
        rows = cur.fetchall()
        if not rows:
            return 0, 0
        lease_ids = [row[0] for row in rows]
        photo_ids = [int(i) for _, item_ids in rows for i in item_ids.split(",")]
        cur.execute(
            "UPDATE images SET state = 'pending', lease_id = NULL"
            f" WHERE id IN ({_id_list(photo_ids)}) AND state = 'leased'"
            f" AND lease_id IN ({_id_list(lease_ids)})"
        )
        requeued = cur.rowcount
        cur.execute(
            "UPDATE leases SET state = 'expired', closed_at = %s"
            f" WHERE id IN ({_id_list(lease_ids)})",
            (now,),
        )
        return len(lease_ids), requeued

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


# --- Maintenance mode: a switch every service process reads. ---


@dataclass(frozen=True)
class Maintenance:
    on: bool
    retry_after: int  # seconds a worker is told to wait before asking again


DEFAULT_RETRY_AFTER = 300


def get_maintenance(conn) -> Maintenance:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT name, value FROM queue_settings"
            " WHERE name IN ('maintenance', 'maintenance_retry_after')"
        )
        values = dict(cur.fetchall())
    conn.commit()
    return Maintenance(
        on=values.get("maintenance") == "on",
        retry_after=int(values.get("maintenance_retry_after", DEFAULT_RETRY_AFTER)),
    )


def set_maintenance(conn, on: bool, retry_after: int = DEFAULT_RETRY_AFTER) -> Maintenance:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO queue_settings (name, value) VALUES (%s, %s)"
            " ON DUPLICATE KEY UPDATE value = VALUES(value)",
            [("maintenance", "on" if on else "off"), ("maintenance_retry_after", retry_after)],
        )
    conn.commit()
    return Maintenance(on, retry_after)
