"""New uploads every day (#21): db-1's minion schedule runs ccmirror_increment.run once a day
(salt/db/increment.sls), and that function, through Salt's own loader, seeds the new day,
waits for a real harvester to walk it (the simulator over HTTP, real MariaDB) and reconciles."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from lab.fleet.lab_secrets import write_lab_secrets
from tests.conftest import VENV_BIN, harvester_env
from tests.salt.conftest import MINIONS, ROOT, SITE, make_salt_call
from tests.salt.test_ccmirror_module import salt_call_process
from tests.salt.test_render import args

DAY = 86400
START = 1577836800  # 2020-01-01, the simulated universe's first day
# No hot spot: the calls a dense second costs are tests/integration/test_increment.py's.
UNIVERSE = ("--seed", "7", "--start", "2020-01-01", "--end", "2020-01-03")
UNIVERSE += ("--hot-window-every", "0", "--hot-second-every", "0")


def test_db_1_runs_the_increment_daily_on_its_own_schedule_unless_the_pillar_says_not(
    salt_call, salt_call_bin, tmp_path
):
    db = salt_call("db-1", "state.show_sls", "db.increment")
    schedule = args(db["db-increment-schedule-present"])
    assert schedule["name"] == "ccmirror-increment"
    assert schedule["function"] == "ccmirror_increment.run"
    assert (schedule["hours"], schedule["maxrunning"], schedule["run_on_start"]) == (24, 1, False)
    assert schedule["job_kwargs"] == {
        "lag_hours": 24.0,
        "stride": 86400,
        "start": 1072915200,
        "wait_hours": 12.0,
    }

    private = tmp_path / "private"
    write_lab_secrets(private, MINIONS, SITE)
    own = private / "minions" / "db-1.sls"
    pillar = yaml.safe_load(own.read_text())
    pillar.setdefault("db", {})["increment"] = {"enabled": False}
    own.write_text(yaml.safe_dump(pillar))
    off = make_salt_call(salt_call_bin, tmp_path / "salt", [ROOT / "pillar", private])
    db = off("db-1", "state.show_sls", "db.increment")
    assert "db-increment-schedule-present" not in db
    assert args(db["db-increment-schedule-absent"])["name"] == "ccmirror-increment"


def module_call(salt_call_bin: Path, tmp_path: Path, config: Path, *call: str):
    """`salt-call --local ccmirror_increment.*` as db-1 with this checkout's module and venv."""
    minion = {
        "file_client": "local",
        "root_dir": str(tmp_path / "root"),
        "module_dirs": [str(ROOT / "_modules")],
        "log_level": "quiet",
        "ccmirror": {"venv": str(VENV_BIN.parent), "migrate_config": str(config)},
    }
    (tmp_path / "minion").write_text(yaml.safe_dump(minion))
    return salt_call_process(salt_call_bin, tmp_path, "db-1", *call)


def test_the_scheduled_function_seeds_the_day_waits_for_the_harvest_and_reconciles(
    salt_call_bin, db_url, sql, flickr_sim_factory, tmp_path
):
    sim = flickr_sim_factory(*UNIVERSE, "--rate-limit", "0")
    config = tmp_path / "migrate.yaml"
    config.write_text(yaml.safe_dump({"db_url": db_url, "increment": {"start": START}}))
    refused = module_call(salt_call_bin, tmp_path, config, "ccmirror_increment.run", "lag_hours=-2")
    assert refused.returncode == 1
    said = json.loads(refused.stdout)["local"]
    assert said == {"result": False, "comment": "lag_hours must be a number from 0 to 8760, not -2"}
    assert sql("SELECT COUNT(*) FROM search_tasks") == [(0,)]
    day = (f"now={START + DAY + 3600}", "lag_hours=1", "poll_seconds=0.5")

    # No harvester running: the day is seeded, the wait ends, and the job fails saying so.
    alone = module_call(
        salt_call_bin, tmp_path, config, "ccmirror_increment.run", *day, "wait_hours=0"
    )
    assert alone.returncode == 1, alone.stdout + alone.stderr
    answer = json.loads(alone.stdout)["local"]
    assert answer["result"] is False and answer["tasks_left"] == 1
    assert "1 search task(s) still pending or running after 0h" in answer["comment"]
    assert answer["seeded"]["created"] == 1

    worker = subprocess.Popen(
        [str(VENV_BIN / "harvester"), "work", "--worker", "hv-1", "--follow"],
        env=harvester_env(db_url, sim),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = module_call(
            salt_call_bin, tmp_path, config, "ccmirror_increment.run", *day, "wait_hours=0.05"
        )
    finally:
        worker.terminate()
        worker.wait(30)
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)["local"]
    assert answer["seeded"]["created"] == 0 and answer["tasks_left"] == 0  # seeded already
    truth = sim.truth(START, START + DAY - 1)
    pending = {row[0] for row in sql("SELECT photo_id FROM images WHERE state = 'pending'")}
    assert pending == truth  # the day's CC photos are in the download queue
