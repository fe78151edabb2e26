"""#22's queue gauges on `harvester serve`'s /metrics (an old lease's age from the database's
own rows, the reaper's last sweep, the catalog's lag), and the batch jobs' success written
for node exporter's textfile collector by real `harvester` runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harvester.db import connect
from harvester.search.increment import harvested_until
from harvester.search.licenses import License, store_licenses
from lab.mission.catalog_images import fill_images
from lab.processes.queue import RunningQueue, spawn
from tests.conftest import harvester_env, run_harvester, wait_for
from tests.integration.test_metrics import polled
from tests.integration.test_storage_audit import mirror  # noqa: F401 (a fixture)

CC_BY = License(4, "Attribution License", "https://creativecommons.org/licenses/by/2.0/")
START = 1577836800  # 2020-01-01
DAY = 86400
AGE = 3600  # how much older the test makes a lease in the database


@pytest.fixture
def queue(db_url: str, tmp_path: Path) -> Iterator[RunningQueue]:
    conn = connect(db_url)
    store_licenses(conn, [CC_BY])
    fill_images(conn, 10)
    conn.close()
    running = spawn(db_url, tmp_path / "queue", ["dl-1"], settings={"reap_interval": "0.2"})
    yield running
    running.stop()


def test_the_queue_shows_its_oldest_lease_its_reaper_and_the_catalogs_lag(queue, db_url, sql):
    url = queue.url + "/metrics"
    started = time.time()
    reaped = wait_for(
        lambda: polled(url, "ccmirror_queue_lease_reaper_last_run_timestamp_seconds"),
        20,
        "a reaper sweep",
    )
    assert started - 5 <= reaped <= time.time()
    assert polled(url, "ccmirror_queue_oldest_lease_age_seconds") == 0
    assert polled(url, "ccmirror_catalog_lag_seconds") is None  # nothing harvested yet

    response = queue.post("/v1/leases", "dl-1", {"max_items": 2})
    assert response.status_code == 200, response.text
    # The lease is made an hour old where the queue reads it: no test waits an hour.
    sql("UPDATE leases SET created_at = created_at - INTERVAL %s SECOND", AGE)
    seeded = run_harvester("seed", "timeslices", "--start", str(START),
                           "--end", str(START + 2 * DAY), "--stride", str(DAY),
                           env=harvester_env(db_url))  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    sql("UPDATE search_tasks SET state = 'done' WHERE min_upload = %s", START)
    conn = connect(db_url)
    until = harvested_until(conn)
    conn.close()
    assert until == START + DAY - 1

    before = time.time()
    age = wait_for(
        lambda: (
            (polled(url, "ccmirror_queue_oldest_lease_age_seconds") or 0) >= AGE
            and polled(url, "ccmirror_queue_oldest_lease_age_seconds")
        ),
        20,
        "the old lease's age",
    )
    assert AGE <= age < AGE + 60
    lag = wait_for(lambda: polled(url, "ccmirror_catalog_lag_seconds"), 20, "the catalog lag")
    assert before - until - 60 <= lag <= time.time() - until


def job_success(directory: Path, job: str) -> float:
    """The success timestamp of `job`'s textfile, as node exporter reads it."""
    text = (directory / f"ccmirror_{job}.prom").read_text()
    (family,) = text_string_to_metric_families(text)
    (sample,) = family.samples
    assert (sample.name, sample.labels) == (
        "ccmirror_job_last_success_timestamp_seconds",
        {"job": job},
    )
    return sample.value


def test_the_daily_increment_records_its_success(db_url, tmp_path):
    textfiles = tmp_path / "node-exporter"
    textfiles.mkdir()
    env = harvester_env(db_url, CCMIRROR_METRICS_TEXTFILE_DIR=str(textfiles))
    bad = run_harvester("seed", "increment", "--lag", "-1", env=env)
    assert bad.returncode == 2 and not list(textfiles.iterdir())
    before = time.time()
    done = run_harvester("seed", "increment", "--now", str(START + 3 * DAY), env=env)
    assert done.returncode == 0, done.stderr
    assert before <= job_success(textfiles, "increment") <= time.time()
    assert [p.name for p in textfiles.iterdir()] == ["ccmirror_increment.prom"]  # no temp file


def test_an_audit_records_its_success_and_a_dry_or_failed_one_does_not(mirror, tmp_path):  # noqa: F811
    textfiles = tmp_path / "node-exporter"
    textfiles.mkdir()
    env = harvester_env(mirror.db_url, CCMIRROR_METRICS_TEXTFILE_DIR=str(textfiles))
    mirror.store()
    inventory = mirror.inventory()

    def audit(*args: str):
        return run_harvester("audit-storage", "--clock-margin", "0", *args, env=env, timeout=60)

    assert audit("--inventory", str(tmp_path / "none.tsv.gz")).returncode == 1
    assert audit("--inventory", str(inventory), "--dry-run").returncode == 0
    assert not list(textfiles.iterdir())
    before = time.time()
    result = audit("--inventory", str(inventory))
    assert result.returncode == 0, result.stderr
    assert before <= job_success(textfiles, "audit") <= time.time()

    # A directory that cannot be written: the audit still succeeds, and says so.
    env["CCMIRROR_METRICS_TEXTFILE_DIR"] = str(tmp_path / "missing")
    result = audit("--inventory", str(inventory))
    assert result.returncode == 0 and "audit succeeded, but" in result.stderr
