"""The operator's page on a real MariaDB catalog with known counts: the words ("mirrored" is
what is stored; failed, gone, pending, leased, in backoff apart), stored per hour, the mirror's
ETA, per-droplet rates, failures by class and the catalog's lag, at an injected `now`; the
same words in `harvester status` and `harvester queue-status`; and the page served by a real
`harvester serve`, as headless Chromium renders it, with a screenshot in the test's folder."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harvester.catalog.status import format_status, harvest_status
from harvester.db import connect
from harvester.queue.figures import FAILURES_SQL, STORED_SQL
from harvester.queue.page import render_status_page
from harvester.queue.status import queue_status
from harvester.queue.status_client import format_queue_status
from harvester.search.licenses import store_licenses
from lab.mission.catalog_images import fill_images
from lab.processes.queue import spawn
from tests.integration.test_queue_service import CC_BY, CC_BY_4, CHROMIUM, page_text, visible_text

NOW = datetime(2026, 3, 1, 12, 0, 0)  # the queue's clock: naive UTC
WORKERS = ["dl-1", "dl-2", "dl-3"]
# Failed photos 41-48 and the class each one's error falls in.
FAILED = {
    41: ("retry: HTTP 503", "http 5xx"),
    42: ("retry: HTTP 502; fallback: HTTP 503", "http 5xx"),
    43: ("bad: HTTP 400", "http 4xx"),
    44: ("retry: timeout (total 60s, read 30s)", "timeout"),
    45: ("bad: not an image: starts with b'<html>'", "verify"),
    46: ("bad: length not as announced: 10 of 20 bytes", "verify"),
    47: ("retry: connection: refused", "other"),
    48: (None, "other"),
}
HEADLINE = "41.2% mirrored (40 of 97 CC photos stored)"
LINE = (
    f"{HEADLINE}; failed 8, gone 5, pending 35, leased 5, in backoff 4;"
    " not counted: taken down 1, no longer CC 2"
)


def build_catalog(db_url: str, now: datetime) -> None:
    """100 photos: 40 stored (10 in the hour before `now`, 15 more in the day, 15 before),
    8 failed, 5 gone, 1 taken down, 2 withdrawn, 5 leased to dl-1, 4 in backoff, 35
    pending. Leases reported in the last hour: dl-1 7 stored and 3 failed, dl-2 3 stored;
    dl-3 stored 9 two hours ago. Time slices done up to 2 days and an hour before `now`."""
    conn = connect(db_url)
    store_licenses(conn, [CC_BY, CC_BY_4])
    fill_images(conn, 100)
    with conn.cursor() as cur:
        cur.execute("UPDATE images SET state = 'stored' WHERE id <= 40")
        for first, last, ago in ((1, 10, timedelta(minutes=30)), (11, 25, timedelta(hours=5))):
            store(cur, first, last, now - ago)
        store(cur, 26, 40, now - timedelta(hours=30))
        for image_id, (error, _) in FAILED.items():
            cur.execute(
                "UPDATE images SET state = 'failed', last_error = %s WHERE id = %s",
                (error, image_id),
            )
        cur.execute("UPDATE images SET state = 'gone', last_error = 'gone: HTTP 404'"
                    " WHERE id BETWEEN 49 AND 53")  # fmt: skip
        cur.execute("UPDATE images SET state = 'taken_down' WHERE id = 54")
        cur.execute("UPDATE images SET state = 'withdrawn' WHERE id IN (55, 56)")
        held = add_lease(cur, "dl-1", "active", range(57, 62), now - timedelta(minutes=20))
        cur.execute("UPDATE images SET lease_id = %s WHERE id BETWEEN 57 AND 61", (held,))
        parked = add_lease(cur, "~backoff", "backoff", range(62, 66), now)
        cur.execute("UPDATE images SET lease_id = %s WHERE id BETWEEN 62 AND 65", (parked,))
        for worker, stored, failed, ago in (
            ("dl-1", 7, 3, timedelta(minutes=10)),
            ("dl-2", 3, 0, timedelta(minutes=50)),
            ("dl-3", 9, 0, timedelta(hours=2)),
        ):
            lease_id = add_lease(cur, worker, "done", range(stored + failed), now - ago)
            cur.execute(
                "UPDATE leases SET reported = items, stored = %s, failed = %s,"
                " last_report_at = %s WHERE id = %s",
                (stored, failed, now - ago, lease_id),
            )
        add_slices(cur, epoch(now) - 2 * 86400 - 3600)
    conn.commit()
    conn.close()


def store(cur, first: int, last: int, at: datetime) -> None:
    cur.execute(
        "INSERT INTO stored_images (image_id, sha256, bytes, path, worker, lease_id, stored_at)"
        " SELECT id, UNHEX(SHA2(id, 256)), 10, CONCAT(id, '.jpg'), 'dl-1', 1, %s"
        " FROM images WHERE id BETWEEN %s AND %s",
        (at, first, last),
    )


def add_lease(cur, worker: str, state: str, ids: range, created: datetime) -> int:
    cur.execute(
        "INSERT INTO leases (worker, state, items, item_ids, created_at, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (worker, state, len(ids), ",".join(map(str, ids)), created, created + timedelta(hours=1)),
    )
    return cur.lastrowid


def add_slices(cur, done_until: int) -> None:
    """Two done hour-long time slices ending at `done_until`, and a pending one after them."""
    for n, state in enumerate(("done", "done", "pending")):
        start = done_until - 7199 + 3600 * n
        cur.execute(
            "INSERT INTO search_tasks (task_key, source, min_upload, max_upload, state,"
            " cursor_max_upload) VALUES (%s, 'timeslice', %s, %s, %s, %s)",
            (f"slice-{n}", start, start + 3599, state, start + 3599),
        )


def epoch(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp())


@pytest.fixture
def catalog(db_url: str) -> str:
    build_catalog(db_url, NOW)
    return db_url


def snapshot(db_url: str, now: datetime) -> dict:
    conn = connect(db_url)
    try:
        return queue_status(conn, now, WORKERS, maintenance=False)
    finally:
        conn.close()


def test_the_snapshot_counts_what_the_catalog_holds(catalog):
    status = snapshot(catalog, NOW)
    mirror = status["mirror"]
    assert mirror["mirrored"] == round(40 / 97, 6) and status["mirrored"] == mirror["mirrored"]
    assert {k: mirror[k] for k in ("stored", "of", "failed", "gone", "pending")} == {
        "stored": 40,
        "of": 97,
        "failed": 8,
        "gone": 5,
        "pending": 35,
    }
    assert (mirror["leased"], mirror["in_backoff"], mirror["taken_down"]) == (5, 4, 1)
    assert mirror["withdrawn"] == 2
    # 44 photos still to store (35 pending, 5 leased, 4 in backoff) at 10 an hour: 4.4 h.
    assert status["stored"] == {"last_hour": 10, "last_24h": 25, "to_do": 44, "eta_seconds": 15840}
    assert status["failures_by_class"] == {
        "http 4xx": 1,
        "http 5xx": 2,
        "timeout": 1,
        "verify": 2,
        "other": 2,
    }
    rates = {w["worker"]: (w["stored_1h"], w["failed_1h"]) for w in status["workers"]}
    assert rates == {"dl-1": (7, 3), "dl-2": (3, 0), "dl-3": (0, 0)}
    assert status["catalog_lag"]["lag_seconds"] == 2 * 86400 + 3600
    assert status["storage_fill"] is None


def test_the_page_and_both_commands_say_the_same_words(catalog):
    status = snapshot(catalog, NOW)
    page = visible_text(render_status_page(status))
    assert HEADLINE in page and LINE in page
    assert "stored in the last hour 10 stored in the last 24 h 25" in page
    assert "ETA of the mirror (44 photos pending or leased) at 10/h: 4h24m" in page
    assert "2d01h behind now" in page and "storage fill see Prometheus" in page
    assert "http 4xx 1 http 5xx 2 timeout 1 verify 2 other 2" in page
    assert "dl-1 7 3" in page and "dl-2 3 0" in page and "dl-3 0 0" in page
    assert "100.0%" not in page  # the old page's word for "settled"

    conn = connect(catalog)
    harvest = format_status(harvest_status(conn, now=epoch(NOW)))
    conn.close()
    assert f"catalog: {LINE}" in harvest.splitlines()
    queue = format_queue_status(status).splitlines()
    assert f"photos: {LINE}" in queue
    assert "stored 10 in the last hour, 25 in 24 h; at 10/h: 4h24m" in queue


def test_with_nothing_stored_in_the_last_hour_there_is_no_eta(catalog):
    later = NOW + timedelta(hours=2)
    status = snapshot(catalog, later)
    assert status["stored"] == {"last_hour": 0, "last_24h": 25, "to_do": 44, "eta_seconds": None}
    page = visible_text(render_status_page(status))
    assert "no ETA: nothing stored in the last hour" in page
    # Two hours on, no droplet reported in the last hour: every rate is 0, dl-3's included.
    assert {w["worker"]: w["stored_1h"] for w in status["workers"]} == dict.fromkeys(WORKERS, 0)
    assert "dl-1 0 0" in page and "dl-3 0 0" in page


def test_the_served_page_in_headless_chromium(db_url, tmp_path: Path):
    # The real service reads its own clock: the catalog is built around it.
    build_catalog(db_url, datetime.now(UTC).replace(tzinfo=None))
    queue = spawn(db_url, tmp_path / "queue", WORKERS)
    try:
        text = page_text(queue.url + "/")
        assert LINE in text
        assert "at 10/h: 4h24m" in text and "2d01h behind now" in text
        assert "http 4xx 1 http 5xx 2 timeout 1 verify 2 other 2" in text
        assert "dl-1 7 3" in text and "dl-2 3 0" in text
        shot = tmp_path / "operator-page.png"
        screenshot = [a for a in CHROMIUM if a != "--dump-dom"]
        result = subprocess.run(
            [*screenshot, f"--screenshot={shot}", "--window-size=1100,1700", queue.url + "/"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        queue.stop()


def test_an_empty_catalog_reads_plainly(db_url):
    status = snapshot(db_url, NOW)
    page = visible_text(render_status_page(status))
    assert "0.0% mirrored (0 of 0 CC photos stored)" in page
    assert "nothing left to store" in page and "harvested up to: nothing yet" in page
    assert "no workers yet" not in page and "dl-1 0 0 0 0.0 never" in page


def test_the_page_queries_read_an_index_range_not_the_catalog(catalog, sql):
    """What keeps a snapshot cheap on a 6M-row catalog: each query's plan names its index."""
    hour, day = timedelta(hours=1), timedelta(days=1)
    stored = sql("EXPLAIN " + STORED_SQL, NOW - hour, NOW - day, NOW)
    assert stored[0][5] == "stored_images_stored_at" and "Using index" in stored[0][9], stored
    failed = sql("EXPLAIN " + FAILURES_SQL)
    assert failed[0][3] == "ref" and failed[0][5] == "images_state", failed
