"""The catalog's coverage of the universe by safety level: signed calls see every level,
unsigned ones the safe photos only (Flickr: "Un-authed calls can only see Safe content")."""

from __future__ import annotations

from lab.sims.flickr.universe import MODERATE, RESTRICTED, SAFE

SAFETY_NAMES = {SAFE: "safe", MODERATE: "moderate", RESTRICTED: "restricted"}


def coverage_line(conn, truth_by_safety: dict[int, list[int]]) -> str:
    """ "safe 2,550/2,550, moderate 300/300, restricted 150/150": the catalog's photos of each
    level against the universe's CC photos of that level."""
    with conn.cursor() as cur:
        cur.execute("SELECT photo_id FROM images")
        catalog = {row[0] for row in cur.fetchall()}
    return ", ".join(
        f"{SAFETY_NAMES[level]} {len(catalog.intersection(ids)):,}/{len(ids):,}"
        for level, ids in sorted(truth_by_safety.items())
    )
