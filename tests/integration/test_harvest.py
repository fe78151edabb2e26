"""The harvester end to end: real MariaDB, the Flickr simulator over HTTP, real processes."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from harvester.migrate import available_migrations
from lab.sims.flickr.process import RunningSim
from tests.conftest import (
    VENV_BIN,
    harvester_env,
    run_harvester,
    wait_for,
)

DAY = 86400
START = 1577836800  # 2020-01-01, the simulated universe's first day
UNIVERSE = (
    "--seed",
    "7",
    "--start",
    "2020-01-01",
    "--end",
    "2020-01-03",
    "--hot-window-every",
    "70",
    "--hot-second-every",
    "100",
)


@pytest.fixture
def sim(flickr_sim_factory) -> RunningSim:
    sim = flickr_sim_factory(*UNIVERSE, "--rate-limit", "0")
    hot = sim.get("/_sim/hotspots", min_upload_date=START, max_upload_date=START + DAY - 1)
    kinds = {h["kind"] for h in hot["hotspots"]}
    assert kinds == {"window", "second"}, f"the test day needs both kinds of hot spot: {hot}"
    return sim


def seed_day(env, stride: int = 600) -> None:
    result = run_harvester(
        "seed",
        "timeslices",
        "--start",
        "2020-01-01",
        "--end",
        "2020-01-02",
        "--stride",
        str(stride),
        env=env,
    )
    assert result.returncode == 0, result.stderr


def stored_ids(sql, table: str = "flickr_timeslice_photos") -> list[int]:
    return [row[0] for row in sql(f"SELECT photo_id FROM {table}")]


def start_worker(worker: str, env, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(VENV_BIN / "harvester"), "work", "--worker", worker, *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_harvest_stores_exactly_the_cc_photos_of_the_range(db_url, sim, sql):
    env = harvester_env(db_url, sim)
    seed_day(env)
    result = run_harvester("work", "--worker", "hv-1", env=env)
    assert result.returncode == 0, result.stderr
    assert "144 tasks done" in result.stdout or "tasks done" in result.stdout

    truth = sim.truth(START, START + DAY - 1)
    ids = stored_ids(sql)
    assert len(ids) == len(set(ids)) and set(ids) == truth
    assert (
        sql(
            "SELECT COUNT(*) FROM flickr_timeslice_photos p JOIN licenses l"
            " ON l.id = p.license_id WHERE NOT l.is_cc"
        )[0][0]
        == 0
    )
    # The hot second was split by license; no task is left unfinished.
    assert sql("SELECT state, COUNT(*) FROM search_tasks GROUP BY state")[0][0] == "done"
    assert sql("SELECT COUNT(*) FROM search_tasks WHERE licenses IS NOT NULL")[0][0] >= 2
    # Owners who disallow originals get the largest other size, and it is recorded.
    sizes = {row[0] for row in sql("SELECT DISTINCT image_size FROM flickr_timeslice_photos")}
    assert "o" in sizes and sizes - {"o"}

    status = run_harvester("status", "--json", env=env)
    report = json.loads(status.stdout)
    assert report["photos"]["timeslice"] == len(truth)
    assert report["tasks"]["pending"] == 0 and report["tasks"]["done"] >= 144
    assert report["api_calls"] == sim.search_calls() + 1  # + the getInfo call


def test_two_workers_share_the_tasks_and_none_is_done_twice(db_url, sim, sql):
    env = harvester_env(db_url, sim)
    seed_day(env)
    workers = [start_worker(name, env) for name in ("hv-1", "hv-2")]
    for proc in workers:
        proc.wait(300)
        assert proc.returncode == 0, proc.stderr.read()
    assert set(stored_ids(sql)) == sim.truth(START, START + DAY - 1)
    assert sql("SELECT MIN(completions), MAX(completions) FROM search_tasks") == [(1, 1)]
    workers_seen = {row[0] for row in sql("SELECT DISTINCT worker FROM api_call_minutes")}
    assert workers_seen == {"hv-1", "hv-2"}


def test_a_killed_worker_resumes_from_its_cursor(db_url, database, sim, sql, mariadb):
    # Baseline: the calls an uninterrupted harvest of the same range makes.
    env = harvester_env(db_url, sim)
    seed_day(env, stride=DAY)  # one task: it walks all its windows under one lease
    before = sim.search_calls()
    assert run_harvester("work", "--worker", "hv-1", env=env).returncode == 0
    baseline = sim.search_calls() - before
    truth = sim.truth(START, START + DAY - 1)
    assert set(stored_ids(sql)) == truth

    # Again, into an empty catalog, with a slow key so the kill lands mid-task.
    sql("DELETE FROM flickr_timeslice_photos")
    sql(
        "UPDATE search_tasks SET state = 'pending', cursor_max_upload = max_upload,"
        " cursor_page = 1, window_seen = 0, window_oldest = NULL, completions = 0"
    )
    sql("DELETE FROM search_tasks WHERE parent_id IS NOT NULL")
    slow = harvester_env(
        db_url, sim, CCMIRROR_FLICKR_RATE_LIMIT="72000", CCMIRROR_LEASE_SECONDS="2"
    )
    before = sim.search_calls()
    proc = start_worker("hv-1", slow)
    wait_for(
        lambda: sql("SELECT COUNT(*) FROM flickr_timeslice_photos")[0][0] >= 3000,
        60,
        "a few pages stored",
    )
    proc.kill()
    proc.wait()
    assert sql("SELECT state, worker FROM search_tasks WHERE parent_id IS NULL") == [
        ("running", "hv-1")
    ]

    # Another worker takes the task over once the lease has expired.
    result = run_harvester("work", "--worker", "hv-2", env=slow)
    assert result.returncode == 0, result.stderr
    ids = stored_ids(sql)
    assert len(ids) == len(set(ids)) and set(ids) == truth
    # Resumed, not restarted: at most the page in flight when killed was fetched twice.
    assert sim.search_calls() - before <= baseline + 2


def test_faults_on_a_fifth_of_calls_still_give_the_exact_set(db_url, flickr_sim_factory, sql):
    sim = flickr_sim_factory(
        *UNIVERSE, "--rate-limit", "0", "--fault-rate", "0.2", "--slow-seconds", "1.5"
    )
    env = harvester_env(db_url, sim, CCMIRROR_FLICKR_TIMEOUT="1")
    seed_day(env)
    result = run_harvester("work", "--worker", "hv-1", env=env)
    assert result.returncode == 0, result.stderr
    assert set(stored_ids(sql)) == sim.truth(START, START + DAY - 1)
    assert sql("SELECT COUNT(*) FROM search_tasks WHERE state <> 'done'")[0][0] == 0
    assert sim.get("/_sim/stats")["faults"] > 20


def test_a_task_that_keeps_failing_is_failed_with_its_reason_and_stores_nothing(
    db_url, flickr_sim_factory, sql
):
    sim = flickr_sim_factory(*UNIVERSE, "--rate-limit", "0")
    env = harvester_env(db_url, sim, CCMIRROR_MAX_ATTEMPTS="2", CCMIRROR_FLICKR_RETRIES="1")
    result = run_harvester(
        "seed",
        "timeslices",
        "--start",
        "2020-01-01T00:00:00",
        "--end",
        "2020-01-01T00:20:00",
        env=env,
    )
    assert result.returncode == 0
    sim.control(fault_rate=1.0, faults=["malformed"], fault_methods=["flickr.photos.search"])
    result = run_harvester("work", "--worker", "hv-1", env=env)
    assert result.returncode == 0, result.stderr
    rows = sql("SELECT state, attempts, last_error FROM search_tasks")
    assert len(rows) == 2
    for state, attempts, error in rows:
        assert (state, attempts) == ("failed", 2) and "malformed" in error
    assert stored_ids(sql) == []


def test_sigterm_gives_the_lease_back(db_url, sim, sql):
    env = harvester_env(db_url, sim, CCMIRROR_FLICKR_RATE_LIMIT="36000")
    seed_day(env, stride=DAY)
    proc = start_worker("hv-1", env)
    wait_for(
        lambda: sql(
            "SELECT cursor_page FROM search_tasks WHERE state = 'running'"
            " AND parent_id IS NULL AND cursor_page > 2"
        ),
        60,
        "the task to be mid-walk",
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "(stopped)" in proc.stdout.read()
    [(state, worker, page)] = sql(
        "SELECT state, worker, cursor_page FROM search_tasks WHERE parent_id IS NULL"
    )
    assert (state, worker) == ("pending", None) and page > 2
    assert sql("SELECT COUNT(*) FROM search_tasks WHERE state = 'running'") == [(0,)]


def test_new_cc_license_is_found_through_getinfo(db_url, flickr_sim_factory, sql):
    sim = flickr_sim_factory(*UNIVERSE, "--rate-limit", "0", "--new-license")
    env = harvester_env(db_url, sim)
    run_harvester(
        "seed",
        "timeslices",
        "--start",
        "2020-01-01T06:00:00",
        "--end",
        "2020-01-01T12:00:00",
        env=env,
    )
    assert run_harvester("work", "--worker", "hv-1", env=env).returncode == 0
    assert set(stored_ids(sql)) == sim.truth(START + 6 * 3600, START + 12 * 3600 - 1)
    assert sql("SELECT COUNT(*) FROM flickr_timeslice_photos WHERE license_id = 17")[0][0] > 0


def test_query_tasks_harvest_every_match(db_url, sim, sql, tmp_path):
    from lab.sims.flickr.universe import Universe

    queries = tmp_path / "queries.txt"
    queries.write_text("# search terms\nsunset\n\nriver  bridge\nSUNSET\n")
    env = harvester_env(db_url, sim)
    args = ("seed", "queries", str(queries), "--start", "2020-01-01", "--end", "2020-01-03")
    assert run_harvester(*args, env=env).stdout.strip() == "created 2 search tasks"
    assert run_harvester(*args, env=env).stdout.strip() == "created 0 search tasks"
    assert run_harvester("work", "--worker", "hv-1", env=env).returncode == 0

    universe = Universe(
        seed=7, start=START, end=START + 2 * DAY, hot_window_every=70, hot_second_every=100
    )
    cc = universe.cc_license_ids()
    expected = {
        p.id
        for text in ("sunset", "river bridge")
        for p in universe.search(START, START + 2 * DAY - 1, cc, text)
    }
    assert expected and set(stored_ids(sql, "flickr_query_photos")) == expected


def test_bad_input_is_one_line_and_changes_nothing(db_url, sim, sql):
    env = harvester_env(db_url, sim)
    seed_day(env)
    before = sql("SELECT COUNT(*), SUM(state = 'pending') FROM search_tasks")

    cases = [
        (
            ("seed", "timeslices", "--start", "yesterday", "--end", "2020-01-02"),
            {},
            2,
            "not a date",
        ),
        (
            ("seed", "timeslices", "--start", "2020-01-02", "--end", "2020-01-01"),
            {},
            1,
            "--end must be after --start",
        ),
        (("work", "--wrkr", "x"), {}, 2, "unrecognized arguments"),
        (("work",), {"CCMIRROR_FLICKR_API_URL": sim.base_url + "/"}, 1, "Flickr"),
        (("work",), {"CCMIRROR_FLICKR_API_KEY": "wrong"}, 1, "Invalid API Key"),
        (
            ("status",),
            {"CCMIRROR_DB_URL": "mysql://u:secret@127.0.0.1:1/x"},
            1,
            "cannot connect to the database at 127.0.0.1:1/x",
        ),
    ]
    for args, extra, code, message in cases:
        result = run_harvester(*args, env={**env, **extra})
        assert result.returncode == code, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
        assert "secret" not in result.stderr and sim.key not in result.stderr
    assert sql("SELECT COUNT(*), SUM(state = 'pending') FROM search_tasks") == before
    assert stored_ids(sql) == [] and sql("SELECT COUNT(*) FROM licenses")[0][0] == 0


def test_a_following_worker_waits_for_new_tasks_until_sigterm(db_url, sim, sql):
    env = harvester_env(db_url, sim, CCMIRROR_WORKER_IDLE_POLL_SECONDS="0.2")
    proc = start_worker("hv-1", env, "--follow")
    try:
        # Licenses stored means it got past its start; with no task it must still be there.
        wait_for(lambda: sql("SELECT COUNT(*) FROM licenses")[0][0] > 0, 30, "the worker to start")
        assert proc.poll() is None, proc.stderr.read()
        seed_day(env, stride=DAY)
        wait_for(
            lambda: sql("SELECT DISTINCT state FROM search_tasks") == [("done",)],
            120,
            "the tasks seeded later to be done",
        )
        assert proc.poll() is None
        ids = stored_ids(sql)
        assert len(ids) == len(set(ids)) and set(ids) == sim.truth(START, START + DAY - 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert "(stopped)" in proc.stdout.read()


def test_migrate_is_idempotent_and_records_versions(database):
    env = harvester_env(database)
    first = run_harvester("migrate", env=env)
    assert first.returncode == 0 and "applied 0001" in first.stdout
    second = run_harvester("migrate", env=env)
    assert second.returncode == 0 and "applied" not in second.stdout
    # The newest version, not the count: migrations are numbered per branch (#21's helpers).
    assert f"schema version {available_migrations()[-1].version}" in second.stdout


def test_the_harvesters_state_as_json(database):
    env = harvester_env(database)
    versions = [m.version for m in available_migrations()]
    first = run_harvester("migrate", "--json", env=env)
    assert first.returncode == 0, first.stderr
    migrated = json.loads(first.stdout)
    assert [m["version"] for m in migrated["applied"]] == versions
    assert migrated["version"] == versions[-1]
    again = json.loads(run_harvester("migrate", "--json", env=env).stdout)
    assert again == {"applied": [], "version": versions[-1]}

    status = json.loads(run_harvester("status", "--json", env=env).stdout)
    assert sum(status["tasks"].values()) == 0
    on = run_harvester("maintenance", "on", "--retry-after", "60", "--json", env=env)
    assert json.loads(on.stdout) == {"on": True, "retry_after": 60}
    state = run_harvester("maintenance", "status", "--json", env=env)
    assert json.loads(state.stdout) == {"on": True, "retry_after": 60}
    off = run_harvester("maintenance", "off", env=env)
    assert off.stdout == "maintenance off\n"


def test_commands_refuse_an_unmigrated_database(database):
    result = run_harvester("status", env=harvester_env(database))
    assert result.returncode == 1 and "harvester migrate" in result.stderr


def test_reseeding_creates_nothing_twice_and_misaligned_seeds_are_refused(db_url, sql):
    env = harvester_env(db_url)
    seed_day(env)
    seed_day(env)
    assert sql("SELECT COUNT(*) FROM search_tasks")[0][0] == 144
    result = run_harvester(
        "seed",
        "timeslices",
        "--start",
        "2020-01-01T00:05:00",
        "--end",
        "2020-01-01T02:00:00",
        env=env,
    )
    assert result.returncode == 1 and "other boundaries" in result.stderr
    assert sql("SELECT COUNT(*) FROM search_tasks")[0][0] == 144
    # Slices tile the range: no gap, no overlap.
    bounds = sql("SELECT min_upload, max_upload FROM search_tasks ORDER BY min_upload")
    assert bounds[0][0] == START and bounds[-1][1] == START + DAY - 1
    assert all(a[1] + 1 == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


def test_mariadb_restarted_mid_harvest_loses_nothing(db_url, sim, sql, mariadb):
    # Two calls a second: the day's ~45 calls outlast the server's restart by far.
    env = harvester_env(db_url, sim, CCMIRROR_FLICKR_RATE_LIMIT="7200")
    seed_day(env, stride=3 * 3600)
    proc = start_worker("hv-1", env)
    wait_for(
        lambda: sql("SELECT COUNT(*) FROM flickr_timeslice_photos")[0][0] >= 1000,
        60,
        "a few pages stored",
    )
    mariadb.stop()
    assert proc.poll() is None
    mariadb.ensure_running()
    assert proc.wait(120) == 0, proc.stderr.read()
    assert "database connection lost" in proc.stderr.read()
    ids = stored_ids(sql)
    assert len(ids) == len(set(ids)) and set(ids) == sim.truth(START, START + DAY - 1)
    assert sql("SELECT MIN(completions), MAX(completions) FROM search_tasks") == [(1, 1)]
