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

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from lab.processes.child import free_port
from lab.sims.flickr.process import RunningSim
from tests.conftest import VENV_BIN, harvester_env, run_harvester, wait_for
from tests.integration.test_downloader import (  # noqa: F401 (host, storage: fixtures)
    Fleet,
    host,
    make_fleet,
    photo_ids,
    storage,
)

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


def test_the_workers_ok_calls_are_the_simulators_calls(db_url, flickr_sim_factory, sql):
    sim: RunningSim = flickr_sim_factory("--seed", "7", "--start", "2020-01-01", "--end",
                                         "2020-01-02", "--rate-limit", "0")  # fmt: skip
    env = harvester_env(db_url, sim, CCMIRROR_FLICKR_RATE_LIMIT="720000")
    seeded = run_harvester("seed", "timeslices", "--start", str(START), "--end",
                           str(START + HOUR), "--stride", "600", env=env)  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    listen = f"127.0.0.1:{free_port()}"
    url = f"http://{listen}/metrics"
    proc = subprocess.Popen(
        [str(VENV_BIN / "harvester"), "work", "--worker", "hv-1", "--follow"],
        env=env | {"CCMIRROR_METRICS_LISTEN": listen},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
    assert refused_connection(url)


def test_the_workers_failed_calls_are_counted_by_outcome(db_url, flickr_sim_factory, sql):
    sim = flickr_sim_factory("--seed", "7", "--start", "2020-01-01", "--end", "2020-01-02",
                             "--rate-limit", "0")  # fmt: skip
    env = harvester_env(db_url, sim, CCMIRROR_MAX_ATTEMPTS="1", CCMIRROR_FLICKR_RETRIES="1")
    seeded = run_harvester("seed", "timeslices", "--start", str(START), "--end",
                           str(START + 600), env=env)  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    sim.control(fault_rate=1.0, faults=["5xx"], fault_methods=["flickr.photos.search"])
    listen = f"127.0.0.1:{free_port()}"
    url = f"http://{listen}/metrics"
    proc = subprocess.Popen(
        [str(VENV_BIN / "harvester"), "work", "--worker", "hv-1", "--follow"],
        env=env | {"CCMIRROR_METRICS_LISTEN": listen},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        failed = "SELECT COUNT(*) FROM search_tasks WHERE state = 'failed'"
        wait_for(lambda: sql(failed)[0][0] == 1, 60, "the task failed")
        search = "flickr.photos.search"
        samples = scrape(url)
    finally:
        stop_cleanly(proc)
    outcomes = by_label(samples, "ccmirror_harvester_api_calls_total", "outcome", method=search)
    assert outcomes == {"http_error": 2}  # the call and its one retry


@needs_root
def test_a_bad_or_taken_metrics_address_stops_the_downloader_before_it_leases(fleet):
    with taken_address() as in_use:
        for listen, error in (
            ("127.0.0.1", "'listen' must be host:port"),
            ("127.0.0.1:99999", "the port must be 1 to 65535"),
            ("::1:9712", "an IPv6 address goes in brackets"),
            (in_use, f"cannot listen for metrics on {in_use} (metrics.listen)"),
        ):
            result = fleet.run("run", "--once", CCMIRROR_METRICS_LISTEN=listen)
            assert result.returncode == 1, result.stderr
            assert error in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert fleet.sql("SELECT COUNT(*) FROM leases")[0][0] == 0
    assert not (fleet.spool / "lease").exists()


def test_a_bad_or_taken_metrics_address_stops_the_worker_before_it_calls(
    db_url, flickr_sim_factory, sql
):
    sim = flickr_sim_factory("--seed", "7", "--start", "2020-01-01", "--end", "2020-01-02")
    env = harvester_env(db_url, sim)
    seeded = run_harvester("seed", "timeslices", "--start", str(START), "--end",
                           str(START + 600), env=env)  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
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
