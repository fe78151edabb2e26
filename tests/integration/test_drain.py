"""Drain and resume with real processes: a downloader drained mid-lease holds no lease and
loses nothing, stays up saying `drained`, and leases again on `resume`; a harvester paused by
the queue's maintenance switch mid-task gives its task back and, after `maintenance off`,
finishes with exactly the photos of its range."""

from __future__ import annotations

import json
import signal

from tests.conftest import harvester_env, run_harvester, wait_for
from tests.integration import test_downloader, test_harvest
from tests.integration.test_downloader import (
    HELD_BY_A_WORKER,
    Fleet,
    assert_all_stored_once,
    photo_ids,
)
from tests.integration.test_harvest import DAY, START, seed_day, start_worker, stored_ids

# The fixtures that start a queue, an image host, storage and the Flickr simulator.
fleet, host, storage = test_downloader.fleet, test_downloader.host, test_downloader.storage
sim = test_harvest.sim
needs_root = test_downloader.pytestmark


def status(fleet: Fleet) -> dict:
    return json.loads(fleet.run("status", "--json").stdout)


@needs_root
def test_a_drained_downloader_holds_no_lease_loses_nothing_and_resumes(fleet):
    ids = photo_ids(fleet.sql)
    fleet.host.faults({i: "slow" for i in ids[2:12]})  # the lease stays well short of 80%
    proc = fleet.start()
    try:
        wait_for(lambda: fleet.results() >= 2, 60, "two fetches recorded")
        drain = fleet.run("drain", "--wait", "60")
        assert drain.returncode == 0, drain.stderr
        assert "drained" in drain.stdout
        state = status(fleet)
        assert state["phase"] == "drained" and state["running"] and state["drain_requested"]
        assert state["lease"] is None
        # No lease held: every photo is stored (once, with its file) or back to pending.
        assert fleet.sql(HELD_BY_A_WORKER) == [(0,)]
        states = dict(fleet.sql("SELECT photo_id, state FROM images"))
        stored = [i for i in ids if states[i] == "stored"]
        assert 2 <= len(stored) < 12 and all(states[i] in ("stored", "pending") for i in ids)
        assert len(fleet.stored_on_storage()) == len(stored)
        assert not (fleet.spool / "lease").exists()
        # Still up and still idle a moment later: a drained daemon takes nothing.
        leases = fleet.sql("SELECT COUNT(*) FROM leases")
        assert proc.poll() is None
        assert "drain requested" in fleet.run("status").stdout
        fleet.host.reset()
        resume = fleet.run("resume")
        assert resume.returncode == 0 and "leases again" in resume.stdout
        wait_for(
            lambda: (
                len(photo_ids(fleet.sql, "stored")) == len(ids)
                and not (fleet.spool / "lease").exists()
            ),
            60,
            "every photo stored and the spool clean",
        )
        assert fleet.sql("SELECT COUNT(*) FROM leases") > leases
        assert_all_stored_once(fleet)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    log = proc.stderr.read()
    assert "draining: released" in log and "drain request removed" in log, log


@needs_root
def test_a_lease_mostly_fetched_when_drained_is_finished_not_released(fleet):
    ids = photo_ids(fleet.sql)
    fleet.host.faults({ids[11]: "slow"})  # 11 of 12 fetched at once, the last 3 s later
    proc = fleet.start()
    try:
        wait_for(lambda: fleet.results() >= 11, 60, "eleven fetches recorded")
        assert fleet.run("drain", "--wait", "60").returncode == 0
        states = dict(fleet.sql("SELECT photo_id, state FROM images"))
        assert [states[i] for i in ids[:12]] == ["stored"] * 12  # the whole lease, slow one too
        assert all(states[i] == "pending" for i in ids[12:])  # and no second lease
        assert fleet.sql("SELECT COUNT(*) FROM leases") == [(1,)]
        assert len(fleet.stored_on_storage()) == 12
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    log = proc.stderr.read()
    assert "fetched, finishing it" in log and "released" not in log, log


@needs_root
def test_drain_wait_times_out_with_a_clear_message_and_the_request_stays(fleet):
    ids = photo_ids(fleet.sql)
    fleet.host.faults({ids[11]: "drip"})  # a byte at a time: it lasts until the fetch timeout
    proc = fleet.start()
    try:
        wait_for(lambda: fleet.results() >= 11, 60, "eleven fetches recorded")
        # 11 of 12 fetched: the lease is finished, not released, and its last photo holds
        # it for seconds, so the drain cannot be over within 0.3 s however fast the daemon.
        timed_out = fleet.run("drain", "--wait", "0.3")
        assert timed_out.returncode == 1
        assert "still draining after 0.3s" in timed_out.stderr, timed_out.stderr
        assert status(fleet)["drain_requested"]
        assert fleet.run("drain", "--wait", "60").returncode == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert fleet.sql(HELD_BY_A_WORKER) == [(0,)]
    # A drain request survives a restart: `run --once` takes no lease.
    leases = fleet.sql("SELECT COUNT(*) FROM leases")
    again = fleet.run("run", "--once")
    assert again.returncode == 0 and "drained" in again.stderr
    assert fleet.sql("SELECT COUNT(*) FROM leases") == leases


def test_maintenance_pauses_a_harvester_mid_task_and_off_resumes_it_exactly(db_url, sim, sql):
    env = harvester_env(
        db_url, sim, CCMIRROR_FLICKR_RATE_LIMIT="36000", CCMIRROR_WORKER_IDLE_POLL_SECONDS="0.2"
    )
    seed_day(env, stride=DAY)
    proc = start_worker("hv-1", env, "--follow")
    try:
        wait_for(
            lambda: sql(
                "SELECT cursor_page FROM search_tasks WHERE state = 'running'"
                " AND parent_id IS NULL AND cursor_page > 2"
            ),
            60,
            "the task to be mid-walk",
        )
        assert run_harvester("maintenance", "on", env=env).returncode == 0
        wait_for(
            lambda: sql("SELECT COUNT(*) FROM search_tasks WHERE state = 'running'") == [(0,)],
            30,
            "the paused worker to give its task back",
        )
        [(state, worker)] = sql("SELECT state, worker FROM search_tasks WHERE parent_id IS NULL")
        assert (state, worker) == ("pending", None)
        paused_at = len(stored_ids(sql))
        assert paused_at > 0
        assert proc.poll() is None
        assert sql("SELECT COUNT(*) FROM search_tasks WHERE state = 'running'") == [(0,)]
        assert run_harvester("maintenance", "off", env=env).returncode == 0
        wait_for(
            lambda: sql("SELECT DISTINCT state FROM search_tasks") == [("done",)],
            60,
            "the tasks to be done after maintenance off",
        )
        ids = stored_ids(sql)
        assert len(ids) > paused_at
        assert len(ids) == len(set(ids)) and set(ids) == sim.truth(START, START + DAY - 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    log = proc.stderr.read()
    assert "paused: maintenance mode" in log and "resuming" in log, log
