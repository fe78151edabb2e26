"""New uploads every day: seed the time slices from the last one seeded up to a lag behind
now, and say how far the harvested catalog reaches without a gap.

The lag (24 hours by default, `increment.lag_hours`): `flickr.photos.search` filters on the
upload second, and a slice is walked once, so whatever is not findable in it when it is walked
is missed until a re-harvest. A new upload is not findable at once: Flickr's search index
follows uploads by minutes to hours, and owners often set a photo's license, safety level and
privacy after uploading it, the license being what decides that we want it at all. A day
covers both with a margin, and costs the catalog one day of freshness; what changes later
than that is the re-checks' job, not this one's.

The slices are whole strides counted from where the last seeded slice ended (the highest
`max_upload` of every time-slice task, whatever its state; `increment.start` when there is
none), so a second run in the same stride seeds nothing, a run after a missed day seeds the
whole gap, and two runs at once make the same task keys (INSERT IGNORE keeps one of each).
One slice a day by default: the walk reads a slice newest first in windows under Flickr's
4,000-results cap, so a day costs near ceil(photos / 500) calls, where 144 ten-minute slices
would cost at least 144.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harvester.search.tasks import seed_timeslices

HOUR = 3600


@dataclass(frozen=True)
class Increment:
    """What one `seed increment` did: slices of `stride` over [start, end), `created` new."""

    start: int
    end: int
    stride: int
    horizon: int  # now - lag: no slice reaches past it
    created: int

    def as_dict(self) -> dict:
        return asdict(self)


def increment_range(
    last_seeded: int | None, default_start: int, horizon: int, stride: int
) -> tuple[int, int]:
    """[start, end): whole strides after the last seeded second, ending at or before
    `horizon`; empty (end == start) when not one whole stride fits yet."""
    start = default_start if last_seeded is None else last_seeded + 1
    return start, start + max(0, (horizon - start) // stride) * stride


def last_seeded(conn) -> int | None:
    """The last upload second any time-slice task covers (an index dive: search_tasks_reach)."""
    with conn.cursor() as cur:
        cur.execute("SELECT MAX(max_upload) FROM search_tasks WHERE source = 'timeslice'")
        (last,) = cur.fetchone()
    conn.commit()
    return None if last is None else int(last)


def seed_increment(
    conn, *, now: int, lag_seconds: int, stride: int, default_start: int
) -> Increment:
    horizon = now - lag_seconds
    start, end = increment_range(last_seeded(conn), default_start, horizon, stride)
    created = seed_timeslices(conn, start, end, stride) if end > start else 0
    return Increment(start, end, stride, horizon, created)


UNFINISHED = ("pending", "running", "failed")
# The end of what the top-level slices cover before their first gap (None: no gap). Top-level
# slices never overlap (seed_timeslices refuses it), so the slice before is the reach.
FIRST_GAP_SQL = """
SELECT MIN(before_end) FROM (
    SELECT min_upload, LAG(max_upload) OVER (ORDER BY min_upload) AS before_end
    FROM search_tasks WHERE source = 'timeslice' AND parent_id IS NULL
) slices
WHERE min_upload > before_end + 1
"""


def harvested_until(conn) -> int | None:
    """The last upload second up to which every time slice, from the first on, is harvested
    with no gap: before the first task not done (a split-off child included) and before the
    first gap; None when the first slice is not done yet (or none is seeded)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT MIN(min_upload), MAX(max_upload) FROM search_tasks"
            " WHERE source = 'timeslice' AND parent_id IS NULL"
        )
        first, last = cur.fetchone()
        if first is None:
            conn.commit()
            return None
        ends = [int(last)]
        for state in UNFINISHED:  # one index dive each (search_tasks_open)
            cur.execute(
                "SELECT MIN(min_upload) - 1 FROM search_tasks"
                " WHERE source = 'timeslice' AND state = %s",
                (state,),
            )
            ends.append(cur.fetchone()[0])
        cur.execute(FIRST_GAP_SQL)
        ends.append(cur.fetchone()[0])
    conn.commit()
    until = min(int(end) for end in ends if end is not None)
    return until if until >= int(first) else None
