"""Record a takedown and take its photos out of the queue; list takedowns.

A photo takedown is one transaction: the request, the photo's state and its log row. A photo
id the catalog does not know yet is recorded all the same (logged `requested`): an operator
takes down what a complaint names, and reconcile then inserts the photo `taken_down` when a
source finds it. An owner takedown records the request first, then walks the catalog in
bounded ranges of catalog ids (the catalog has no index by owner, and one statement over
500M rows would lock them all), each range one transaction; adding the same takedown again
walks again, which finishes a walk that was cut off and changes nothing after one that ended.

A photo a lease holds keeps its `lease_id`: the lease's report settles it, and the queue
keeps it taken down (harvester/queue/leases.py).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

from harvester.db import with_retry
from harvester.queue.taken_down import TAKEN_DOWN

NSID = re.compile(r"^[0-9]{1,20}@N[0-9]{2}$")  # Flickr's user ids: 12345678@N00
MAX_PHOTO_ID = 2**64 - 1
MAX_REASON = 1024
MAX_ACTOR = 100
WALK_IDS = 50_000  # catalog ids per transaction of an owner's walk


class TakedownError(ValueError):
    """A request refused before anything was written; the message says why."""


@dataclass(frozen=True)
class Request:
    photo_id: int | None
    owner: str | None
    reason: str
    requested_by: str


@dataclass
class Added:
    takedown_id: int
    photo_id: int | None
    owner: str | None
    existing: bool  # recorded before: its walk ran again
    withdrawn: dict[str, int] = field(default_factory=dict)  # photos by their state before
    in_catalog: bool = True  # a photo takedown: False when the id is not in the catalog yet

    def as_dict(self) -> dict:
        state = asdict(self)
        target = f"photo {self.photo_id}" if self.photo_id is not None else f"owner {self.owner}"
        total = sum(self.withdrawn.values())
        state["summary"] = (
            f"takedown {self.takedown_id} of {target}"
            + (" (recorded before)" if self.existing else "")
            + f": {total:,} photos withdrawn"
            + (f" ({_counts(self.withdrawn)})" if total else "")
            + ("" if self.in_catalog else "; not in the catalog yet: a harvest will refuse it")
        )
        return state


def checked_request(
    photo_id: int | None, owner: str | None, reason: str | None, requested_by: str | None
) -> Request:
    """The request, or TakedownError: exactly one of a photo id and an owner NSID, a reason."""
    if (photo_id is None) == (owner is None):
        raise TakedownError("name exactly one of --photo ID and --owner NSID")
    if photo_id is not None and not 0 < photo_id <= MAX_PHOTO_ID:
        raise TakedownError(f"not a Flickr photo id: {photo_id}")
    if owner is not None and not NSID.match(owner):
        raise TakedownError(f"not a Flickr owner NSID (like 12345678@N00): {owner!r}")
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise TakedownError(f"--reason must be 1 to {MAX_REASON} characters, not blank")
    actor = (requested_by or "").strip()
    if not actor or len(actor) > MAX_ACTOR:
        raise TakedownError(f"--by must be 1 to {MAX_ACTOR} characters, not blank")
    return Request(photo_id, owner, reason, actor)


def add_takedown(conn, request: Request, now: datetime, walk_ids: int = WALK_IDS) -> Added:
    """Record `request` (once) and withdraw its photos; see the module docstring."""
    if request.photo_id is not None:
        return with_retry(conn, lambda cur: _add_photo(cur, request, now))
    takedown_id, existing = with_retry(conn, lambda cur: _record(cur, request, now))
    added = Added(takedown_id, None, request.owner, existing)
    low, high = _id_span(conn)
    for start in range(low, high + 1, walk_ids):
        end = start + walk_ids - 1
        counts = with_retry(
            conn, lambda cur, s=start, e=end: _withdraw(cur, takedown_id, request, s, e)
        )
        for state, n in counts.items():
            added.withdrawn[state] = added.withdrawn.get(state, 0) + n
    return added


def _add_photo(cur, request: Request, now: datetime) -> Added:
    takedown_id, existing = _record(cur, request, now)
    added = Added(takedown_id, request.photo_id, None, existing)
    cur.execute("SELECT id FROM images WHERE photo_id = %s", (request.photo_id,))
    row = cur.fetchone()
    if row is None:
        added.in_catalog = False
        if not existing:
            _log(cur, takedown_id, request.photo_id, "requested", request.requested_by,
                 "not in the catalog yet: a harvest will insert it taken down")  # fmt: skip
        return added
    added.withdrawn = _withdraw(cur, takedown_id, request, row[0], row[0])
    return added


def _record(cur, request: Request, now: datetime) -> tuple[int, bool]:
    """The takedown's id and whether it was recorded before (its first reason stands)."""
    column, value = (
        ("photo_id", request.photo_id) if request.photo_id is not None else ("owner", request.owner)
    )
    cur.execute(f"SELECT id FROM takedowns WHERE {column} = %s FOR UPDATE", (value,))
    row = cur.fetchone()
    if row is not None:
        return int(row[0]), True
    cur.execute(
        f"INSERT INTO takedowns ({column}, reason, requested_by, created_at)"
        " VALUES (%s, %s, %s, %s)",
        (value, request.reason, request.requested_by, now),
    )
    return int(cur.lastrowid), False


def _withdraw(cur, takedown_id: int, request: Request, low: int, high: int) -> dict[str, int]:
    """Take the request's photos among catalog ids [low, high] down, each logged with the
    state it left (and its lease, if one holds it). Returns photos by that state."""
    target = "photo_id = %s" if request.photo_id is not None else "owner = %s"
    value = request.photo_id if request.photo_id is not None else request.owner
    where = f"id BETWEEN %s AND %s AND {target} AND state <> '{TAKEN_DOWN}'"
    cur.execute(
        f"SELECT state, COUNT(*) FROM images WHERE {where} GROUP BY state FOR UPDATE",
        (low, high, value),
    )
    counts = {state: int(n) for state, n in cur.fetchall()}
    if not counts:
        return {}
    cur.execute(
        "INSERT INTO takedown_log (takedown_id, photo_id, step, actor, detail)"
        " SELECT %s, photo_id, 'withdrawn', %s,"
        " CONCAT('was ', state, IF(lease_id <> 0, CONCAT(', held by lease ', lease_id), ''))"
        f" FROM images WHERE {where}",
        (takedown_id, request.requested_by, low, high, value),
    )
    cur.execute(f"UPDATE images SET state = '{TAKEN_DOWN}' WHERE {where}", (low, high, value))
    return counts


def _log(cur, takedown_id: int | None, photo_id: int, step: str, actor: str, detail: str) -> None:
    cur.execute(
        "INSERT INTO takedown_log (takedown_id, photo_id, step, actor, detail)"
        " VALUES (%s, %s, %s, %s, %s)",
        (takedown_id, photo_id, step, actor, detail[:1024]),
    )


def _id_span(conn) -> tuple[int, int]:
    with conn.cursor() as cur:
        cur.execute("SELECT COALESCE(MIN(id), 1), COALESCE(MAX(id), 0) FROM images")
        low, high = cur.fetchone()
    conn.commit()
    return int(low), int(high)


def list_takedowns(conn) -> list[dict]:
    """Every takedown, oldest first, with its log's steps counted."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT k.id, k.photo_id, k.owner, k.reason, k.requested_by, k.created_at,"
            " l.step, COUNT(l.id) FROM takedowns k"
            " LEFT JOIN takedown_log l ON l.takedown_id = k.id"
            " GROUP BY k.id, l.step ORDER BY k.id, l.step"
        )
        rows = cur.fetchall()
    conn.commit()
    found: dict[int, dict] = {}
    for tid, photo_id, owner, reason, by, created, step, n in rows:
        entry = found.setdefault(tid, {
            "id": tid, "photo_id": photo_id, "owner": owner, "reason": reason,
            "requested_by": by, "created_at": created.isoformat(sep=" "), "steps": {},
        })  # fmt: skip
        if step is not None:
            entry["steps"][step] = int(n)
    return list(found.values())


def format_takedowns(found: list[dict]) -> str:
    lines = [
        f"{t['id']}\t{t['created_at'][:19]}\t"
        + (f"photo {t['photo_id']}" if t["photo_id"] is not None else f"owner {t['owner']}")
        + f"\tby {t['requested_by']}\t{t['reason']}"
        + (f"\t({_counts(t['steps'])})" if t["steps"] else "")
        for t in found
    ]
    return "\n".join(lines) or "no takedown"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in sorted(counts.items()))
