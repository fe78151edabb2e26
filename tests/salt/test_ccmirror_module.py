"""`_modules/ccmirror.py` through Salt's own loader (`salt-call --local` with module_dirs on
this checkout) against a real downloader: a real queue, image host and write-only storage,
and a real `downloader run` to drain and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from harvester.db import connect
from harvester.search.tasks import claim
from tests.conftest import harvester_env, run_harvester, wait_for
from tests.integration import test_downloader, test_harvest
from tests.integration.test_downloader import Fleet, assert_all_stored_once, photo_ids
from tests.integration.test_harvest import DAY, START, seed_day

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = Path(sys.executable).parent.parent
fleet, host, storage = test_downloader.fleet, test_downloader.host, test_downloader.storage
sim = test_harvest.sim
pytestmark = test_downloader.pytestmark  # sshd and useradd need root


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CCMIRROR_")}


def downloader_config(fleet: Fleet, path: Path, **changes: object) -> Path:
    env = fleet.env()
    settings = {
        "queue_url": env["CCMIRROR_QUEUE_URL"],
        "queue_token": env["CCMIRROR_QUEUE_TOKEN"],
        "worker": "dl-1",
        "spool": str(fleet.spool),
        "storage": env["CCMIRROR_STORAGE"],
        "storage_port": int(env["CCMIRROR_STORAGE_PORT"]),
        "ssh_key": env["CCMIRROR_SSH_KEY"],
        "known_hosts": env["CCMIRROR_KNOWN_HOSTS"],
        "batch_size": 12,
        "min_free_mb": 1,
        "fetch": {"timeout": 10, "allow_hosts": [env["CCMIRROR_FETCH_ALLOW_HOSTS"]]},
        "push": {"retry_seconds": 5},
    }
    path.write_text(yaml.safe_dump(settings | changes))
    return path


def module_caller(
    salt_call_bin: Path,
    config_dir: Path,
    config: Path,
    minion_id: str = "dl-1",
    settings: dict | None = None,
):
    """`salt-call --local ccmirror.*` as `minion_id`, with the module from this checkout and
    ccmirror's venv and downloader config pointed at the test's."""
    config_dir.mkdir(parents=True, exist_ok=True)
    minion = {
        "file_client": "local",
        "root_dir": str(config_dir / "root"),
        "module_dirs": [str(ROOT / "_modules")],
        "utils_dirs": [str(ROOT / "_utils")],  # arguments.py, as salt://_utils/ gives a droplet
        "log_level": "quiet",
        "ccmirror": {
            "venv": str(VENV),
            "downloader_config": str(config),
            "harvester_drain_file": str(config_dir / "harvester.drain"),
            **(settings or {}),
        },
    }
    (config_dir / "minion").write_text(yaml.safe_dump(minion))

    def call(*args: str) -> dict:
        result = salt_call_process(salt_call_bin, config_dir, minion_id, *args)
        # salt-call exits 1 when the return says `result: False`; the return is still JSON.
        assert result.returncode in (0, 1) and result.stdout, result.stdout + result.stderr
        answer = json.loads(result.stdout)["local"]
        assert result.returncode == (0 if answer.get("result", True) else 1), answer
        return answer

    return call


def salt_call_process(
    salt_call_bin: Path, config_dir: Path, minion_id: str, *args: str
) -> subprocess.CompletedProcess:
    """`salt-call --local --out=json ARGS` as `minion_id` with the config in `config_dir`."""
    return subprocess.run(
        [str(salt_call_bin), "-c", str(config_dir), "--local", "--id", minion_id]
        + ["--out=json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(),
    )


def test_a_failure_exits_non_zero_with_one_clear_error(salt_call_bin, tmp_path):
    """What scripts and orchestration see: the exit status. A failed drain still prints its
    report; a bad argument or the wrong minion is one line on stderr, no traceback."""
    missing = tmp_path / "no-such" / "downloader.yaml"

    def run(minion_id: str, *args: str) -> subprocess.CompletedProcess:
        config_dir = tmp_path / minion_id
        module_caller(salt_call_bin, config_dir, missing, minion_id)  # writes the config
        return salt_call_process(salt_call_bin, config_dir, minion_id, *args)

    drained = run("dl-1", "ccmirror.drain", "wait=1")
    assert drained.returncode == 1, drained.stdout + drained.stderr
    report = json.loads(drained.stdout)["local"]
    assert report["result"] is False and f"cannot read config {missing}" in report["comment"]

    for minion_id, args, message in (
        ("dl-1", ["ccmirror.drain", "wait=soon"], "wait must be a number of seconds; not 'soon'"),
        ("dl-1", ["ccmirror.drain", "wait=-5"], "wait must be from 0 to 86400 seconds"),
        (
            "hv-9",
            ["ccmirror.check_storage"],
            "check_storage runs on downloader minions only; hv-9 is a harvester minion",
        ),
        ("db-1", ["ccmirror.maintenance", "sideways"], "action must be on, off or status"),
    ):
        refused = run(minion_id, *args)
        assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
        assert message in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stdout + refused.stderr, args

    nothing = run("st-1", "ccmirror.drain", "wait=1")
    assert nothing.returncode == 0, nothing.stdout + nothing.stderr
    assert json.loads(nothing.stdout)["local"]["result"] is True


def test_status_and_check_storage_with_the_right_and_a_wrong_key(fleet, salt_call_bin, tmp_path):
    call = module_caller(
        salt_call_bin, tmp_path / "minion", downloader_config(fleet, tmp_path / "dl.yaml")
    )
    status = call("ccmirror.status")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert (status["id"], status["role"], status["installed"]) == ("dl-1", "downloader", True)
    assert status["version"] == version
    assert status["work"]["phase"] == "never ran" and status["service"]["name"]

    checked = call("ccmirror.check_storage")
    assert checked["result"] is True, checked
    probe = fleet.storage.root / "manifests" / "probe" / "dl-1.txt"
    assert probe.read_text().startswith("dl-1 ")
    first = probe.read_text()
    assert call("ccmirror.check_storage")["result"] is True  # the key cannot delete: overwrite
    assert probe.read_text() != first

    wrong_key = tmp_path / "wrong_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)], check=True
    )
    wrong = module_caller(
        salt_call_bin,
        tmp_path / "minion-wrong",
        downloader_config(fleet, tmp_path / "wrong.yaml", ssh_key=str(wrong_key)),
    )
    refused = wrong("ccmirror.check_storage")
    assert refused["result"] is False
    assert "push to" in refused["comment"] and "Traceback" not in refused["comment"], refused
    assert "Permission denied" in refused["comment"], refused


def test_drain_and_resume_a_running_downloader(fleet, salt_call_bin, tmp_path):
    config = downloader_config(fleet, tmp_path / "dl.yaml")
    call = module_caller(salt_call_bin, tmp_path / "minion", config)
    ids = photo_ids(fleet.sql)
    fleet.host.faults({i: "slow" for i in ids[2:12]})
    proc = subprocess.Popen(
        [str(VENV / "bin" / "downloader"), "--config", str(config), "run"],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: fleet.results() >= 2, 60, "two fetches recorded")
        drained = call("ccmirror.drain", "wait=60")
        assert drained["result"] is True, drained
        assert drained["work"]["phase"] == "drained" and drained["work"]["lease"] is None
        assert fleet.sql("SELECT COUNT(*) FROM images WHERE lease_id <> 0") == [(0,)]
        again = call("ccmirror.drain", "wait=5")  # safe to run twice
        assert again["result"] is True
        status = call("ccmirror.status")
        assert status["work"]["phase"] == "drained" and status["work"]["running"]
        fleet.host.reset()
        assert call("ccmirror.resume")["result"] is True
        wait_for(
            lambda: (
                len(photo_ids(fleet.sql, "stored")) == len(ids)
                and not (fleet.spool / "lease").exists()
            ),
            60,
            "every photo stored after resume",
        )
        assert_all_stored_once(fleet)
        assert "was not drained" in call("ccmirror.resume")["comment"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def harvester_config(db_url: str, sim, path: Path) -> Path:
    if sim is None:  # only the database: the worker is not started
        path.write_text(yaml.safe_dump({"db_url": db_url}))
        return path
    settings = {
        "db_url": db_url,
        "flickr": {
            "api_url": sim.api_url,
            "api_key": sim.key,
            "rate_limit_per_hour": 7200,  # 2 calls a second: the task outlasts salt-call
            "retry_backoff": 0.05,
            "timeout": 5,
        },
        "worker": {"idle_poll_seconds": 0.2, "backoff_seconds": 0.2},
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def frozen_mid_walk(proc: subprocess.Popen, sql) -> bool:
    """Stop the worker; True when it holds a task past its second page, else let it go on."""
    proc.send_signal(signal.SIGSTOP)
    if sql("SELECT 1 FROM search_tasks WHERE state = 'running' AND cursor_page > 2"):
        return True
    proc.send_signal(signal.SIGCONT)
    return False


def test_maintenance_switch_and_a_harvester_drained_and_resumed(
    db_url, sim, sql, salt_call_bin, tmp_path
):
    config = harvester_config(db_url, sim, tmp_path / "harvester.yaml")
    drain_file = tmp_path / "hv" / "harvester.drain"
    minion = {"harvester_config": str(config), "queue_config": str(config)}
    db = module_caller(salt_call_bin, tmp_path / "db", config, "db-1", minion)
    hv = module_caller(salt_call_bin, tmp_path / "hv", config, "hv-1", minion)
    # The queue's switch, twice each way: safe to run twice.
    for _ in range(2):
        switched = db("ccmirror.maintenance", "on", "retry_after=120")
        assert switched["result"] and switched["maintenance"] is True, switched
    assert sql("SELECT value FROM queue_settings WHERE name = 'maintenance'") == [("on",)]
    assert db("ccmirror.status")["work"]["maintenance"] is True
    for _ in range(2):
        assert db("ccmirror.maintenance", "off")["maintenance"] is False

    env = clean_env() | {"CCMIRROR_HARVESTER_DRAIN_FILE": str(drain_file)}
    assert (
        run_harvester(
            "--config",
            str(config),
            "seed",
            "timeslices",
            "--start",
            "2020-01-01",
            "--end",
            "2020-01-02",
            "--stride",
            str(DAY),
            env=env,
        ).returncode
        == 0
    )
    proc = subprocess.Popen(
        [
            str(VENV / "bin" / "harvester"),
            "--config",
            str(config),
            "work",
            "--worker",
            "hv-1",
            "--follow",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Frozen mid-walk (SIGSTOP), so the task is still in hand while salt-call, seconds on
        # a loaded machine, reads it: the test does not race the walk.
        wait_for(lambda: frozen_mid_walk(proc, sql), 60, "the task to be mid-walk")
        try:
            assert hv("ccmirror.status")["work"]["tasks"], "the task in hand is shown"
        finally:
            proc.send_signal(signal.SIGCONT)
        drained = hv("ccmirror.drain", "wait=30")
        assert drained["result"] is True, drained
        assert drained["work"] == {"drain_requested": True, "tasks": []}
        assert sql("SELECT COUNT(*) FROM search_tasks WHERE state = 'running'") == [(0,)]
        assert proc.poll() is None
        assert hv("ccmirror.resume")["comment"] == "resumed"
        wait_for(
            lambda: sql("SELECT DISTINCT state FROM search_tasks") == [("done",)],
            60,
            "the task to be done after resume",
        )
        ids = [row[0] for row in sql("SELECT photo_id FROM flickr_timeslice_photos")]
        assert len(ids) == len(set(ids)) and set(ids) == sim.truth(START, START + DAY - 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert "paused: drain requested" in proc.stderr.read()


def test_status_reads_the_installed_version_and_tasks_without_running_python(
    db_url, salt_call_bin, tmp_path
):
    """An older ccmirror (deploy.release reads the fleet's version before upgrading) is read
    from its metadata, and the worker's task comes from `harvester tasks`: a venv with no
    `python` in it still answers."""
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    for name, version in (("ccmirror", "0.0.9"), ("ccmirror-lab", "9.9.9")):
        metadata = site / f"{name.replace('-', '_')}-{version}.dist-info" / "METADATA"
        metadata.parent.mkdir(parents=True)
        metadata.write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n")
    (venv / "bin").mkdir()
    (venv / "bin" / "harvester").symlink_to(VENV / "bin" / "harvester")
    seed_day(harvester_env(db_url), stride=3600)
    conn = connect(db_url)
    held = claim(conn, "hv-1", 600)
    conn.close()
    config = harvester_config(db_url, None, tmp_path / "harvester.yaml")
    settings = {"venv": str(venv), "harvester_config": str(config)}
    hv = module_caller(salt_call_bin, tmp_path / "hv", config, "hv-1", settings)
    status = hv("ccmirror.status")
    assert (status["installed"], status["version"]) == (True, "0.0.9"), status
    assert [(t["id"], t["page"]) for t in status["work"]["tasks"]] == [(held.id, 1)], status
