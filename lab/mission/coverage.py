"""The harvest's coverage: in time, how far behind now the catalog is (the operator's
`harvester status` line), and of the universe by safety level: signed calls see every level,
unsigned ones the safe photos only (Flickr: "Un-authed calls can only see Safe content").
Counted in what the API calls found, not in the catalog: the YFCC100M sample brings photos
of every level whatever the calls see."""

from __future__ import annotations

import time

from ccmirror_common.progress import format_catalog_lag, format_rechecks
from harvester.catalog.status import catalog_lag
from harvester.recheck.checks import recheck_status
from lab.sims.flickr.universe import MODERATE, RESTRICTED, SAFE

SAFETY_NAMES = {SAFE: "safe", MODERATE: "moderate", RESTRICTED: "restricted"}


def coverage_line(conn, truth_by_safety: dict[int, list[int]]) -> str:
    """`safe 2,550/2,550, moderate 300/300, restricted 150/150`: the photos the time-slice
    and search-text tasks found of each level, against the universe's CC photos of it."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT photo_id FROM flickr_timeslice_photos"
            " UNION SELECT photo_id FROM flickr_query_photos"
        )
        found = {row[0] for row in cur.fetchall()}
    conn.commit()
    return ", ".join(
        f"{SAFETY_NAMES[level]} {len(found.intersection(ids)):,}/{len(ids):,}"
        for level, ids in sorted(truth_by_safety.items())
    )


def recheck_line(conn) -> str:
    """`re-check: last check ..., oldest ...; flagged: not_cc 1, gone 0, private 0`."""
    return format_rechecks(recheck_status(conn))


def lag_line(conn) -> str:
    """`harvested up to 2013-06-01T00:49:59Z, 4571d04h behind now`, as `harvester status` says."""
    line = format_catalog_lag(catalog_lag(conn, int(time.time())))
    conn.commit()
    return line


def photos_by_source(cur) -> tuple[int, int, int]:
    """Rows in the time-slice, search-text and YFCC100M source tables."""
    cur.execute(
        "SELECT (SELECT COUNT(*) FROM flickr_timeslice_photos),"
        " (SELECT COUNT(*) FROM flickr_query_photos), (SELECT COUNT(*) FROM yfcc_photos)"
    )
    return cur.fetchone()
