"""`harvester status`: what the harvest has done, from the database, and whether this
machine's Flickr key signs its calls (an unsigned key sees safe photos only)."""

from __future__ import annotations

import time

from ccmirror_common.progress import format_catalog_lag, format_mirrored, format_rechecks
from harvester.audit.storage import audit_line, last_audit
from harvester.catalog.reconcile import image_counts
from harvester.config import FlickrSettings
from harvester.migrate import current_version
from harvester.queue.backoff import items_in_backoff
from harvester.recheck.checks import recheck_status
from harvester.search.increment import harvested_until
from harvester.search.photos import SOURCE_TABLES
from harvester.search.tasks import counts_by_state

TASK_STATES = ("pending", "running", "done", "failed")
RATE_WINDOW_MINUTES = 5


UNSIGNED_WARNING = (
    "WARNING: this machine's Flickr key does not sign its calls: coverage is safe photos only "
    "(set flickr.api_secret, flickr.oauth_token, flickr.oauth_token_secret; `harvester "
    "flickr-auth` makes the token)"
)
EXACT_COUNT_LIMIT = 2_000_000  # above this, COUNT(*) scans too long for a status command


def row_count(cur, table: str) -> tuple[int, bool]:
    """Rows in `table`, and whether the count is exact: InnoDB's own estimate is used for
    tables too large to count while an operator waits."""
    cur.execute(
        "SELECT TABLE_ROWS FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (table,),
    )
    estimate = int(cur.fetchone()[0] or 0)
    if estimate > EXACT_COUNT_LIMIT:
        return estimate, False
    cur.execute(f"SELECT COUNT(*) FROM {table}")
    return int(cur.fetchone()[0]), True


def flickr_signing(flickr: FlickrSettings | None) -> str:
    """ "signed" (every safety level), "unsigned" (safe photos only) or "no key" (a machine
    that does not harvest, such as the database server); a partial set of signing
    credentials is a ConfigError."""
    if flickr is not None:
        flickr.check_signing()
    if flickr is None or not flickr.api_key:
        return "no key"
    return "signed" if flickr.signed else "unsigned"


def catalog_lag(conn, now: int) -> dict:
    """How far behind `now` the catalog is: the last upload second the done time slices
    reach from the first without a gap, and `now` minus that (None before the first)."""
    until = harvested_until(conn)
    return {"harvested_until": until, "lag_seconds": None if until is None else now - until}


def harvest_status(conn, flickr: FlickrSettings | None = None, now: int | None = None) -> dict:
    tasks = dict.fromkeys(TASK_STATES, 0) | counts_by_state(conn)
    with conn.cursor() as cur:
        photos, estimated = {}, []
        for source, table in {**SOURCE_TABLES, "yfcc": "yfcc_photos"}.items():
            photos[source], exact = row_count(cur, table)
            if not exact:
                estimated.append(source)
        cur.execute(
            "SELECT COALESCE(SUM(calls), 0), COALESCE(SUM(photos), 0) FROM api_call_minutes"
        )
        calls, photos_fetched = (int(v) for v in cur.fetchone())
        # The current minute is partial: the rate is over the last full minutes and this one.
        cur.execute(
            "SELECT COALESCE(SUM(calls), 0), COALESCE(SUM(photos), 0),"
            " TIMESTAMPDIFF(SECOND, MIN(minute), UTC_TIMESTAMP()) FROM api_call_minutes"
            " WHERE minute >= UTC_TIMESTAMP() - INTERVAL %s MINUTE",
            (RATE_WINDOW_MINUTES,),
        )
        recent_calls, recent_photos, span = cur.fetchone()
        cur.execute("SELECT COUNT(*) FROM licenses WHERE is_cc")
        cc_licenses = int(cur.fetchone()[0])
        in_backoff = items_in_backoff(cur)
    conn.commit()
    images = image_counts(conn)
    span = max(int(span or 0), 60)
    return {
        "schema_version": current_version(conn),
        "tasks": tasks,
        "photos": photos,
        "photos_estimated": estimated,
        "images": images,
        "items_in_backoff": in_backoff,  # pending photos waiting out a retry's backoff
        "api_calls": calls,
        "photos_fetched": photos_fetched,
        "calls_per_second": round(int(recent_calls) / span, 2),
        "photos_per_second": round(int(recent_photos) / span, 1),
        "cc_licenses": cc_licenses,
        "storage_audit": last_audit(conn),
        "flickr_calls": flickr_signing(flickr),
        "catalog_lag": catalog_lag(conn, int(time.time()) if now is None else now),
        "rechecks": recheck_status(conn),
    }


def format_status(status: dict) -> str:
    tasks = status["tasks"]
    total = sum(tasks.values())
    lines = [
        f"search tasks: {total:,} ("
        + ", ".join(f"{state} {tasks[state]:,}" for state in TASK_STATES)
        + ")",
        "photos: "
        + ", ".join(
            f"{src} {'~' if src in status['photos_estimated'] else ''}{n:,}"
            for src, n in status["photos"].items()
        ),
        f"API calls: {status['api_calls']:,}, now {status['calls_per_second']} calls/s,"
        f" {status['photos_per_second']} photos/s",
        # The catalog by state in the words of the queue's page (ccmirror_common/progress.py).
        "catalog: " + format_mirrored(status["images"], status.get("items_in_backoff")),
        f"CC licenses known: {status['cc_licenses']}; schema version {status['schema_version']}",
        f"storage audit: {audit_line(status.get('storage_audit'))}",
        format_catalog_lag(status.get("catalog_lag")),
        format_rechecks(status.get("rechecks")),
    ]
    if status.get("flickr_calls") == "unsigned":
        lines.append(UNSIGNED_WARNING)
    return "\n".join(lines)
