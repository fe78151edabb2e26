"""The re-check's tables (migration 0013): stored photos enrolled into `image_checks`, picked
oldest-checked first, and what Flickr said written back with the photo's flags.

Every statement uses an index: enrolment walks `stored_images` by `stored_at` from a cursor,
picking reads `image_checks` by `checked_at`, and the catalog is read by primary key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

ENROL_BATCH = 10_000
# A Flickr image URL: .../{server}/{id}_{secret}[_{size}].{ext}. The original and the sizes
# h, k, 3k-6k have secrets of their own; only the others carry the photo's secret, which
# getInfo takes (the catalog keeps no other copy of it).
_URL_SECRET = re.compile(r"/(\d+)_([0-9a-f]+)(?:_([a-z0-9]+))?\.[a-z]+$")
OWN_SECRET_SIZES = frozenset({"o", "h", "k", "3k", "4k", "5k", "6k"})
FLAGS = ("not_cc", "gone", "private")


@dataclass(frozen=True)
class Stored:
    image_id: int
    photo_id: int
    license_id: int
    secret: str | None
    uploaded_at: int


@dataclass(frozen=True)
class Verdict:
    image_id: int
    result: str | None  # ok, not_cc, gone, private; None: Flickr did not answer
    license_id: int | None
    detail: str


def url_secret(url: str) -> str | None:
    match = _URL_SECRET.search(url)
    return match[2] if match and match[3] not in OWN_SECRET_SIZES else None


def enrol(conn) -> int:
    """Stored photos not in image_checks yet, from the cursor on; returns how many."""
    with conn.cursor() as cur:
        cur.execute("SELECT enrolled_until FROM recheck_cursor WHERE id = 1 FOR UPDATE")
        row = cur.fetchone()
        since = row[0] if row else datetime(1970, 1, 1)
        # `>=`: photos stored in the same microsecond as the last enrolled one are taken
        # again and ignored, never skipped.
        cur.execute(
            "SELECT image_id, stored_at FROM stored_images WHERE stored_at >= %s"
            " ORDER BY stored_at LIMIT %s",
            (since, ENROL_BATCH),
        )
        rows = cur.fetchall()
        if rows:
            cur.executemany(
                "INSERT IGNORE INTO image_checks (image_id) VALUES (%s)", [(r[0],) for r in rows]
            )
            added = cur.rowcount
            cur.execute(
                "INSERT INTO recheck_cursor (id, enrolled_until) VALUES (1, %s)"
                " ON DUPLICATE KEY UPDATE enrolled_until = VALUES(enrolled_until)",
                (rows[-1][1],),
            )
        else:
            added = 0
    conn.commit()
    return added


def pick(conn, checked_before: datetime, limit: int) -> list[Stored]:
    """Up to `limit` stored photos never checked or last checked before `checked_before`,
    oldest-checked first (never-checked ones, NULL, sort first). A photo no longer stored
    (taken down, say) leaves image_checks here: it would stay first in line for ever."""
    with conn.cursor() as cur:
        while True:
            cur.execute(
                "SELECT c.image_id, i.state, i.photo_id, i.license_id, i.image_url,"
                " i.uploaded_at FROM image_checks c LEFT JOIN images i ON i.id = c.image_id"
                " WHERE c.checked_at IS NULL OR c.checked_at < %s"
                " ORDER BY c.checked_at, c.image_id LIMIT %s",
                (checked_before, limit),
            )
            rows = cur.fetchall()
            dropped = [(r[0],) for r in rows if r[1] != "stored"]
            if not dropped:
                break
            cur.executemany("DELETE FROM image_checks WHERE image_id = %s", dropped)
            conn.commit()
    conn.commit()
    return [
        Stored(int(i), int(p), int(lic), url_secret(url), int(up)) for i, _, p, lic, url, up in rows
    ]


def record(conn, verdicts: list[Verdict], now: datetime) -> None:
    """What Flickr said, in one transaction: the checks, the flags raised and cleared."""
    if not verdicts:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE image_checks SET checked_at = %s, result = %s,"
            " license_id = COALESCE(%s, license_id) WHERE image_id = %s",
            [(now, v.result, v.license_id, v.image_id) for v in verdicts],
        )
        flagged = [(v.image_id, v.result, now, v.detail) for v in verdicts if v.result in FLAGS]
        if flagged:
            # `since` stays the first time it was seen; the detail is the latest.
            cur.executemany(
                "INSERT INTO image_flags (image_id, flag, since, detail) VALUES (%s, %s, %s, %s)"
                " ON DUPLICATE KEY UPDATE detail = VALUES(detail)",
                flagged,
            )
        # A photo is one of these at a time: the flags it no longer earns go.
        cleared = [(v.image_id, v.result or "") for v in verdicts if v.result is not None]
        cur.executemany("DELETE FROM image_flags WHERE image_id = %s AND flag <> %s", cleared)
    conn.commit()


def export_flags(conn, batch: int = 10_000) -> Iterator[dict]:
    """Every flagged photo with its catalog fields, by image id (keyset pages, no OFFSET;
    the flag's ENUM number orders the flags of one photo)."""
    last = (0, 0)
    with conn.cursor() as cur:
        while True:
            cur.execute(
                "SELECT f.image_id, f.flag + 0, f.flag, f.since, f.detail, i.photo_id,"
                " i.license_id, c.license_id, s.path FROM image_flags f"
                " JOIN images i ON i.id = f.image_id"
                " LEFT JOIN image_checks c ON c.image_id = f.image_id"
                " LEFT JOIN stored_images s ON s.image_id = f.image_id"
                " WHERE f.image_id >= %s AND (f.image_id, f.flag + 0) > (%s, %s)"
                " ORDER BY f.image_id, f.flag LIMIT %s",
                (last[0], *last, batch),
            )
            rows = cur.fetchall()
            conn.commit()
            for _, _, flag, since, detail, photo_id, license_id, checked, path in rows:
                yield {
                    "photo_id": int(photo_id),
                    "flag": flag,
                    "since": since.isoformat(sep=" "),
                    # The license Flickr reported last (a re-check), else the catalog's.
                    "license": int(checked if checked is not None else license_id),
                    "detail": detail,
                    "object": path,
                }
            if len(rows) < batch:
                return
            last = (int(rows[-1][0]), int(rows[-1][1]))


def recheck_missed(cur, task_id: int, licenses: str | None) -> None:
    """A re-harvest (generation > 1) that finished a time slice without seeing a photo it
    saw before: the photo left CC, was deleted or made private (a CC search shows none of them),
    so its re-check comes first (`checked_at` NULL sorts first). Runs in the task's last
    transaction; reads the source by its upload-time index, the catalog by its keys."""
    only = f" AND t.license_id IN ({licenses})" if licenses else ""
    cur.execute(
        "UPDATE image_checks c JOIN images i ON i.id = c.image_id"
        " JOIN flickr_timeslice_photos t ON t.photo_id = i.photo_id"
        " JOIN search_tasks s ON s.id = %s"
        " SET c.checked_at = NULL"
        f" WHERE t.uploaded_at BETWEEN s.min_upload AND s.max_upload{only}"
        " AND t.last_seen < s.created_at",
        (task_id,),
    )


def recheck_status(conn) -> dict:
    """The background re-check for `harvester status` and `batch.status`: photos flagged, by
    flag, and the oldest and newest check (epoch seconds, None before the first). Cheap on a
    500M catalog: image_flags is small, and MIN/MAX read the ends of image_checks' index."""
    with conn.cursor() as cur:
        cur.execute("SELECT flag, COUNT(*) FROM image_flags GROUP BY flag")
        flags = dict.fromkeys(FLAGS, 0) | {flag: int(n) for flag, n in cur.fetchall()}
        cur.execute(
            "SELECT UNIX_TIMESTAMP(MIN(checked_at)), UNIX_TIMESTAMP(MAX(checked_at))"
            " FROM image_checks"
        )
        oldest, newest = cur.fetchone()
    conn.commit()
    return {
        "flags": flags,
        "oldest_check": None if oldest is None else int(oldest),
        "last_check": None if newest is None else int(newest),
    }
