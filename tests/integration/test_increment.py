"""New uploads every day (#21): `harvester seed increment` seeds whole days from the last
slice seeded up to a lag behind `--now`, and `harvester status` shows how far the done slices
reach without a gap. Real MariaDB; the Flickr simulator over HTTP for the harvest."""

from __future__ import annotations

import json
import math
import subprocess
import time

import yaml

from tests.conftest import VENV_BIN, harvester_env, run_harvester
from tests.integration.test_harvest import UNIVERSE

DAY = 86400
HOUR = 3600
START = 1577836800  # 2020-01-01, the simulated universe's first day


def increment(env, *options: str) -> dict:
    result = run_harvester("seed", "increment", "--json", *options, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def timeslices(sql) -> list[tuple[int, int]]:
    return [
        (int(lo), int(hi))
        for lo, hi in sql(
            "SELECT min_upload, max_upload FROM search_tasks WHERE source = 'timeslice'"
            " ORDER BY min_upload"
        )
    ]


def days(first: int, count: int) -> list[tuple[int, int]]:
    return [(first + n * DAY, first + (n + 1) * DAY - 1) for n in range(count)]


def status(env) -> dict:
    result = run_harvester("status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def config_starting_at(tmp_path, start: int):
    path = tmp_path / "harvester.yaml"
    path.write_text(yaml.safe_dump({"increment": {"start": start}}))
    return path


def test_it_seeds_whole_days_up_to_the_lag_once_and_a_missed_day_whole(db_url, sql):
    env = harvester_env(db_url)
    seeded = run_harvester(
        "seed", "timeslices", "--start", str(START), "--end", str(START + DAY), env=env
    )
    assert seeded.returncode == 0, seeded.stderr
    before = len(timeslices(sql))  # 144 ten-minute slices of the first day

    # Day 2 ends 23 hours before now: with the default 24-hour lag it must wait.
    assert increment(env, "--now", str(START + 2 * DAY + 23 * HOUR))["created"] == 0
    now = START + 3 * DAY + HOUR  # day 2 ended 25 hours ago, day 3 one hour ago
    done = increment(env, "--now", str(now))
    assert (done["start"], done["end"], done["created"]) == (START + DAY, START + 2 * DAY, 1)
    assert increment(env, "--now", str(now))["created"] == 0  # twice: nothing new
    # The schedule missed two days: the whole gap, a slice a day, and nothing overlaps.
    assert increment(env, "--now", str(now + 2 * DAY))["created"] == 2
    slices = timeslices(sql)
    assert slices[before:] == days(START + DAY, 3)
    assert len(slices) == before + 3


def test_with_no_slice_it_starts_at_the_settings_start_and_lag_and_stride_are_options(
    db_url, sql, tmp_path
):
    env = harvester_env(db_url, CCMIRROR_CONFIG=str(config_starting_at(tmp_path, START)))
    done = increment(env, "--now", str(START + 2 * DAY), "--lag", "0", "--stride", str(DAY // 2))
    assert done["created"] == 4
    assert timeslices(sql) == [
        (START + n * DAY // 2, START + (n + 1) * DAY // 2 - 1) for n in range(4)
    ]


def test_two_at_once_seed_each_slice_once(db_url, sql, tmp_path):
    env = harvester_env(db_url, CCMIRROR_CONFIG=str(config_starting_at(tmp_path, START)))
    argv = [str(VENV_BIN / "harvester"), "seed", "increment", "--lag", "0"]
    runs = [
        subprocess.Popen([*argv, "--now", str(START + n * DAY)], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in (5, 5, 6, 6)
    ]  # fmt: skip
    for run in runs:
        _, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
    assert timeslices(sql) == days(START, 6)


def test_bad_options_are_one_clear_error_and_seed_nothing(db_url, sql):
    env = harvester_env(db_url)
    for options, said in (
        (["--lag", "-1"], "--lag: must be 0 to 8760 hours"),
        (["--lag", "nan"], "--lag: must be 0 to 8760 hours"),
        (["--stride", "0"], "--stride: must be a positive whole number"),
        (["--now", "yesterday"], "--now: must be a positive whole number"),
    ):
        result = run_harvester("seed", "increment", *options, env=env)
        assert result.returncode == 2 and said in result.stderr, (options, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert sql("SELECT COUNT(*) FROM search_tasks") == [(0,)]


def test_status_shows_the_harvest_contiguous_from_the_first_slice_and_the_lag(
    db_url, sql, tmp_path
):
    env = harvester_env(db_url, CCMIRROR_CONFIG=str(config_starting_at(tmp_path, START)))
    assert status(env)["catalog_lag"] == {"harvested_until": None, "lag_seconds": None}
    increment(env, "--now", str(START + 4 * DAY), "--lag", "0")  # days 1-4, pending

    def done(*first_seconds: int) -> None:
        sql(
            "UPDATE search_tasks SET state = 'done' WHERE min_upload IN ("
            + ",".join(str(s) for s in first_seconds) + ")"
        )  # fmt: skip

    done(START + DAY, START + 2 * DAY)  # days 2 and 3: day 1 is not done yet
    assert status(env)["catalog_lag"]["harvested_until"] is None
    done(START)
    before = int(time.time())
    lag = status(env)["catalog_lag"]
    after = int(time.time())
    assert lag["harvested_until"] == START + 3 * DAY - 1  # day 4 is still pending
    assert before - lag["harvested_until"] <= lag["lag_seconds"] <= after - lag["harvested_until"]
    # A split-off child of day 2 not done yet holds the coverage back to the second before it.
    sql(
        "INSERT INTO search_tasks (task_key, source, min_upload, max_upload, cursor_max_upload,"
        " licenses, parent_id) VALUES ('child', 'timeslice', %s, %s, %s, '4,5', 1)",
        *[START + DAY + 77] * 3,
    )
    assert status(env)["catalog_lag"]["harvested_until"] == START + DAY + 76
    sql("UPDATE search_tasks SET state = 'done'")
    # A gap (day 5 never seeded, day 6 done) ends the coverage at day 4.
    sql(
        "INSERT INTO search_tasks (task_key, source, min_upload, max_upload, cursor_max_upload,"
        " state) VALUES ('day6', 'timeslice', %s, %s, %s, 'done')",
        *(START + 5 * DAY, START + 6 * DAY - 1, START + 6 * DAY - 1),
    )
    assert status(env)["catalog_lag"]["harvested_until"] == START + 4 * DAY - 1
    text = run_harvester("status", env=env).stdout
    assert "harvested up to 2020-01-04T23:59:59Z, " in text and " behind now" in text


def test_a_day_of_new_uploads_is_harvested_exactly_near_the_ideal_calls(
    db_url, sql, tmp_path, flickr_sim_factory
):
    sim = flickr_sim_factory(*UNIVERSE, "--rate-limit", "0")
    env = harvester_env(db_url, sim, CCMIRROR_CONFIG=str(config_starting_at(tmp_path, START)))
    assert increment(env, "--now", str(START + DAY), "--lag", "0")["created"] == 1
    calls_before = sim.search_calls()
    worked = run_harvester("work", "--worker", "hv-1", env=env)
    assert worked.returncode == 0, worked.stderr
    calls = sim.search_calls() - calls_before
    ids = [row[0] for row in sql("SELECT photo_id FROM flickr_timeslice_photos")]
    assert set(ids) == sim.truth(START, START + DAY - 1) and len(ids) == len(set(ids))
    # One slice for the day, walked newest first under the cap: ceil(n/500) calls (144 ten-
    # minute slices would cost 144 or more), plus at most 3 per second too dense to walk (the
    # page that found it is read again by its two license-split children, each of which ends
    # on a partial page). The universe has two such seconds that day.
    dense = sql("SELECT COUNT(*) FROM search_tasks WHERE parent_id IS NOT NULL")[0][0] // 2
    assert dense == 2
    assert calls <= math.ceil(len(ids) / 500) + 3 * dense, (calls, len(ids))
    assert status(env)["catalog_lag"]["harvested_until"] == START + DAY - 1
