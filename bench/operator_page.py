"""What one status snapshot (the operator's page, `/v1/status`, `/metrics`) costs on a large
catalog, one run: each part timed alone, and its query plan.

A catalog of N photos (`lab.mission.catalog_images.fill_images`): 60% stored, spread evenly
over the last 10 days in `stored_images` (a day holds 6% of the catalog), 1% failed with
errors of every class, 0.5% gone, the rest pending; leases of 20 workers reported over the
last two hours. Then the snapshot (harvester/queue/status.py `queue_status`) and its parts,
each the best of `--runs`.

    .venv/bin/python bench/operator_page.py [--photos 6000000] [--runs 3]
        (MariaDB: CCMIRROR_TEST_DB_PORT / CCMIRROR_TEST_MARIADB_DIR as the tests use them)
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from harvester.catalog.reconcile import image_counts
from harvester.db import connect
from harvester.migrate import migrate
from harvester.queue.figures import FAILURES_SQL, STORED_SQL, failures_by_class, stored_since
from harvester.queue.status import queue_status
from lab.mission.catalog_images import fill_images
from lab.processes.mariadb import LocalMariaDB

NOW = datetime(2026, 3, 1, 12, 0, 0)
ERRORS = (
    "retry: HTTP 503",
    "bad: HTTP 400",
    "retry: timeout (total 60s, read 30s)",
    "bad: not an image: starts with b'<html>'",
    "retry: connection: refused",
)
WORKERS = [f"dl-{n}" for n in range(1, 21)]


def build(conn, photos: int) -> None:
    fill_images(conn, photos)
    stored, failed, gone = int(photos * 0.6), int(photos * 0.01), int(photos * 0.005)
    spread = 10 * 86400  # seconds over which the stored photos were stored
    with conn.cursor() as cur:
        cur.execute("UPDATE images SET state = 'stored' WHERE id <= %s", (stored,))
        conn.commit()
        cur.execute(
            "INSERT INTO stored_images (image_id, sha256, bytes, path, worker, lease_id, stored_at)"
            " SELECT id, UNHEX(SHA2(id, 256)), 10, CONCAT(id, '.jpg'),"
            " CONCAT('dl-', 1 + id MOD 20), 0,"
            " %s - INTERVAL (%s - id * %s DIV %s) SECOND FROM images WHERE id <= %s",
            (NOW, spread, spread, stored, stored),
        )
        conn.commit()
        cur.execute(
            "UPDATE images SET state = 'failed', last_error = ELT(1 + id MOD 5, %s, %s, %s, %s, %s)"
            " WHERE id > %s AND id <= %s",
            (*ERRORS, stored, stored + failed),
        )
        cur.execute(
            "UPDATE images SET state = 'gone', last_error = 'gone: HTTP 404'"
            " WHERE id > %s AND id <= %s",
            (stored + failed, stored + failed + gone),
        )
        for n in range(2 * 60 * len(WORKERS)):  # a lease a minute per worker for two hours
            at = NOW - timedelta(minutes=n // len(WORKERS))
            cur.execute(
                "INSERT INTO leases (worker, state, items, item_ids, reported, stored, created_at,"
                " expires_at, last_report_at) VALUES (%s, 'done', 100, '1', 100, 100, %s, %s, %s)",
                (WORKERS[n % len(WORKERS)], at, at, at),
            )
    conn.commit()


def best(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=6_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    db = LocalMariaDB(
        Path(os.environ.get("CCMIRROR_TEST_MARIADB_DIR", "/tmp/ccmirror-test-mariadb")),
        port=int(os.environ.get("CCMIRROR_TEST_DB_PORT", "13306")),
    )
    started = db.ensure_running()
    name = f"bench_operator_{os.getpid()}"
    conn = connect(db.fresh_database(name))
    try:
        migrate(conn)
        began = time.perf_counter()
        build(conn, args.photos)
        print(f"catalog of {args.photos:,} photos built in {time.perf_counter() - began:.0f} s")
        with conn.cursor() as cur:
            for label, sql, params in (
                (
                    "stored per hour",
                    STORED_SQL,
                    (NOW - timedelta(hours=1), NOW - timedelta(days=1), NOW),
                ),
                ("failures by class", FAILURES_SQL, ()),
            ):
                cur.execute("EXPLAIN " + sql, params)
                plan = cur.fetchone()
                print(f"{label}: key {plan[5]}, type {plan[3]}, rows ~{plan[8]}, {plan[9]}")

        def parts(cur) -> dict[str, Callable[[], object]]:
            return {
                "counts by state (as before)": lambda: image_counts(conn),
                "stored in 1 h and 24 h": lambda: stored_since(cur, NOW),
                "failures by class": lambda: failures_by_class(cur),
                "whole snapshot": lambda: queue_status(conn, NOW, WORKERS, False),
            }

        with conn.cursor() as cur:
            for label, work in parts(cur).items():
                print(f"{label}: {best(args.runs, work) * 1000:.0f} ms")
        status = queue_status(conn, NOW, WORKERS, False)
        print(f"stored: {status['stored']}, failures: {status['failures_by_class']}")
    finally:
        conn.close()  # before the drop, which waits for its metadata locks
        db.drop_database(name)
        if started:
            db.stop()


if __name__ == "__main__":
    main()
