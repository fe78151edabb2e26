"""The download queue as a real `harvester serve` process over HTTP, on a real MariaDB (and
`harvester.queue.leases` called directly where the test counts what MariaDB reads)."""

from __future__ import annotations

import hashlib
import html
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from harvester.db import connect
from harvester.queue import leases as dq
from harvester.queue.tokens import hash_token, read_tokens, write_tokens
from harvester.search.licenses import License, store_licenses
from lab.mission.catalog_images import fill_images
from lab.processes.queue import RunningQueue, spawn
from tests.conftest import wait_for

PHOTOS = 60
CC_BY = License(4, "Attribution License", "https://creativecommons.org/licenses/by/2.0/")
CC_BY_4 = License(14, "CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/")


@pytest.fixture
def catalog(db_url: str) -> str:
    conn = connect(db_url)
    store_licenses(conn, [CC_BY, CC_BY_4])
    fill_images(conn, PHOTOS)
    conn.close()
    return db_url


@pytest.fixture
def start_queue(catalog: str, tmp_path: Path) -> Iterator[Callable[..., RunningQueue]]:
    started: list[RunningQueue] = []

    def start(workers=("dl-1", "dl-2"), **settings: str) -> RunningQueue:
        settings.setdefault("reap_interval", "0.2")
        settings.setdefault("rescan_seconds", "0")  # photos back in the queue come first
        started.append(spawn(catalog, tmp_path / "queue", list(workers), settings=settings))
        return started[-1]

    yield start
    for queue in started:
        queue.stop()


@pytest.fixture
def queue(start_queue) -> RunningQueue:
    return start_queue()


def stored(image_id: int, content: bytes = b"jpeg bytes") -> dict:
    return {
        "id": image_id,
        "result": "stored",
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
        "path": f"ab/cd/{image_id}.jpg",
    }


def lease(queue: RunningQueue, worker: str, n: int, **extra) -> dict:
    response = queue.post("/v1/leases", worker, {"max_items": n, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def complete(queue: RunningQueue, worker: str, lease_id: int, items: list[dict]) -> dict:
    response = queue.post(f"/v1/leases/{lease_id}/complete", worker, {"items": items})
    assert response.status_code == 200, response.text
    return response.json()


LEASED = "SELECT COUNT(*) FROM images WHERE state = 'pending' AND lease_id <> 0"


def states(sql, ids) -> dict[int, str]:
    """Each photo's place in the queue; `leased` for a pending photo a lease holds."""
    marks = ",".join(str(i) for i in ids)
    return dict(
        sql(
            "SELECT id, IF(state = 'pending' AND lease_id <> 0, 'leased', state)"
            f" FROM images WHERE id IN ({marks})"
        )
    )


def test_lease_gives_what_a_downloader_needs_and_stored_reports_are_kept(queue, sql):
    got = lease(queue, "dl-1", 5)
    assert len(got["items"]) == 5 and got["maintenance"] is False
    item = got["items"][0]
    row = sql(
        "SELECT id, photo_id, image_url, owner, owner_name, title, page_url, license_id"
        " FROM images ORDER BY id LIMIT 1"
    )[0]
    assert (
        item["id"],
        item["photo_id"],
        item["image_url"],
        item["owner"],
        item["owner_name"],
        item["title"],
        item["page_url"],
        item["license_id"],
    ) == row
    assert item["license_url"] == {4: CC_BY.url, 14: CC_BY_4.url}[item["license_id"]]
    assert item["fallback_url"].endswith("_b.jpg") and item["width"] == 4000
    ids = [i["id"] for i in got["items"]]
    assert set(states(sql, ids).values()) == {"leased"}

    answer = complete(queue, "dl-1", got["lease_id"], [stored(i) for i in ids])
    assert answer["stored"] == ids
    assert set(states(sql, ids).values()) == {"stored"}
    files = sql("SELECT image_id, HEX(sha256), bytes, path, worker FROM stored_images")
    digest = hashlib.sha256(b"jpeg bytes").hexdigest().upper()
    assert sorted(files) == [(i, digest, 10, f"ab/cd/{i}.jpg", "dl-1") for i in ids]
    assert sql("SELECT state FROM leases WHERE id = %s", got["lease_id"]) == [("done",)]
    status = wait_for(
        lambda: (s := queue.status())["images"]["stored"] == 5 and s, 10, "status counts"
    )
    assert status["images"]["pending"] == PHOTOS - 5
    assert status["workers"][0]["worker"] == "dl-1" and status["workers"][0]["stored_5m"] == 5


def test_a_stored_report_with_md5_keeps_it_and_one_without_leaves_it_null(queue, sql):
    got = lease(queue, "dl-1", 2)
    first, second = (i["id"] for i in got["items"])
    md5 = hashlib.md5(b"jpeg bytes").hexdigest()
    answer = complete(
        queue, "dl-1", got["lease_id"], [stored(first) | {"md5": md5}, stored(second)]
    )
    assert answer["stored"] == [first, second]
    rows = sql("SELECT image_id, LOWER(HEX(md5)) FROM stored_images ORDER BY image_id")
    assert rows == [(first, md5), (second, None)]


def test_a_bad_md5_is_one_422_naming_the_photo_and_changes_nothing(queue, sql):
    got = lease(queue, "dl-1", 2)
    good, bad = (i["id"] for i in got["items"])
    before = sql("SELECT id, state, lease_id FROM images ORDER BY id")
    for md5 in ("xyz", "AB" * 16, "ab" * 17, 12):
        items = [stored(good) | {"md5": "ab" * 16}, stored(bad) | {"md5": md5}]
        response = queue.post(f"/v1/leases/{got['lease_id']}/complete", "dl-1", {"items": items})
        assert response.status_code == 422, response.text
        errors = response.json()["detail"]
        assert len(errors) == 1 and errors[0]["loc"][-1] == "md5", errors
        assert isinstance(md5, int) or f"photo {bad}: md5" in errors[0]["msg"], errors
    assert sql("SELECT id, state, lease_id FROM images ORDER BY id") == before
    assert sql("SELECT COUNT(*) FROM stored_images") == [(0,)]


def test_reports_are_idempotent(queue, sql):
    got = lease(queue, "dl-1", 4)
    ids = [i["id"] for i in got["items"]]
    report = [stored(ids[0]), {"id": ids[1], "result": "gone", "error": "HTTP 410"}]
    first = complete(queue, "dl-1", got["lease_id"], report)
    assert first["stored"] == [ids[0]] and first["gone"] == [ids[1]]
    before = sql("SELECT id, state, attempts, last_error FROM images ORDER BY id")
    second = complete(queue, "dl-1", got["lease_id"], report)
    assert second["already_stored"] == [ids[0]] and second["ignored"] == [ids[1]]
    assert sql("SELECT id, state, attempts, last_error FROM images ORDER BY id") == before
    assert sql("SELECT COUNT(*) FROM stored_images") == [(1,)]
    assert states(sql, ids[2:]) == {ids[2]: "leased", ids[3]: "leased"}


def test_lapsed_lease_goes_back_to_the_queue_and_a_late_stored_report_is_kept(queue, sql):
    first = lease(queue, "dl-1", 3, lease_seconds=1)
    ids = [i["id"] for i in first["items"]]
    wait_for(lambda: set(states(sql, ids).values()) == {"pending"}, 15, "the reaper")
    assert sql("SELECT state FROM leases WHERE id = %s", first["lease_id"]) == [("expired",)]
    again = lease(queue, "dl-2", 3)
    assert [i["id"] for i in again["items"]] == ids

    extend = queue.post(f"/v1/leases/{first['lease_id']}/extend", "dl-1", {"seconds": 60})
    assert extend.status_code == 409 and "expired" in extend.json()["detail"]
    # dl-1 finished one photo after all: its bytes are on storage, so the report stands.
    late = complete(
        queue,
        "dl-1",
        first["lease_id"],
        [stored(ids[0]), {"id": ids[1], "result": "retry", "error": "HTTP 503"}],
    )
    assert late["stored"] == [ids[0]] and late["ignored"] == [ids[1]]
    # dl-2 holds the others; its reports of the first photo change nothing.
    answer = complete(
        queue,
        "dl-2",
        again["lease_id"],
        [{"id": ids[0], "result": "retry"}, stored(ids[1]), stored(ids[2])],
    )
    assert answer["ignored"] == [ids[0]] and answer["stored"] == [ids[1], ids[2]]
    assert set(states(sql, ids).values()) == {"stored"}
    assert sql("SELECT image_id, worker FROM stored_images ORDER BY image_id") == [
        (ids[0], "dl-1"),
        (ids[1], "dl-2"),
        (ids[2], "dl-2"),
    ]


def test_a_report_of_only_stored_photos_is_kept_whoever_holds_them_now(queue, sql):
    first = lease(queue, "dl-1", 3, lease_seconds=1)
    ids = [i["id"] for i in first["items"]]
    wait_for(lambda: set(states(sql, ids).values()) == {"pending"}, 15, "the reaper")
    again = lease(queue, "dl-2", 3)
    assert [i["id"] for i in again["items"]] == ids

    late = complete(queue, "dl-1", first["lease_id"], [stored(ids[0]), stored(ids[1])])
    assert late["stored"] == ids[:2] and late["already_stored"] == []
    assert states(sql, ids) == {ids[0]: "stored", ids[1]: "stored", ids[2]: "leased"}
    answer = complete(queue, "dl-2", again["lease_id"], [stored(i) for i in ids])
    assert answer["already_stored"] == ids[:2] and answer["stored"] == [ids[2]]
    assert set(states(sql, ids).values()) == {"stored"}
    assert sql("SELECT image_id, worker FROM stored_images ORDER BY image_id") == [
        (ids[0], "dl-1"),
        (ids[1], "dl-1"),
        (ids[2], "dl-2"),
    ]
    # The lapsed lease settled none of its photos; the live one settled the one it held.
    assert sql(
        "SELECT id, reported, stored FROM leases WHERE id IN (%s, %s) ORDER BY id",
        first["lease_id"],
        again["lease_id"],
    ) == [(first["lease_id"], 0, 2), (again["lease_id"], 1, 1)]


def test_photos_back_in_the_queue_are_leased_again_when_the_rest_is_out(start_queue, sql):
    queue = start_queue(rescan_seconds="3600", retry_backoff_seconds="0")  # back at once
    first = lease(queue, "dl-1", 2)
    ids = [i["id"] for i in first["items"]]
    retried = complete(queue, "dl-1", first["lease_id"], [{"id": ids[0], "result": "retry"}])
    assert retried["requeued"] == [ids[0]]
    # The service looks past its last lease first, then from the start: nothing is left out.
    rest = lease(queue, "dl-2", PHOTOS)
    assert ids[0] not in {i["id"] for i in rest["items"]} and len(rest["items"]) == PHOTOS - 2
    again = lease(queue, "dl-2", 5)
    assert [i["id"] for i in again["items"]] == [ids[0]]
    assert lease(queue, "dl-2", 5)["items"] == []


def test_a_lease_reads_the_index_from_its_mark_not_from_the_first_pending_photo(catalog):
    # 20,000 pending photos below the mark, as a service leaves behind it (photos back in the
    # queue, lapsed leases, entries of stored photos not yet purged): a lease past the mark
    # must not cost more for them. MariaDB counts the index entries a statement looked at.
    conn = connect(catalog)
    fill_images(conn, 20_000)
    with conn.cursor() as cur:
        cur.execute(dq.SESSION_SQL[0])
        cur.execute("SELECT MAX(id) FROM images")
        mark = cur.fetchone()[0] - 200
        before = _index_entries_read(cur)
    leased = dq.lease(conn, "dl-1", 100, 60, datetime.now(), after=mark)
    with conn.cursor() as cur:
        read = _index_entries_read(cur) - before
    conn.close()
    assert leased.item_ids == list(range(mark + 1, mark + 101))
    assert read < 300, f"a lease of 100 photos looked at {read} index entries"


def _index_entries_read(cur) -> int:
    cur.execute(
        "SHOW SESSION STATUS WHERE Variable_name IN ('Handler_icp_attempts', 'Handler_read_next')"
    )
    return sum(int(value) for _, value in cur.fetchall())


def test_extend_keeps_a_lease_alive_and_release_gives_photos_back(queue, sql):
    got = lease(queue, "dl-1", 4, lease_seconds=2)
    ids = [i["id"] for i in got["items"]]
    extended = queue.post(f"/v1/leases/{got['lease_id']}/extend", "dl-1", {"seconds": 120})
    assert extended.status_code == 200 and extended.json()["expires_at"] > got["expires_at"]
    released = queue.post(f"/v1/leases/{got['lease_id']}/release", "dl-1", {"items": ids[:2]})
    assert released.json() == {"lease_id": got["lease_id"], "released": 2}
    assert states(sql, ids) == dict(
        zip(ids, ["pending", "pending", "leased", "leased"], strict=True)
    )
    # Past the first expiry the extended lease still holds its photos.
    wait_for(lambda: sql("SELECT UTC_TIMESTAMP() > %s", got["expires_at"][:-1])[0][0], 10, "2s")
    assert states(sql, ids[2:]) == {ids[2]: "leased", ids[3]: "leased"}
    rest = queue.post(f"/v1/leases/{got['lease_id']}/release", "dl-1")
    assert rest.json()["released"] == 2
    assert sql("SELECT state FROM leases WHERE id = %s", got["lease_id"]) == [("released",)]
    assert sql("SELECT SUM(attempts) FROM images") == [(0,)]


def test_retry_failures_are_capped_and_gone_and_bad_are_final(start_queue, sql):
    queue = start_queue(max_attempts="2", retry_backoff_seconds="0")  # no wait between tries
    got = lease(queue, "dl-1", 3)
    retry, gone, bad = (i["id"] for i in got["items"])
    answer = complete(
        queue,
        "dl-1",
        got["lease_id"],
        [
            {"id": retry, "result": "retry", "error": "HTTP 503"},
            {"id": gone, "result": "gone", "error": "HTTP 404"},
            {"id": bad, "result": "bad", "error": "text/html served as image"},
        ],
    )
    assert (answer["requeued"], answer["gone"], answer["failed"]) == ([retry], [gone], [bad])
    assert states(sql, [retry, gone, bad]) == {retry: "pending", gone: "gone", bad: "failed"}
    again = lease(queue, "dl-2", 1)
    assert [i["id"] for i in again["items"]] == [retry]
    answer = complete(queue, "dl-2", again["lease_id"], [{"id": retry, "result": "retry"}])
    assert answer["failed"] == [retry]
    assert sql("SELECT state, attempts, last_error FROM images WHERE id = %s", retry) == [
        ("failed", 2, "retry: ")
    ]
    assert sql("SELECT last_error FROM images WHERE id = %s", bad) == [
        ("bad: text/html served as image",)
    ]


def test_racing_workers_never_hold_the_same_photo(start_queue, sql):
    workers = [f"dl-{n}" for n in range(1, 9)]
    # They lease and never report: no open-lease cap here (test_queue_refusals tests it).
    queue = start_queue(workers=workers, max_open_leases=str(PHOTOS))
    leased: dict[str, list[list[int]]] = {w: [] for w in workers}
    errors: list[str] = []

    def take(worker: str) -> None:
        session = requests.Session()
        while True:
            response = session.post(
                queue.url + "/v1/leases",
                json={"max_items": 3},
                headers=queue.headers(worker),
                timeout=60,
            )
            if response.status_code != 200:
                errors.append(response.text)
                return
            items = response.json()["items"]
            if not items:
                return
            leased[worker].append([i["id"] for i in items])

    threads = [threading.Thread(target=take, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    every = [i for batches in leased.values() for batch in batches for i in batch]
    assert len(every) == len(set(every)) == PHOTOS
    assert sum(1 for batches in leased.values() if batches) > 1  # they really raced
    assert sql(LEASED) == [(PHOTOS,)]
    owners = dict(sql("SELECT id, worker FROM leases"))
    held = dict(sql("SELECT id, lease_id FROM images"))
    for worker, batches in leased.items():
        for batch in batches:
            assert {owners[held[i]] for i in batch} == {worker}


def test_tokens_name_the_worker_and_guard_its_leases(queue, sql):
    assert queue.post("/v1/leases", None, {"max_items": 1}).status_code == 401
    bogus = requests.post(
        queue.url + "/v1/leases",
        json={"max_items": 1},
        headers={"Authorization": "Bearer ccmq_not-a-token"},
        timeout=10,
    )
    assert bogus.status_code == 401 and bogus.headers["WWW-Authenticate"] == "Bearer"
    got = lease(queue, "dl-1", 2)
    ids = [i["id"] for i in got["items"]]
    for path, body in (
        ("complete", {"items": [stored(ids[0])]}),
        ("extend", {"seconds": 60}),
        ("release", None),
    ):
        refused = queue.post(f"/v1/leases/{got['lease_id']}/{path}", "dl-2", body)
        assert refused.status_code == 403, path
    assert set(states(sql, ids).values()) == {"leased"}

    # Tokens change while the service runs: no restart needed.
    queue.add_worker("dl-9")
    wait_for(lambda: queue.post("/v1/leases", "dl-9", {}).status_code == 200, 10, "new token")
    assert queue.harvester("token", "revoke", "dl-2").returncode == 0
    wait_for(lambda: queue.post("/v1/leases", "dl-2", {}).status_code == 401, 10, "revoked")
    tokens_file = Path(queue.env["CCMIRROR_QUEUE_TOKENS_FILE"])
    assert queue.tokens["dl-1"] not in tokens_file.read_text()
    assert queue.harvester("token", "list").stdout.split() == ["dl-1", "dl-9"]

    # A rotation (Salt's secrets.rotate): for a while dl-1 has two tokens, and both work.
    tokens = read_tokens(tokens_file)
    new_token = "ccmq_" + secrets.token_urlsafe(32)
    write_tokens(tokens_file, tokens | {"dl-1": [tokens["dl-1"], hash_token(new_token)]})
    as_new = {"Authorization": f"Bearer {new_token}"}
    wait_for(
        lambda: requests.post(queue.url + "/v1/leases", json={}, headers=as_new).status_code == 200,
        10,
        "the second token",
    )
    assert queue.post("/v1/leases", "dl-1", {}).status_code == 200
    assert queue.harvester("token", "list").stdout.split() == ["dl-1", "dl-9"]
    write_tokens(tokens_file, tokens | {"dl-1": hash_token(new_token)})  # the old one retired
    wait_for(lambda: queue.post("/v1/leases", "dl-1", {}).status_code == 401, 10, "retired")


def test_token_commands_refuse_bad_input_and_print_a_token_once(queue):
    tokens_file = Path(queue.env["CCMIRROR_QUEUE_TOKENS_FILE"])
    before = tokens_file.read_text()
    for args, message in (
        (("token", "add", "dl-1"), "has a token already"),
        (("token", "add", "no spaces"), "bad worker name"),
        (("token", "revoke", "dl-7"), "has no token"),
    ):
        result = queue.harvester(*args)
        assert result.returncode == 1 and message in result.stderr, args
        assert len(result.stderr.strip().splitlines()) == 1
    assert tokens_file.read_text() == before
    oct_mode = oct(tokens_file.stat().st_mode & 0o777)
    assert oct_mode == "0o640"
    replaced = queue.harvester("token", "add", "dl-1", "--replace")
    assert replaced.returncode == 0 and replaced.stdout.strip() != queue.tokens["dl-1"]
    assert replaced.stdout.strip() not in tokens_file.read_text()


def test_maintenance_mode_stops_leasing_but_takes_reports(queue, sql):
    got = lease(queue, "dl-1", 3)
    ids = [i["id"] for i in got["items"]]
    on = queue.harvester("maintenance", "on", "--retry-after", "120")
    assert on.returncode == 0 and "maintenance on" in on.stdout

    wait_for(lambda: queue.status()["maintenance"], 10, "maintenance mode")
    response = queue.post("/v1/leases", "dl-2", {"max_items": 5})
    assert response.status_code == 200 and response.headers["Retry-After"] == "120"
    assert response.json()["items"] == [] and response.json()["lease_id"] is None
    assert sql(LEASED) == [(3,)]
    # What is in flight is not lost: reports and extensions still work.
    assert queue.post(f"/v1/leases/{got['lease_id']}/extend", "dl-1", {}).status_code == 200
    answer = complete(queue, "dl-1", got["lease_id"], [stored(i) for i in ids])
    assert answer["stored"] == ids
    status = queue.harvester("maintenance", "status")
    assert "maintenance on" in status.stdout
    assert queue.harvester("maintenance", "off").returncode == 0
    wait_for(lambda: len(lease(queue, "dl-2", 2)["items"]) == 2, 10, "leasing again")


def test_bad_input_gets_a_4xx_that_says_why_and_changes_nothing(queue, sql):
    got = lease(queue, "dl-1", 2)
    ids = [i["id"] for i in got["items"]]
    before = sql("SELECT id, state, lease_id, attempts FROM images ORDER BY id")
    path = f"/v1/leases/{got['lease_id']}/complete"
    headers = {**queue.headers("dl-1"), "Content-Type": "application/json"}
    cases = [
        (requests.post(queue.url + path, data="{not json", headers=headers), 422, "JSON"),
        (queue.post("/v1/leases", "dl-1", {"max_items": "many"}), 422, "integer"),
        (queue.post("/v1/leases", "dl-1", {"max_items": 0}), 422, "greater than"),
        (queue.post(path, "dl-1", {"items": [{"id": ids[0], "result": "maybe"}]}), 422, ""),
        (
            queue.post(path, "dl-1", {"items": [{**stored(ids[0]), "sha256": "xyz"}]}),
            422,
            "pattern",
        ),
        (queue.post(path, "dl-1", {"items": [stored(ids[0]), stored(ids[0])]}), 400, "twice"),
        (
            queue.post(path, "dl-1", {"items": [stored(ids[0]), stored(PHOTOS + 5)]}),
            400,
            f"not in lease {got['lease_id']}: {PHOTOS + 5}",
        ),
        (queue.post("/v1/leases/999999/complete", "dl-1", {"items": []}), 404, "no lease"),
        (queue.post("/v1/leases/0/extend", "dl-1", {}), 422, "greater than"),
        (queue.post("/v1/leases/abc/release", "dl-1", {}), 422, "integer"),
    ]
    for number, (response, code, message) in enumerate(cases):
        assert response.status_code == code, (number, response.text)
        assert message in response.text, (number, response.text)
    assert sql("SELECT id, state, lease_id, attempts FROM images ORDER BY id") == before
    assert sql("SELECT COUNT(*) FROM stored_images") == [(0,)]


def test_a_database_restart_costs_503s_and_nothing_else(queue, sql, mariadb):
    got = lease(queue, "dl-1", 2)
    mariadb.stop()
    try:
        down = queue.post("/v1/leases", "dl-1", {"max_items": 2})
        assert down.status_code == 503 and down.headers["Retry-After"] == "5"
        assert "database is unavailable" in down.json()["detail"]
    finally:
        mariadb.ensure_running()
    # Stale connections are dropped, not reused: the next calls work.
    ids = [i["id"] for i in got["items"]]
    wait_for(
        lambda: queue.post(f"/v1/leases/{got['lease_id']}/extend", "dl-1", {}).status_code == 200,
        30,
        "the service to reconnect",
    )
    answer = complete(queue, "dl-1", got["lease_id"], [stored(i) for i in ids])
    assert answer["stored"] == ids
    assert len(lease(queue, "dl-1", 2)["items"]) == 2


def test_metrics_and_openapi_are_served(queue):
    got = lease(queue, "dl-1", 2)
    complete(queue, "dl-1", got["lease_id"], [stored(got["items"][0]["id"])])
    metrics = requests.get(queue.url + "/metrics", timeout=10)
    assert metrics.status_code == 200 and "text/plain" in metrics.headers["Content-Type"]
    text = metrics.text
    assert 'ccmirror_queue_items_leased_total{worker="dl-1"} 2.0' in text
    assert 'ccmirror_queue_items_reported_total{outcome="stored",worker="dl-1"} 1.0' in text
    assert "ccmirror_queue_leases_active 1.0" in text
    assert 'ccmirror_images{state="stored"}' in text
    spec = requests.get(queue.url + "/openapi.json", timeout=10).json()
    assert {"/v1/leases", "/v1/leases/{lease_id}/complete", "/v1/status"} <= set(spec["paths"])


def test_serve_stops_cleanly_on_sigterm_and_refuses_a_missing_tokens_file(queue, tmp_path):
    assert queue.stop() == 0
    absent = {**queue.env, "CCMIRROR_QUEUE_TOKENS_FILE": str(tmp_path / "absent.yaml")}
    result = RunningQueue(queue.process, queue.url, absent, {}).harvester("serve")
    assert result.returncode == 1
    assert "no tokens file" in result.stderr and len(result.stderr.strip().splitlines()) == 1


CHROMIUM = (
    "chromium",
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    # Nothing but the page: no update checks, sync or metrics calls to the internet.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--dump-dom",
)


def page_text(url: str) -> str:
    """The status page as Chromium renders it, tags removed, white space folded."""
    result = subprocess.run([*CHROMIUM, url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "<html" in result.stdout, result.stderr[-2000:]
    return visible_text(result.stdout)


def visible_text(page: str) -> str:
    """A page's text as a reader sees it, tags removed, white space folded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_status_page_in_a_real_browser_shows_progress_workers_and_maintenance(queue, sql):
    got = lease(queue, "dl-1", 20)
    ids = [i["id"] for i in got["items"]]
    complete(
        queue,
        "dl-1",
        got["lease_id"],
        [stored(i) for i in ids[:12]] + [{"id": i, "result": "gone"} for i in ids[12:15]],
    )
    wait_for(lambda: queue.status()["images"]["stored"] == 12, 10, "status counts")
    text = page_text(queue.url + "/")
    # Mirrored is what is stored: the 3 gone stand apart (tests/integration/test_operator_page.py)
    assert f"20.0% mirrored (12 of {PHOTOS} CC photos stored)" in text
    assert "Maintenance mode is off" in text
    assert "stored 12 20.0% failed 0 0.0% gone 3 5.0% leased 5 8.3%" in text
    assert "active leases 1 photos leased out 5" in text
    assert re.search(r"dl-1 12 3 12 [\d.]+ \d+s ago", text), text  # stored, not stored, 5 min
    assert "dl-2 0 0 0 0.0 never" in text

    assert queue.harvester("maintenance", "on").returncode == 0
    wait_for(lambda: queue.status()["maintenance"], 10, "maintenance mode")
    assert "Maintenance mode is on" in page_text(queue.url + "/")


def test_fuzzed_requests_from_the_openapi_description_never_get_a_5xx(start_queue, tmp_path):
    """Schemathesis generates valid and invalid requests for every operation: no 5xx, every
    status and body as documented, and schema-violating input refused."""
    queue = start_queue(workers=("dl-1",))
    lease(queue, "dl-1", 5)  # a lease to report on, so some requests reach the database
    checks = (
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance,negative_data_rejection"
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            queue.url + "/openapi.json",
            "--checks",
            checks,
            "--header",
            f"Authorization: Bearer {queue.tokens['dl-1']}",
            "--max-examples",
            "60",
            "--seed",
            "20261123",
            "--generation-database",
            "none",  # the same cases every run
        ],
        cwd=tmp_path,  # its cache stays out of the work tree
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert re.search(r"\d+ generated, \d+ passed", result.stdout), result.stdout[-3000:]
