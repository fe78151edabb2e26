"""Re-drives, retry backoff and lease priority (issue #21) on a real MariaDB: `harvester
requeue` as a process, the queue's backoff through `harvester.queue.leases` with the clock
passed in and through a real `harvester serve` over HTTP, and priority from reconcile to a
lease."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import requests

from harvester.catalog.queue_order import BACKOFF_WORKER
from harvester.catalog.reconcile import reconcile
from harvester.db import connect
from harvester.queue import leases as dq
from harvester.queue.status import queue_status
from tests.conftest import harvester_env, run_harvester, wait_for
from tests.integration import test_queue_service
from tests.integration.test_queue_service import complete, lease
from tests.integration.test_reconcile import add

# The fixtures that fill a catalog of 60 photos and start the queue service on it.
catalog, start_queue = test_queue_service.catalog, test_queue_service.start_queue
NOW = datetime(2026, 3, 1, 12, 0)  # the queue's clock, passed in: no test reads today's date
BACKOFF = dq.Backoff(60, 3600)
ROWS = "SELECT id, state, attempts, lease_id, last_error FROM images ORDER BY id"


def failed_catalog(sql) -> dict[str, list[int]]:
    """Twelve photos in every state a re-drive must tell apart: failed ones with other errors,
    priorities and failure dates, gone and stored ones."""
    sql("UPDATE images SET state = 'stored' WHERE id > 12")
    marks = {
        1: ("failed", "retry: HTTP 503", "2026-02-10", 0),
        2: ("failed", "retry: HTTP 503", "2026-01-10", 0),  # before --since
        3: ("failed", "bad: text/html served as image", "2026-02-10", 0),
        4: ("failed", "retry: timeout", "2026-02-11", 1),  # a query photo
        5: ("failed", "retry: HTTP 500", "2026-02-12", 0),
        6: ("gone", "gone: HTTP 404", "2026-02-10", 0),
        7: ("failed", "retry: HTTP 429", "2026-02-13", 1),
        8: ("stored", None, "2026-02-10", 0),
    }
    for image_id, (state, error, when, priority) in marks.items():
        sql(
            "UPDATE images SET state = %s, last_error = %s, attempts = 5, priority = %s,"
            " updated_at = %s WHERE id = %s",
            state,
            error,
            priority,
            when,
            image_id,
        )
    return {"retry_since": [1, 4, 5, 7], "gone": [6]}


def requeue(db_url: str, *args: str):
    return run_harvester("requeue", *args, env=harvester_env(db_url), timeout=60)


def test_requeue_moves_exactly_the_matching_photos_batch_by_batch(catalog, sql):
    wanted = failed_catalog(sql)
    before = sql(ROWS)
    args = ("--state", "failed", "--error", "retry:%", "--since", "2026-02-01")
    result = requeue(catalog, *args, "--batch-size", "2", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["requeued"], summary["matched"], summary["examined"]) == (4, 4, 6)
    assert summary["batches"] >= 4  # two priority levels, windows of 2 index entries
    assert "requeued" in result.stderr  # the progress line
    after = {row[0]: row[1:] for row in sql(ROWS)}
    for image_id, *old in before:
        if image_id in wanted["retry_since"]:  # back, the error kept as history
            assert after[image_id] == ("pending", 0, 0, old[3]), image_id
        else:
            assert after[image_id] == tuple(old), image_id

    gone = requeue(catalog, "--state", "gone")
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.strip() == "1 gone photos back in the queue"
    assert sql("SELECT state, attempts FROM images WHERE id = 6") == [("pending", 0)]


def test_a_dry_run_and_bad_arguments_change_nothing(catalog, sql):
    failed_catalog(sql)
    before = sql(ROWS)
    dry = requeue(catalog, "--state", "failed", "--since", "2026-02-01", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["matched"] == 5 and json.loads(dry.stdout)["requeued"] == 0
    for args, says in (
        (("--state", "stored"), "argument --state: invalid choice: 'stored'"),
        (("--state", "pending"), "argument --state: invalid choice: 'pending'"),
        (("--state", "failed", "--since", "last week"), "argument --since: not a date"),
        (("--state", "failed", "--since", "2026-13-01"), "argument --since: not a date"),
        (("--error", "retry:%"), "the following arguments are required: --state"),
    ):
        result = requeue(catalog, *args)
        assert result.returncode == 2 and result.stdout == "", args
        assert len(result.stderr.splitlines()) == 1 and says in result.stderr, result.stderr
    assert sql(ROWS) == before


def parking(sql) -> list[tuple]:
    return sql("SELECT id, item_ids, expires_at FROM leases WHERE state = 'backoff'")


def test_a_retried_photo_waits_out_a_backoff_that_doubles(catalog, sql):
    conn = connect(catalog)
    held = dq.lease(conn, "dl-1", 2, 600, NOW)
    photo = held.item_ids[0]
    report = [dq.Report(photo, "retry", error="HTTP 503")]
    assert dq.complete(conn, "dl-1", held.id, report, 5, NOW, BACKOFF).requeued == [photo]
    ((parked, items, ends),) = parking(sql)
    assert (items, ends) == (str(photo), NOW + timedelta(seconds=60))
    # Not a worker's lease: no worker may settle it, and none counts it as its own.
    with pytest.raises(dq.NotYourLease):
        dq.extend(conn, "dl-1", parked, 600, NOW)
    with pytest.raises(dq.NotYourLease):
        dq.complete(conn, "dl-1", parked, [dq.Report(photo, "retry")], 5, NOW, BACKOFF)
    status = queue_status(conn, NOW, ["dl-1"], False)
    assert (status["items_in_backoff"], status["leases_active"]) == (1, 1)
    assert status["images"]["pending"] == 59 and status["images"]["leased"] == 1
    assert [w["worker"] for w in status["workers"]] == ["dl-1"]

    rest = dq.lease(conn, "dl-2", 100, 600, NOW)
    assert photo not in rest.item_ids and len(rest.item_ids) == 58
    almost = NOW + timedelta(seconds=59)
    assert dq.reap(conn, almost) == (0, 0, 0, 0)
    assert dq.lease(conn, "dl-2", 100, 600, almost) is None
    ended = NOW + timedelta(seconds=61)
    assert dq.reap(conn, ended) == (0, 0, 1, 1)
    again = dq.lease(conn, "dl-2", 100, 600, ended)
    assert again.item_ids == [photo]

    # The second retry waits twice as long; a photo at max_attempts is failed, not parked.
    dq.complete(conn, "dl-2", again.id, [dq.Report(photo, "retry")], 5, ended, BACKOFF)
    assert parking(sql)[0][2] == ended + timedelta(seconds=120)
    dq.complete(conn, "dl-1", held.id, [dq.Report(held.item_ids[1], "retry")], 1, NOW, BACKOFF)
    assert len(parking(sql)) == 1
    assert sql("SELECT state FROM images WHERE id = %s", held.item_ids[1]) == [("failed",)]
    conn.close()
    assert (BACKOFF.seconds(0), BACKOFF.seconds(3), BACKOFF.seconds(10)) == (60, 480, 3600)


def test_over_http_a_retried_photo_is_parked_and_shown_in_the_status(start_queue, sql):
    queue = start_queue(retry_backoff_seconds="3600")
    got = lease(queue, "dl-1", 2)
    retried, kept = (item["id"] for item in got["items"])
    report = [{"id": retried, "result": "retry", "error": "HTTP 503"}]
    assert complete(queue, "dl-1", got["lease_id"], report)["requeued"] == [retried]
    rest = lease(queue, "dl-2", 100)
    assert {i["id"] for i in rest["items"]} == set(range(3, 61))
    assert lease(queue, "dl-2", 100)["items"] == []  # the retried photo waits its hour
    ((parked, _, _),) = parking(sql)
    refused = queue.post(f"/v1/leases/{parked}/extend", "dl-1", {"seconds": 60})
    assert refused.status_code == 403
    status = wait_for(lambda: (s := queue.status())["leases_active"] == 2 and s, 10, "status")
    assert status["items_in_backoff"] == 1 and status["items_leased_out"] == 59
    assert BACKOFF_WORKER not in {w["worker"] for w in status["workers"]}
    metrics = requests.get(queue.url + "/metrics", timeout=10).text
    assert "ccmirror_queue_items_in_backoff 1.0" in metrics
    assert kept not in {i["id"] for i in rest["items"]}


def test_a_query_photo_is_leased_before_time_slice_photos_of_lower_ids(catalog, start_queue, sql):
    sql("DELETE FROM images")
    for photo_id in (101, 102, 103):
        add(sql, "timeslice", photo_id)
    add(sql, "query", 104)
    add(sql, "timeslice", 105)
    add(sql, "query", 105)  # any query task that saw it counts
    reconcile(catalog)
    priorities = dict(sql("SELECT photo_id, priority FROM images"))
    assert priorities == {101: 0, 102: 0, 103: 0, 104: 1, 105: 1}
    ids = dict(sql("SELECT photo_id, id FROM images"))
    queue = start_queue()
    first = lease(queue, "dl-1", 3)
    assert [i["photo_id"] for i in first["items"]] == [104, 105, 101]
    assert [i["photo_id"] for i in lease(queue, "dl-2", 3)["items"]] == [102, 103]
    assert ids[101] < ids[104]  # the lower id waited

    # A row from before migration 0011 (priority 0) gets its priority from the next pass.
    sql("UPDATE images SET priority = 0")
    reconcile(catalog, restart=True)
    assert dict(sql("SELECT photo_id, priority FROM images")) == priorities
