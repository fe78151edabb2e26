"""`harvester reconcile`: every source merged into one catalog row per photo."""

from __future__ import annotations

import itertools
import json
import subprocess
import threading

import pymysql
import pytest

from harvester.catalog.reconcile import reconcile
from harvester.db import connect
from lab.mission.catalog_sample import fill_sources
from tests.conftest import VENV_BIN, harvester_env, run_harvester, wait_for

SOURCE_TABLES = {
    "timeslice": "flickr_timeslice_photos",
    "query": "flickr_query_photos",
    "yfcc": "yfcc_photos",
}


def add(
    sql,
    source: str,
    photo_id: int,
    license_id: int = 4,
    title: str = "title",
    seen: str = "2026-01-01",
    image_url: str | None = None,
) -> None:
    """One source row, as the harvester or the YFCC import would have written it."""
    url = image_url or f"https://live.staticflickr.com/1/{photo_id}_{source}_o.jpg"
    page = f"https://www.flickr.com/photos/1@N01/{photo_id}/"
    if source == "yfcc":
        sql(
            "INSERT INTO yfcc_photos (photo_id, owner, owner_name, title, license_id, page_url,"
            " image_url, image_size, fallback_url, uploaded_at, last_seen)"
            " VALUES (%s, '1@N01', 'owner', %s, %s, %s, %s, 'o', %s, 1100000000, %s)"
            " ON DUPLICATE KEY UPDATE title = VALUES(title), license_id = VALUES(license_id),"
            " last_seen = VALUES(last_seen)",
            photo_id,
            title,
            license_id,
            page,
            url,
            url.replace("_o.", "."),
            seen,
        )
    else:
        sql(
            f"INSERT INTO {SOURCE_TABLES[source]} (photo_id, owner, owner_name, title,"
            " license_id, page_url, image_url, image_size, width, height, uploaded_at,"
            " task_id, last_seen) VALUES (%s, '1@N01', 'owner', %s, %s, %s, %s, 'o', 800, 600,"
            " 1100000000, 1, %s) ON DUPLICATE KEY UPDATE title = VALUES(title),"
            " license_id = VALUES(license_id), last_seen = VALUES(last_seen),"
            " image_url = VALUES(image_url)",
            photo_id,
            title,
            license_id,
            page,
            url,
            seen,
        )


def fill(db_url: str, photos: int) -> None:
    conn = connect(db_url)
    try:
        fill_sources(conn, photos)
    finally:
        conn.close()


def run_reconcile(db_url: str, **kwargs):
    return reconcile(db_url, **kwargs)


def catalog(sql) -> dict[int, dict]:
    rows = sql(
        "SELECT photo_id, title, license_id, sources, data_source, state, fallback_url,"
        " image_url, (SELECT COUNT(*) FROM image_license_changes c"
        "  WHERE c.photo_id = images.photo_id) FROM images"
    )
    keys = (
        "title",
        "license_id",
        "sources",
        "data_source",
        "state",
        "fallback_url",
        "image_url",
        "license_changes",
    )
    return {row[0]: dict(zip(keys, row[1:], strict=True)) for row in rows}


def test_overlapping_sources_become_one_row_per_photo_with_api_data_first(db_url, sql):
    add(sql, "timeslice", 1)
    add(sql, "timeslice", 2, title="api title")
    add(sql, "yfcc", 2, title="2014 title", seen="2014-06-01")
    add(sql, "timeslice", 3, title="older", seen="2026-01-01")
    add(sql, "query", 3, title="newer", seen="2026-02-01")
    add(sql, "yfcc", 4, title="only in 2014")
    for source in SOURCE_TABLES:
        add(sql, source, 5, title=f"from {source}", seen="2025-01-01")

    stats = run_reconcile(db_url)
    assert (stats.inserted, stats.updated, stats.license_changes) == (5, 0, 0)
    images = catalog(sql)
    assert sorted(images) == [1, 2, 3, 4, 5]
    assert images[1]["sources"] == "timeslice" and images[1]["fallback_url"] is None
    assert images[2]["title"] == "api title" and images[2]["sources"] == "timeslice,yfcc"
    assert images[2]["data_source"] == "timeslice"
    assert images[2]["fallback_url"] == "https://live.staticflickr.com/1/2_yfcc.jpg"
    assert images[3]["title"] == "newer" and images[3]["data_source"] == "query"
    assert images[4]["title"] == "only in 2014" and images[4]["data_source"] == "yfcc"
    assert images[5]["sources"] == "timeslice,query,yfcc"
    assert images[5]["data_source"] == "timeslice"  # same last_seen: time slices first
    assert {i["state"] for i in images.values()} == {"pending"}
    counts = run_harvester("status", "--json", env=harvester_env(db_url))
    assert json.loads(counts.stdout)["images"] == {"pending": 5}


def test_every_combination_of_sources_is_one_row_with_the_first_sources_fields(db_url, sql):
    """Whichever sources saw a photo, it is merged once (each source's rows are walked by
    their own statement, so a photo two of them have must be taken by one only)."""
    names = list(SOURCE_TABLES)
    combos = [c for r in (1, 2, 3) for c in itertools.combinations(names, r)]
    for photo_id, combo in enumerate(combos, start=1):
        for source in combo:
            seen = "2014-06-01" if source == "yfcc" else "2026-01-01"
            add(sql, source, photo_id, title=f"{source} {photo_id}", seen=seen)

    stats = run_reconcile(db_url)
    assert (stats.inserted, stats.updated) == (len(combos), 0)
    images = catalog(sql)
    assert sorted(images) == list(range(1, len(combos) + 1))
    for photo_id, combo in enumerate(combos, start=1):
        # Time slices over queries on the same last_seen, and either over YFCC100M.
        assert images[photo_id]["sources"] == ",".join(combo)
        assert images[photo_id]["data_source"] == combo[0]
        assert images[photo_id]["title"] == f"{combo[0]} {photo_id}"
    assert run_reconcile(db_url).updated == 0


def test_license_changes_are_recorded_and_a_photo_no_longer_cc_leaves_the_queue(db_url, sql):
    add(sql, "yfcc", 10, license_id=2, seen="2014-06-01")
    add(sql, "yfcc", 11, license_id=4, seen="2014-06-01")
    add(sql, "yfcc", 12, license_id=4, seen="2014-06-01")
    add(sql, "yfcc", 13, license_id=4, seen="2014-06-01")
    run_reconcile(db_url)
    sql("UPDATE images SET state = 'stored' WHERE photo_id = 12")
    sql("UPDATE images SET lease_id = 77 WHERE photo_id = 13")  # a downloader is fetching it

    add(sql, "timeslice", 10, license_id=4)  # CC to CC
    add(sql, "timeslice", 11, license_id=0)  # no longer CC, still pending
    add(sql, "timeslice", 12, license_id=0, title="renamed")  # no longer CC, already stored
    add(sql, "timeslice", 13, license_id=0)  # no longer CC, leased
    stats = run_reconcile(db_url)
    assert stats.license_changes == 4
    images = catalog(sql)
    assert (images[10]["license_id"], images[10]["state"]) == (4, "pending")
    assert (images[11]["license_id"], images[11]["state"]) == (0, "withdrawn")
    # A stored photo is never reset, and keeps the URL its bytes came from.
    assert (images[12]["state"], images[12]["title"]) == ("stored", "renamed")
    assert images[12]["image_url"] == "https://live.staticflickr.com/1/12_yfcc_o.jpg"
    # A leased photo is left to its lease: the report (or the lease's expiry) settles it.
    assert (images[13]["state"], images[13]["license_id"]) == ("pending", 0)
    assert images[13]["image_url"] == "https://live.staticflickr.com/1/13_yfcc_o.jpg"
    assert {i["license_changes"] for i in images.values()} == {1}
    changes = sql(
        "SELECT photo_id, old_license_id, new_license_id, source, state_before"
        " FROM image_license_changes ORDER BY photo_id"
    )
    assert changes == [
        (10, 2, 4, "timeslice", "pending"),
        (11, 4, 0, "timeslice", "pending"),
        (12, 4, 0, "timeslice", "stored"),
        (13, 4, 0, "timeslice", "pending"),
    ]

    add(sql, "timeslice", 11, license_id=5, seen="2026-03-01")  # CC again: back in the queue
    run_reconcile(db_url)
    assert catalog(sql)[11]["state"] == "pending"


def test_a_second_pass_changes_nothing(db_url, sql):
    fill(db_url, 30_000)
    first = run_reconcile(db_url, batch_size=4000)
    assert first.inserted == 30_000 and first.batches >= 5
    checksum = sql("CHECKSUM TABLE images")[0][1]
    changes = sql("SELECT COUNT(*) FROM image_license_changes")[0][0]
    again = run_reconcile(db_url, batch_size=4000)
    assert (again.inserted, again.updated, again.license_changes) == (0, 0, 0)
    assert sql("CHECKSUM TABLE images")[0][1] == checksum
    assert sql("SELECT COUNT(*) FROM image_license_changes")[0][0] == changes
    # The sample's expectations: every photo once, sources as generated.
    assert sql("SELECT sources, COUNT(*) FROM images GROUP BY sources ORDER BY sources") == [
        ("yfcc", 8_000),
        ("timeslice,yfcc", 16_000),
        ("query,yfcc", 2_000),
        ("timeslice,query,yfcc", 4_000),
    ]


def content(sql) -> list[tuple]:
    return sql(
        "SELECT photo_id, owner, owner_name, title, license_id, page_url, image_url,"
        " image_size, fallback_url, width, height, uploaded_at, sources, data_source,"
        " state FROM images ORDER BY photo_id"
    )


def test_a_killed_reconcile_run_again_ends_as_if_never_interrupted(mariadb, db_url, sql):
    fill(db_url, 60_000)
    env = harvester_env(db_url)
    proc = subprocess.Popen(
        [str(VENV_BIN / "harvester"), "reconcile", "--batch-size", "1000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(
        lambda: (sql("SELECT MAX(batches) FROM reconcile_runs")[0][0] or 0) >= 5,
        60,
        "a few batches",
    )
    proc.kill()
    proc.wait()
    total = sql("SELECT COUNT(*) FROM images")[0][0]
    assert 0 < total < 60_000, "the kill landed after the pass ended"
    # Whole batches only (every photo is in YFCC: a batch is 1,000 photos); the resume point
    # may lag behind the last committed batches, which are then applied again.
    assert total % 1000 == 0 and total >= sql("SELECT inserted FROM reconcile_runs")[0][0]

    result = run_harvester("reconcile", "--batch-size", "1000", env=env)
    assert result.returncode == 0, result.stderr
    assert "resum" in result.stderr + result.stdout
    interrupted = content(sql)

    # The same sources reconciled in one go, in a fresh database.
    sql("DELETE FROM images")
    sql("DELETE FROM reconcile_runs")
    assert run_harvester("reconcile", env=env).returncode == 0
    assert content(sql) == interrupted and len(interrupted) == 60_000


def test_the_queue_keeps_updating_the_catalog_while_reconcile_runs(db_url, sql):
    fill(db_url, 100_000)
    run_reconcile(db_url, batch_size=20_000)
    sql("UPDATE flickr_timeslice_photos SET title = CONCAT(title, '!')")  # every row changes
    errors: list[Exception] = []
    stop = threading.Event()

    def queue_like_updates() -> None:
        conn = connect(db_url, autocommit=True)
        with conn.cursor() as cur:
            # Far below the default 50 s: a pass in one long transaction (not bounded batches)
            # holds these rows for longer and makes the queue's updates time out.
            cur.execute("SET SESSION innodb_lock_wait_timeout = 4")
            while not stop.is_set():
                try:
                    cur.execute(
                        "UPDATE images SET updated_at = NOW(6) WHERE state = 'pending'"
                        " ORDER BY RAND() LIMIT 20"
                    )
                except pymysql.err.OperationalError as exc:
                    errors.append(exc)
        conn.close()

    worker = threading.Thread(target=queue_like_updates)
    worker.start()
    try:
        stats = run_reconcile(db_url, batch_size=10_000)
    finally:
        stop.set()
        worker.join()
    # Every time-slice title changed; the photos whose newest data is a query row keep theirs.
    assert stats.updated == 60_000
    # Bounded transactions (100,000 photos of each source in batches of 10,000), and not one
    # queue update waited its lock out.
    assert stats.batches >= 10
    assert not errors, errors[:1]


@pytest.mark.parametrize(
    "args, message",
    [
        (("reconcile", "--batch-size", "0"), "must be a positive whole number"),
        (("reconcile", "--bogus"), "unrecognized arguments"),
    ],
)
def test_bad_reconcile_arguments_are_one_line(db_url, sql, args, message):
    result = run_harvester(*args, env=harvester_env(db_url))
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sql("SELECT COUNT(*) FROM reconcile_runs")[0][0] == 0


def test_a_stored_photo_with_newer_image_data_is_left_alone_on_later_passes(db_url, sql):
    add(sql, "yfcc", 20, seen="2014-06-01")
    run_reconcile(db_url)
    sql("UPDATE images SET state = 'stored' WHERE photo_id = 20")
    add(sql, "timeslice", 20, image_url="https://live.staticflickr.com/2/20_new_o.jpg")
    assert run_reconcile(db_url).updated == 1  # the sources and data_source changed
    assert catalog(sql)[20]["image_url"] == "https://live.staticflickr.com/1/20_yfcc_o.jpg"
    assert run_reconcile(db_url).updated == 0
