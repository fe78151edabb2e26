"""`harvester takedown add|list` on a real MariaDB: photos out of the queue for good, through
reconcile and the queue's reports, every step logged; a bad request is one error and changes
nothing. The storage step is tests/integration/test_takedown_s3.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from harvester.catalog.reconcile import reconcile
from harvester.db import connect
from harvester.queue import leases as dq
from harvester.takedown.requests import add_takedown, checked_request
from lab.mission.catalog_images import fill_images
from tests.conftest import harvester_env, run_harvester

NOW = datetime(2026, 12, 1, 12, 0, 0)


def source_row(sql, photo_id: int, owner: str, license_id: int = 4, title: str = "t") -> None:
    """A time-slice row as the harvester writes it (again: a re-harvest)."""
    sql(
        "INSERT INTO flickr_timeslice_photos (photo_id, owner, owner_name, title, license_id,"
        " page_url, image_url, image_size, width, height, uploaded_at, task_id)"
        " VALUES (%s, %s, 'o', %s, %s, 'https://www.flickr.com/p/', %s, 'o', 8, 6, 1100000000, 1)"
        " ON DUPLICATE KEY UPDATE title = VALUES(title), license_id = VALUES(license_id)",
        photo_id, owner, title, license_id, f"https://live.staticflickr.com/1/{photo_id}_o.jpg",
    )  # fmt: skip


def states(sql) -> dict[int, str]:
    return dict(sql("SELECT photo_id, state FROM images"))


def steps(sql, photo_id: int) -> list[str]:
    return [r[0] for r in sql("SELECT step FROM takedown_log WHERE photo_id = %s ORDER BY id",
                              photo_id)]  # fmt: skip


def takedown(db_url: str, *args: str):
    return run_harvester("takedown", *args, env=harvester_env(db_url), timeout=60)


def test_a_photo_taken_down_stays_down_through_reharvest_and_reconcile(db_url, sql):
    for photo in (101, 102):
        source_row(sql, photo, "1@N01")
    reconcile(db_url)
    done = takedown(db_url, "add", "--photo", "101", "--reason", "DMCA #7", "--by", "ops", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["withdrawn"] == {"pending": 1}
    assert states(sql) == {101: "taken_down", 102: "pending"}

    # The source sees it again, CC, with another title; then not CC; then CC again.
    for license_id in (5, 0, 4):
        source_row(sql, 101, "1@N01", license_id=license_id, title=f"again {license_id}")
        reconcile(db_url, restart=True)
        assert states(sql) == {101: "taken_down", 102: "pending"}, license_id
    assert steps(sql, 101) == ["withdrawn", *["harvest_refused"] * 3]
    assert sql("SELECT actor, detail FROM takedown_log WHERE photo_id = 101 ORDER BY id"
               " LIMIT 1") == [("ops", "was pending")]  # fmt: skip
    assert sql("SELECT license_id FROM images WHERE photo_id = 101") == [(4,)]  # data kept fresh


def test_an_unknown_photo_is_recorded_and_its_harvest_refused(db_url, sql):
    done = takedown(db_url, "add", "--photo", "555", "--reason", "court order")
    assert done.returncode == 0, done.stderr
    assert "not in the catalog yet" in done.stdout
    assert steps(sql, 555) == ["requested"]
    source_row(sql, 555, "9@N09")
    reconcile(db_url)
    assert states(sql) == {555: "taken_down"}
    assert steps(sql, 555) == ["requested", "harvest_refused"]


def test_an_owner_takedown_walks_the_catalog_and_refuses_their_new_photos(db_url, sql):
    for photo, owner in ((201, "2@N02"), (202, "2@N02"), (203, "3@N03"), (204, "2@N02")):
        source_row(sql, photo, owner)
    reconcile(db_url)
    sql("UPDATE images SET state = 'stored' WHERE photo_id = 202")
    request = checked_request(None, "2@N02", "the owner asked", "ops")
    conn = connect(db_url)
    try:
        added = add_takedown(conn, request, NOW, walk_ids=1)  # a transaction per catalog id
        again = add_takedown(conn, request, NOW)
    finally:
        conn.close()
    assert added.withdrawn == {"pending": 2, "stored": 1} and not added.existing
    assert again.existing and again.withdrawn == {} and again.takedown_id == added.takedown_id
    assert states(sql) == {201: "taken_down", 202: "taken_down", 203: "pending", 204: "taken_down"}
    source_row(sql, 205, "2@N02")  # a new upload of theirs
    reconcile(db_url, restart=True)
    assert states(sql)[205] == "taken_down"
    listed = json.loads(takedown(db_url, "list", "--json").stdout)
    assert [(t["owner"], t["reason"], t["steps"]) for t in listed] == [
        ("2@N02", "the owner asked", {"harvest_refused": 1, "withdrawn": 3})
    ]
    assert sql("SELECT COUNT(*) FROM takedowns") == [(1,)]


@pytest.mark.parametrize(
    "args",
    [
        ("--photo", "7", "--owner", "1@N01", "--reason", "x"),
        ("--reason", "x"),
        ("--photo", "7", "--reason", "   "),
        ("--owner", "not an nsid", "--reason", "x"),
        ("--photo", "0", "--reason", "x"),
        ("--photo", "7", "--reason", "x", "--by", ""),
    ],
    ids=["both", "neither", "blank-reason", "bad-owner", "zero-id", "blank-by"],
)
def test_a_bad_request_is_one_error_and_changes_nothing(db_url, sql, args):
    source_row(sql, 7, "1@N01")
    reconcile(db_url)
    before = (states(sql), sql("SELECT * FROM takedowns"), sql("SELECT * FROM takedown_log"))
    done = takedown(db_url, "add", *args)
    assert done.returncode == 1 and done.stderr.startswith("harvester: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    after = (states(sql), sql("SELECT * FROM takedowns"), sql("SELECT * FROM takedown_log"))
    assert after == before


def test_a_photo_not_a_number_is_a_usage_error(db_url, sql):
    done = takedown(db_url, "add", "--photo", "12abc", "--reason", "x")
    assert done.returncode == 2 and "not a Flickr photo id" in done.stderr
    assert sql("SELECT COUNT(*) FROM takedowns") == [(0,)]


def test_a_leased_photo_taken_down_stays_down_whatever_its_lease_reports(db_url, sql):
    conn = connect(db_url)
    fill_images(conn, 5)
    ids = [r[0] for r in sql("SELECT id FROM images ORDER BY id")]
    photo = dict(sql("SELECT id, photo_id FROM images"))
    held = dq.lease(conn, "dl-1", 10, 600, NOW)
    stored_down, retried_down, mixed_down = ids[0], ids[1], ids[4]
    for image_id in (stored_down, retried_down, mixed_down):
        add_takedown(conn, checked_request(photo[image_id], None, "complaint", "ops"), NOW)
    assert sql("SELECT lease_id FROM images WHERE id = %s", stored_down) == [(held.id,)]

    def report(image_id: int, result: str) -> dq.Report:
        return dq.Report(image_id, result, "ab" * 32, 10, f"images/x/{image_id}.jpg")

    # The bytes landed anyway: the report is taken, logged, and the photo stays down (the
    # first report takes the queue's path for all-new stored photos, the second its full one).
    first = dq.complete(conn, "dl-1", held.id, [report(stored_down, "stored"),
                        report(ids[2], "stored")], 5, NOW)  # fmt: skip
    mixed = [report(retried_down, "retry"), report(ids[3], "retry"), report(mixed_down, "stored")]
    second = dq.complete(conn, "dl-1", held.id, mixed, 5, NOW)
    assert first.stored == [ids[2]] and first.taken_down == [stored_down]
    assert second.taken_down == [retried_down, mixed_down]
    assert second.requeued == [ids[3]]
    assert sql("SELECT id, state, lease_id FROM images ORDER BY id") == [
        (stored_down, "taken_down", 0),
        (retried_down, "taken_down", 0),
        (ids[2], "stored", 0),
        (ids[3], "pending", 0),
        (mixed_down, "taken_down", 0),
    ]
    for image_id in (stored_down, mixed_down):
        assert steps(sql, photo[image_id]) == ["withdrawn", "stored_after_takedown"]
    assert steps(sql, photo[retried_down]) == ["withdrawn"]
    assert sql("SELECT state, reported, stored FROM leases") == [("done", 5, 1)]
    # A late report of the same bytes from another worker's lapsed lease: still down.
    later = NOW + timedelta(hours=1)
    assert dq.lease(conn, "dl-2", 10, 600, later).item_ids == [ids[3]]  # never a taken-down one
    conn.close()
