"""`downloader run` as a real process against a real queue service (on MariaDB), a real image
host and a real write-only storage (sshd + rrsync): lease, fetch, push, report, and under
kills, stops and outages nothing is lost and nothing is stored twice."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harvester.db import connect
from harvester.search.licenses import License, store_licenses
from lab.mission.catalog_images import fill_images
from lab.processes.queue import RunningQueue, spawn
from lab.processes.storage import RunningStorage
from lab.sims.image_host import server as image_host
from tests.conftest import make_storage, remove_storage, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sshd and useradd need root")
VENV_BIN = Path(sys.executable).parent
CC_BY = License(4, "Attribution License", "https://creativecommons.org/licenses/by/2.0/")
CC_BY_4 = License(14, "CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/")

# Photos a worker's lease holds; a photo reported `retry` waits out its backoff under a
# parking lease (harvester/queue/backoff.py), which no worker holds.
HELD_BY_A_WORKER = (
    "SELECT COUNT(*) FROM images i JOIN leases l ON l.id = i.lease_id WHERE l.state <> 'backoff'"
)


@dataclass
class Fleet:
    """One droplet's world: its queue, image host, storage, spool and settings."""

    queue: RunningQueue
    host: image_host.RunningImageHost
    storage: RunningStorage
    spool: Path
    sql: object

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCMIRROR_")}
        env |= {
            "CCMIRROR_CONFIG": "/dev/null",
            "CCMIRROR_QUEUE_URL": self.queue.url,
            "CCMIRROR_QUEUE_TOKEN": self.queue.tokens["dl-1"],
            "CCMIRROR_WORKER": "dl-1",
            "CCMIRROR_SPOOL": str(self.spool),
            "CCMIRROR_STORAGE": f"{self.storage.user}@{self.storage.host}",
            "CCMIRROR_STORAGE_PORT": str(self.storage.port),
            "CCMIRROR_SSH_KEY": str(self.storage.key_path),
            "CCMIRROR_KNOWN_HOSTS": str(self.storage.known_hosts_path),
            "CCMIRROR_BATCH_SIZE": "12",
            "CCMIRROR_MIN_FREE_MB": "1",
            "CCMIRROR_FETCH_TIMEOUT": "10",
            "CCMIRROR_FETCH_ALLOW_HOSTS": "127.0.0.1",  # the image host, on loopback
            "CCMIRROR_PUSH_RETRY_SECONDS": "5",
        }
        return env | extra

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / "downloader"), *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start(self, *args: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(VENV_BIN / "downloader"), "run", *args],
            env=self.env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def phase(self) -> str | None:
        try:
            return json.loads((self.spool / "lease" / "lease.json").read_text())["phase"]
        except (FileNotFoundError, ValueError):
            return None

    def results(self) -> int:
        try:
            return len((self.spool / "lease" / "results.jsonl").read_text().splitlines())
        except FileNotFoundError:
            return 0

    def stored_on_storage(self) -> dict[str, bytes]:
        images = self.storage.root / "images"
        return {
            p.relative_to(self.storage.root).as_posix(): p.read_bytes()
            for p in images.rglob("*")
            if p.is_file() and ".~tmp~" not in p.parts
        }

    def manifests(self) -> list[dict]:
        return [
            json.loads(line)
            for path in sorted((self.storage.root / "manifests").rglob("*.jsonl"))
            for line in path.read_text().splitlines()
        ]


@pytest.fixture
def storage() -> Iterator[RunningStorage]:
    running = make_storage()
    yield running
    remove_storage(running)


@pytest.fixture
def host() -> Iterator[image_host.RunningImageHost]:
    running = image_host.spawn("--slow-delay", "3")
    yield running
    running.stop()


def make_fleet(db_url, sql, tmp_path, storage, host, photos: int) -> Iterator[Fleet]:
    conn = connect(db_url)
    store_licenses(conn, [CC_BY, CC_BY_4])
    fill_images(conn, photos)
    with conn.cursor() as cur:  # every photo at the image host
        cur.execute(
            "UPDATE images SET image_url = CONCAT(%s, '/65535/', photo_id, '_0123456789_o.jpg'),"
            " fallback_url = CONCAT(%s, '/65535/', photo_id, '_0123456789_b.jpg')",
            (host.base_url, host.base_url),
        )
    conn.commit()
    conn.close()
    queue = spawn(db_url, tmp_path / "queue", ["dl-1"], settings={"reap_interval": "0.5"})
    yield Fleet(queue, host, storage, tmp_path / "spool", sql)
    queue.stop()


@pytest.fixture
def fleet(db_url, sql, tmp_path, storage, host) -> Iterator[Fleet]:
    yield from make_fleet(db_url, sql, tmp_path, storage, host, 24)


def photo_ids(sql, state: str | None = None) -> list[int]:
    where = f"WHERE state = '{state}'" if state else ""
    return [row[0] for row in sql(f"SELECT photo_id FROM images {where} ORDER BY id")]


def assert_all_stored_once(fleet: Fleet) -> None:
    """Every photo stored: one file each on storage with the bytes the queue recorded, one
    manifest line each, and nothing left in the spool."""
    sql = fleet.sql
    assert photo_ids(sql, "stored") == photo_ids(sql)
    files = fleet.stored_on_storage()
    recorded = {
        path: digest for path, digest in sql("SELECT path, LOWER(HEX(sha256)) FROM stored_images")
    }
    assert set(files) == set(recorded)
    for path, body in files.items():
        assert hashlib.sha256(body).hexdigest() == recorded[path]
        assert body == image_host.jpeg_bytes(int(Path(path).stem)) or body[:2] == b"\xff\xd8"
    lines = fleet.manifests()
    assert sorted({line["photo_id"] for line in lines}) == sorted(photo_ids(sql))
    assert not (fleet.spool / "lease").exists()


def test_run_once_leases_fetches_pushes_and_reports_with_attribution(fleet):
    first = fleet.run("run", "--once")
    assert first.returncode == 0, first.stderr
    assert len(photo_ids(fleet.sql, "stored")) == 12
    lines = {line["photo_id"]: line for line in fleet.manifests()}
    item = fleet.sql(
        "SELECT i.photo_id, i.owner, i.owner_name, i.title, i.page_url, i.license_id, l.url,"
        " s.path FROM images i JOIN licenses l ON l.id = i.license_id"
        " JOIN stored_images s ON s.image_id = i.id ORDER BY i.id LIMIT 1"
    )[0]
    line = lines[item[0]]
    assert (
        line["photo_id"],
        line["owner"],
        line["owner_name"],
        line["title"],
        line["page_url"],
        line["license_id"],
        line["license_url"],
        line["path"],
    ) == item
    assert line["source_url"].startswith(fleet.host.base_url) and len(line["sha256"]) == 64
    status = fleet.run("status", "--json")
    state = json.loads(status.stdout)
    assert state["counts"]["stored"] == 12 and state["lease"] is None
    assert fleet.run("run", "--once").returncode == 0
    assert_all_stored_once(fleet)
    # The queue is empty: --once says so with 0 and changes nothing.
    empty = fleet.run("run", "--once")
    assert empty.returncode == 0 and "queue is empty" in empty.stderr
    text = fleet.run("status")
    assert "stored 24" in text.stdout and "lease: none" in text.stdout


def test_failures_are_classified_reported_and_never_stored(fleet):
    ids = photo_ids(fleet.sql)
    faults = {ids[0]: "404", ids[1]: "html", ids[2]: "500", ids[3]: "truncated"}
    # The fallback URL fails the same way: the photo's own fault, whatever the size.
    fleet.host.faults(faults)
    result = fleet.run("run", "--once", CCMIRROR_BATCH_SIZE="24")
    assert result.returncode == 0, result.stderr
    states = dict(fleet.sql("SELECT photo_id, state FROM images"))
    assert states[ids[0]] == "gone" and states[ids[1]] == "failed"
    assert states[ids[2]] == "pending" and states[ids[3]] == "pending"  # retried later
    stored = fleet.stored_on_storage()
    assert not any(Path(p).stem in {str(i) for i in faults} for p in stored)
    assert len(stored) == 20


def kill_when(fleet: Fleet, proc: subprocess.Popen, ready, what: str) -> None:
    try:
        wait_for(ready, 60, what)
    finally:
        proc.kill()
        proc.wait(10)


def test_kill_9_in_every_phase_then_restart_loses_nothing_and_stores_once(fleet):
    ids = photo_ids(fleet.sql)
    # Slow photos hold the fetch open long enough to be killed in it.
    fleet.host.faults({ids[5]: "slow", ids[17]: "slow"})
    # 1. Killed right after the lease, or mid-fetch: the restart fetches only what is missing.
    proc = fleet.start("--once")
    kill_when(fleet, proc, lambda: fleet.results() >= 3, "some fetches recorded")
    assert fleet.phase() == "fetching"
    fetched_before = fleet.host.stats()["requests"]
    result = fleet.run("run", "--once")
    assert result.returncode == 0, result.stderr
    refetched = {
        int(k): v - fetched_before.get(k, 0)
        for k, v in fleet.host.stats()["requests"].items()
        if v > fetched_before.get(k, 0)
    }
    assert len(refetched) <= 12 - 3  # nothing fetched again that the spool had
    # 2. Killed after the fetch, while storage is away: the restart pushes and reports.
    fleet.storage.stop()
    proc = fleet.start("--once")
    kill_when(fleet, proc, lambda: fleet.phase() == "fetched", "fetched, pushing")
    fleet.storage.start()
    # 3. Killed after the push, while the queue is away: the restart reports.
    queue_process = fleet.queue.process
    queue_process.send_signal(signal.SIGSTOP)  # the service hangs: reports cannot land
    try:
        proc = fleet.start("--once", CCMIRROR_PUSH_RETRY_SECONDS="30")
        kill_when(fleet, proc, lambda: fleet.phase() == "pushed", "pushed, reporting")
    finally:
        queue_process.send_signal(signal.SIGCONT)
    result = fleet.run("run", "--once")
    assert result.returncode == 0, result.stderr
    assert "resuming lease" in result.stderr
    assert_all_stored_once(fleet)


def test_sigterm_mid_fetch_releases_the_rest_and_reports_what_was_fetched(fleet):
    ids = photo_ids(fleet.sql)
    fleet.host.faults({i: "slow" for i in ids[2:12]})
    proc = fleet.start()
    wait_for(lambda: fleet.results() >= 2, 60, "two fetches recorded")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.stderr.read()
    log = proc.stderr.read()
    assert "released" in log, log
    states = dict(fleet.sql("SELECT photo_id, state FROM images"))
    stored = [i for i in ids[:12] if states[i] == "stored"]
    assert len(stored) >= 2 and all(states[i] in ("stored", "pending") for i in ids), log
    assert fleet.sql("SELECT COUNT(*) FROM images WHERE lease_id <> 0") == [(0,)]
    assert len(fleet.stored_on_storage()) == len(stored)
    assert not (fleet.spool / "lease").exists()


def test_storage_down_for_a_while_costs_retries_not_photos(fleet):
    fleet.storage.stop()
    proc = fleet.start("--once")
    wait_for(
        lambda: "storage" in json.loads(fleet.run("status", "--json").stdout).get("errors", {}),
        60,
        "a storage error in the status",
    )
    assert fleet.phase() == "fetched"
    fleet.storage.start()
    assert proc.wait(90) == 0, proc.stderr.read()
    assert len(photo_ids(fleet.sql, "stored")) == 12
    assert len(fleet.stored_on_storage()) == 12


def test_no_lease_while_the_spool_disk_is_short_of_space(fleet):
    result = fleet.run("run", "--once", CCMIRROR_MIN_FREE_MB=str(10**9))
    assert result.returncode == 0 and "below min_free_mb" in result.stderr
    assert photo_ids(fleet.sql, "pending") == photo_ids(fleet.sql)
    assert fleet.sql("SELECT COUNT(*) FROM leases") == [(0,)]


def test_bad_settings_get_one_clear_line(fleet):
    result = fleet.run("run", "--once", CCMIRROR_QUEUE_URL="")
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "queue_url" in result.stderr
    wrong_token = fleet.run("run", "--once", CCMIRROR_QUEUE_TOKEN="ccmq_wrong")
    assert wrong_token.returncode == 1 and "HTTP 401" in wrong_token.stderr
    assert photo_ids(fleet.sql, "pending") == photo_ids(fleet.sql)
