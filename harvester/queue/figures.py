"""What the operator's page shows beyond the queue's counts: photos stored in the last hour and
day, the mirror's ETA at the last hour's rate, failed photos by class, the catalog's lag
behind now. Part of the status snapshot (harvester/queue/status.py), so `GET /v1/status`,
the page and `harvester queue-status` read the same figures.

No query here scans the catalog; each is as long as what it counts, whatever its size:
- stored in the last hour and 24 h: one index-only range of `stored_images_stored_at`
  (stored_at, image_id), as long as the photos stored in the last day;
- failures by class: the `failed` range of `images_state` (state, priority, id), then each
  failed photo's row (by primary key) for its `last_error`: as long as the failed photos;
- the catalog's lag: `harvested_until`, a few dives into search_tasks' indexes.
Per-droplet rates are the snapshot's worker rows (the leases reported in the last hour, by
`leases_report`). The storage's fill is not known to the queue: Prometheus has it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ccmirror_common.progress import mirror_eta_seconds
from harvester.catalog.status import catalog_lag

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
FAILURE_CLASSES = ("http 4xx", "http 5xx", "timeout", "verify", "other")
# `last_error` is "<result>: <why>" (harvester/queue/leases.py `_decide`), the why as the
# downloader words it (downloader/verify.py, downloader/fetch/); a fallback's error follows
# the first's, so the first one classes the photo. "verify": the bytes were refused.
_CLASS_OF_ERROR = """CASE
    WHEN last_error REGEXP '^[a-z]+: HTTP 4' THEN 'http 4xx'
    WHEN last_error REGEXP '^[a-z]+: HTTP 5' THEN 'http 5xx'
    WHEN last_error REGEXP '^[a-z]+: timeout' THEN 'timeout'
    WHEN last_error REGEXP
        '^[a-z]+: (not an image|too large|length not as announced|truncated body|malformed)'
        THEN 'verify'
    ELSE 'other' END"""
# The queries, each an index range (tests/integration/test_operator_page.py checks the plans).
STORED_SQL = (
    "SELECT COUNT(*), COALESCE(SUM(stored_at > %s), 0) FROM stored_images"
    " WHERE stored_at > %s AND stored_at <= %s"
)
FAILURES_SQL = (
    f"SELECT {_CLASS_OF_ERROR} AS class, COUNT(*) FROM images WHERE state = 'failed' GROUP BY class"
)


def stored_since(cur, now: datetime) -> tuple[int, int]:
    """Photos stored in the hour and in the day up to `now` (index-only range)."""
    cur.execute(STORED_SQL, (now - HOUR, now - DAY, now))
    day, hour = cur.fetchone()
    return int(hour), int(day)


def failures_by_class(cur) -> dict[str, int]:
    """Failed photos by the class of their last error, every class present (0 if none)."""
    cur.execute(FAILURES_SQL)
    return dict.fromkeys(FAILURE_CLASSES, 0) | {name: int(n) for name, n in cur.fetchall()}


def operator_figures(conn, now: datetime, to_do: int) -> dict:
    """The page's figures at `now` (naive UTC, as the queue's clock): `to_do` is the photos
    still to store (pending and leased)."""
    with conn.cursor() as cur:
        last_hour, last_day = stored_since(cur, now)
        failures = failures_by_class(cur)
    conn.commit()
    eta = mirror_eta_seconds(last_hour, to_do)
    return {
        "stored": {
            "last_hour": last_hour,
            "last_24h": last_day,
            "to_do": to_do,
            "eta_seconds": None if eta is None else round(eta),
        },
        "failures_by_class": failures,
        "catalog_lag": catalog_lag(conn, int(now.replace(tzinfo=UTC).timestamp())),
        "storage_fill": None,  # not known to the queue: see Prometheus
    }
