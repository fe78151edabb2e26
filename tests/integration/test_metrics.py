"""#22's metrics as Prometheus reads them: `downloader run` and `harvester work` as real
processes serving `metrics.listen`, scraped over HTTP and compared with what they did (the
catalog, the storage, the Flickr simulator's own count); a listen address that is bad or
taken stops the daemon before it does anything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harvester.db import connect
from harvester.search.licenses import store_licenses
from lab.mission.catalog_images import fill_images
from lab.processes.child import free_port
from lab.processes.queue import RunningQueue, spawn
from lab.sims.flickr.process import RunningSim
from tests.conftest import VENV_BIN, harvester_env, run_harvester, wait_for
from tests.integration.test_downloader import (  # noqa: F401 (host, storage: fixtures)
    CC_BY,
    Fleet,
    host,
    make_fleet,
    photo_ids,
    storage,
)
from tests.integration.test_harvest import start_worker

HOUR = 3600
START = 1577836800  # 2020-01-01, the simulated universe's first day
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="sshd and useradd need root")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def polled(url: str, name: str, **labels: str) -> float | None:
    """One sample's value, or None while the daemon is not serving yet (or not counted)."""
    try:
        return value(scrape(url), name, **labels)
    except requests.ConnectionError:
        return None


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def by_label(samples: Samples, name: str, label: str, **fixed: str) -> dict[str, float]:
    """The samples of `name` whose other labels are `fixed`, by the value of `label`."""
    found = {}
    for (sample_name, labels), sample_value in samples.items():
        as_dict = dict(labels)
        if sample_name == name and all(as_dict.get(k) == v for k, v in fixed.items()):
            found[as_dict[label]] = sample_value
    return found


def stop_cleanly(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.stderr.read()


@contextmanager
def taken_address() -> Iterator[str]:
    """host:port of a socket this test listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield f"127.0.0.1:{taken.getsockname()[1]}"


def refused_connection(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return True
    return False


@pytest.fixture
def fleet(db_url, sql, tmp_path, storage, host) -> Iterator[Fleet]:  # noqa: F811
    yield from make_fleet(db_url, sql, tmp_path, storage, host, 24)


@pytest.fixture
def queue_only(db_url, tmp_path) -> Iterator[tuple[RunningQueue, Path]]:
    """A queue with photos to lease, and a spool, for a downloader that must not start."""
    conn = connect(db_url)
    store_licenses(conn, [CC_BY])
    fill_images(conn, 4)
    conn.close()
    queue = spawn(db_url, tmp_path / "queue", ["dl-1"])
    yield queue, tmp_path / "spool"
    queue.stop()


@needs_root
def test_the_downloader_counts_what_it_stored_and_its_bytes(fleet):
    listen = f"127.0.0.1:{free_port()}"
    url = f"http://{listen}/metrics"
    proc = fleet.start(CCMIRROR_METRICS_LISTEN=listen)
    try:
        wait_for(lambda: len(photo_ids(fleet.sql, "stored")) == 24, 60, "24 photos stored")
        stored = ("ccmirror_downloader_photos_total", "stored")
        wait_for(lambda: polled(url, stored[0], outcome=stored[1]) == 24, 20, "the count")
        samples = scrape(url)
    finally:
        stop_cleanly(proc)
    (stored_bytes,) = fleet.sql("SELECT SUM(bytes) FROM stored_images")[0]
    assert value(samples, "ccmirror_downloader_bytes_total") == int(stored_bytes) > 0
    outcomes = by_label(samples, "ccmirror_downloader_photos_total", "outcome")
    assert outcomes == {"stored": 24, "already_stored": 0, "failed": 0, "gone": 0, "retry": 0}
    # Two leases of 12: each phase of each lease timed once.
    phases = by_label(samples, "ccmirror_downloader_phase_seconds_count", "phase")
    assert {p: phases[p] for p in ("fetch", "verify", "push", "report")} == dict.fromkeys(
        ("fetch", "verify", "push", "report"), 2
    )
    assert phases["lease"] >= 2  # the two leases (and any empty answer since)
    assert value(samples, "ccmirror_downloader_push_failures_total") == 0
    assert value(samples, "ccmirror_downloader_spool_free_bytes") > 0
    assert value(samples, "ccmirror_downloader_spool_bytes") is not None
    # Gone with the daemon.
    assert refused_connection(url)


@needs_root
def test_a_push_failure_is_counted(fleet):
    listen = f"127.0.0.1:{free_port()}"
    url = f"http://{listen}/metrics"
    fleet.storage.stop()  # storage away: every push attempt fails, the daemon keeps trying
    proc = fleet.start(CCMIRROR_METRICS_LISTEN=listen)
    try:
        failures = "ccmirror_downloader_push_failures_total"
        wait_for(lambda: (polled(url, failures) or 0) >= 2, 60, "two failed pushes")
    finally:
        stop_cleanly(proc)
    assert photo_ids(fleet.sql, "stored") == []


def seeded_sim(factory, db_url: str, seconds: int, **extra: str) -> tuple[RunningSim, dict]:
    """The simulator, and a harvester's environment with `seconds` of ten-minute slices
    seeded from the universe's first second."""
    sim = factory("--seed", "7", "--start", "2020-01-01", "--end", "2020-01-02",
                  "--rate-limit", "0")  # fmt: skip
    env = harvester_env(db_url, sim, **extra)
    seeded = run_harvester("seed", "timeslices", "--start", str(START), "--end",
                           str(START + seconds), "--stride", "600", env=env)  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    return sim, env


def start_serving_worker(env: dict) -> tuple[subprocess.Popen, str]:
    """`harvester work --follow` serving its metrics; the process and its metrics URL."""
    listen = f"127.0.0.1:{free_port()}"
    proc = start_worker("hv-1", env | {"CCMIRROR_METRICS_LISTEN": listen}, "--follow")
    return proc, f"http://{listen}/metrics"


def test_the_workers_ok_calls_are_the_simulators_calls(db_url, flickr_sim_factory, sql):
    sim, env = seeded_sim(flickr_sim_factory, db_url, HOUR, CCMIRROR_FLICKR_RATE_LIMIT="720000")
    proc, url = start_serving_worker(env)
    try:
        done = "SELECT COUNT(*) FROM search_tasks WHERE state <> 'done'"
        wait_for(lambda: sql(done)[0][0] == 0, 60, "every task done")
        photos = sql("SELECT COUNT(*) FROM flickr_timeslice_photos")[0][0]
        counted = "ccmirror_harvester_photos_total"
        wait_for(lambda: polled(url, counted) == photos, 20, "the last page counted")
        samples = scrape(url)
    finally:
        stop_cleanly(proc)
    assert photos > 0
    made = {m: n for m, n in sim.get("/_sim/stats")["calls"].items() if n}
    assert by_label(samples, "ccmirror_harvester_api_calls_total", "method", outcome="ok") == made
    assert not [s for s in samples if "outcome" in dict(s[1]) and dict(s[1])["outcome"] != "ok"]
    assert value(samples, "ccmirror_harvester_api_budget_calls_per_hour") == 720000
    assert value(samples, "ccmirror_harvester_rate_limit_wait_seconds_total") is not None
    # Counted at the start (then with each progress line, every half minute).
    tasks = by_label(samples, "ccmirror_harvester_search_tasks", "state")
    assert set(tasks) == {"pending", "running", "done", "failed"} and tasks["pending"] >= 6
    assert refused_connection(url)


def test_the_workers_failed_calls_are_counted_by_outcome(db_url, flickr_sim_factory, sql):
    sim, env = seeded_sim(
        flickr_sim_factory, db_url, 600, CCMIRROR_MAX_ATTEMPTS="1", CCMIRROR_FLICKR_RETRIES="1"
    )
    sim.control(fault_rate=1.0, faults=["5xx"], fault_methods=["flickr.photos.search"])
    proc, url = start_serving_worker(env)
    try:
        failed = "SELECT COUNT(*) FROM search_tasks WHERE state = 'failed'"
        wait_for(lambda: sql(failed)[0][0] == 1, 60, "the task failed")
        samples = scrape(url)
    finally:
        stop_cleanly(proc)
    search = "flickr.photos.search"
    outcomes = by_label(samples, "ccmirror_harvester_api_calls_total", "outcome", method=search)
    assert outcomes == {"http_error": 2}  # the call and its one retry


def test_a_bad_or_taken_metrics_address_stops_the_downloader_before_it_starts(queue_only):
    queue, spool = queue_only
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMIRROR_")} | {
        "CCMIRROR_CONFIG": "/dev/null",
        "CCMIRROR_QUEUE_URL": queue.url,
        "CCMIRROR_QUEUE_TOKEN": queue.tokens["dl-1"],
        "CCMIRROR_SPOOL": str(spool),
        "CCMIRROR_STORAGE": "ccmirror-storage@127.0.0.1",
    }
    with taken_address() as in_use:
        for listen, error in (
            ("127.0.0.1", "'listen' must be host:port"),
            ("127.0.0.1:99999", "the port must be 1 to 65535"),
            ("::1:9712", "an IPv6 address goes in brackets"),
            (in_use, f"cannot listen for metrics on {in_use} (metrics.listen)"),
        ):
            result = subprocess.run(
                [str(VENV_BIN / "downloader"), "run", "--once"],
                env=env | {"CCMIRROR_METRICS_LISTEN": listen},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 1, result.stderr
            assert error in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert queue.status()["leases_active"] == 0
    assert not (spool / "lease").exists() and not (spool / "status.json").exists()


def test_a_bad_or_taken_metrics_address_stops_the_worker_before_it_calls(
    db_url, flickr_sim_factory, sql
):
    sim, env = seeded_sim(flickr_sim_factory, db_url, 600)
    with taken_address() as in_use:
        for listen, error in (
            ("localhost:port", "the port must be 1 to 65535"),
            (in_use, f"cannot listen for metrics on {in_use}"),
        ):
            result = run_harvester("work", "--worker", "hv-1",
                                   env=env | {"CCMIRROR_METRICS_LISTEN": listen})  # fmt: skip
            assert result.returncode == 1, result.stderr
            assert error in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sql("SELECT state, worker FROM search_tasks") == [("pending", None)]
    assert sum(sim.get("/_sim/stats")["calls"].values()) == 0
