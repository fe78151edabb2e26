"""The lab's summary lines on the harvest (lab/mission/coverage.py), against a real catalog:
coverage by safety level counts what the API tasks found, never the YFCC100M import, and the
lag line is `harvester status`'s."""

from __future__ import annotations

from harvester.db import connect
from harvester.migrate import migrate
from lab.mission.coverage import coverage_line, lag_line, recheck_line

SLICE = (1370044800, 1370047799)  # 2013-06-01 00:00 .. 00:49:59


def add_found(sql, table: str, photo_ids: list[int]) -> None:
    for photo_id in photo_ids:
        sql(
            f"INSERT INTO {table} (photo_id, owner, license_id, page_url, image_url, image_size,"
            " uploaded_at, task_id) VALUES (%s, 'o@N01', 4, 'p', 'u', 'o', %s, 1)",
            photo_id, SLICE[0],
        )  # fmt: skip


def test_coverage_counts_each_level_found_by_the_api_and_the_lag_line_is_the_status_one(
    db_url, sql
) -> None:
    conn = connect(db_url)
    migrate(conn)
    conn.commit()  # no snapshot from before the rows below
    truth = {1: [10, 11, 12], 2: [20, 21], 3: [30]}
    add_found(sql, "flickr_timeslice_photos", [10, 11, 12, 20])
    add_found(sql, "flickr_query_photos", [21])  # a search text's find counts too
    add_found(sql, "flickr_timeslice_photos", [99])  # not in the truth: counts nowhere
    sql(
        "INSERT INTO yfcc_photos (photo_id, owner, license_id, page_url, image_url, image_size,"
        " uploaded_at) VALUES (30, 'o@N01', 4, 'p', 'u', 'o', %s)",
        SLICE[0],
    )  # the YFCC100M sample has the restricted photo: the calls did not find it

    assert coverage_line(conn, truth) == "safe 3/3, moderate 2/2, restricted 0/1"
    assert lag_line(conn) == "harvested up to: nothing yet (no time slice done from the first on)"
    assert recheck_line(conn) == "re-check: never run; flagged: not_cc 0, gone 0, private 0"
    sql(
        "INSERT INTO search_tasks (task_key, source, min_upload, max_upload, cursor_max_upload,"
        " state) VALUES ('s', 'timeslice', %s, %s, %s, 'done')",
        SLICE[0], SLICE[1], SLICE[1],
    )  # fmt: skip
    line = lag_line(conn)
    assert line.startswith("harvested up to 2013-06-01T00:49:59Z, ")
    assert line.endswith(" behind now")
    conn.close()
