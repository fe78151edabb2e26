"""The Salt states applied for real: one droplet per role (master, db-1, hv-1, dl-1, st-1) in a
lab of this module's own, `lab up --highstate` as an operator runs it, then what the roles
promise checked from outside: MariaDB and the queue service on the database droplet, a push
to write-only storage from the downloader, the daemons running, and tests/infra run from the
master through testinfra's salt:// backend. One lab for the whole module; torn down even when
a test fails.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator

import pymysql
import pytest
import requests
import yaml

from lab import fleet, salt_master
from tests.lab.conftest import TestLab, make_lab, root_only

pytestmark = root_only
ROLES = ("master", "db-1", "hv-1", "dl-1", "st-1")
UP_SECONDS = 900
SUMMARY_LINE = re.compile(r"^  (\S+)\s+(ok|FAILED)\s+\d+ states, \d+ changed, \d+ failed$", re.M)


@pytest.fixture(scope="module")
def applied() -> Iterator[tuple[TestLab, subprocess.CompletedProcess]]:
    """The lab after `lab up --highstate`, with what that command printed."""
    lab = make_lab("h")
    try:
        result = lab.lab("up", "--droplets", ",".join(ROLES), "--highstate", timeout=UP_SECONDS)
        yield lab, result
    finally:
        lab.down()


@pytest.fixture(scope="module")
def lab(applied: tuple[TestLab, subprocess.CompletedProcess]) -> TestLab:
    test_lab, result = applied
    if result.returncode != 0:
        pytest.fail(f"lab up --highstate failed:\n{result.stdout[-6000:]}{result.stderr[-3000:]}")
    return test_lab


def own_pillar(lab: TestLab, minion: str) -> dict:
    """A minion's own secrets as the master's private pillar root gives them to it."""
    path = salt_master.private_pillar(lab.config) / "minions" / f"{minion}.sls"
    return yaml.safe_load(path.read_text())


def address(lab: TestLab, droplet: str) -> str:
    return lab.state().droplets[droplet].address


def test_first_highstate_succeeds_on_every_role(applied) -> None:
    lab, result = applied
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    summary = dict(SUMMARY_LINE.findall(result.stdout))
    assert summary == {droplet: "ok" for droplet in ROLES}, result.stdout[-6000:]
    # Progress came state by state, as each minion reported it.
    assert re.search(r"^  db-1\s+1/\d+ ok\s+\S+", result.stdout, re.M), result.stdout[:3000]


def test_second_highstate_changes_nothing(lab: TestLab) -> None:
    outcomes = fleet.highstate(lab.config, progress=lambda line: None, prepare_first=False)
    assert sorted(outcomes) == sorted(ROLES)
    for outcome in outcomes.values():
        assert outcome.ok, (outcome.minion, outcome.errors, outcome.failed)
        assert outcome.changed == [], (outcome.minion, outcome.changed)


def test_mariadb_serves_each_harvester_its_own_user(lab: TestLab) -> None:
    password = own_pillar(lab, "hv-1")["harvester"]["db_password"]
    conn = pymysql.connect(
        host=address(lab, "db-1"), user="hv-1", password=password, database="ccmirror"
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT MAX(version) FROM schema_migrations")  # `harvester migrate` ran
        assert cur.fetchone()[0] >= 1
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host=address(lab, "db-1"), user="hv-1", password="wrong", connect_timeout=5)


def test_queue_service_takes_a_real_token_and_refuses_none(lab: TestLab) -> None:
    base = f"http://{address(lab, 'db-1')}:{fleet.QUEUE_PORT}"
    status = requests.get(f"{base}/v1/status", timeout=10)
    assert status.status_code == 200 and "images" in status.json()
    assert requests.post(f"{base}/v1/leases", json={"max_items": 1}, timeout=10).status_code == 401
    token = own_pillar(lab, "dl-1")["downloader"]["queue_token"]
    leased = requests.post(
        f"{base}/v1/leases",
        json={"max_items": 1},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert leased.status_code == 200, leased.text
    wrong = requests.post(
        f"{base}/v1/leases",
        json={"max_items": 1},
        headers={"Authorization": f"Bearer {token}x"},
        timeout=10,
    )
    assert wrong.status_code == 401


def storage_ssh(lab: TestLab) -> str:
    """The ssh command the downloader's push uses: its key, the pinned host key, no prompts."""
    return (
        f"ssh -i /etc/ccmirror/storage_key -p {fleet.STORAGE_PORT}"
        " -o UserKnownHostsFile=/etc/ccmirror/known_hosts -o StrictHostKeyChecking=yes"
        " -o BatchMode=yes -o ConnectTimeout=10"
    )


def as_downloader(lab: TestLab, command: str) -> subprocess.CompletedProcess:
    """`command` on dl-1 as the daemon's user, the way its pushes run."""
    return lab.lab("shell", "dl-1", "--", "runuser", "-u", "ccmirror", "--", "sh", "-c", command)


def test_downloader_pushes_to_storage_with_its_key_and_gets_no_shell(lab: TestLab) -> None:
    name = f"lab-{secrets.token_hex(4)}.jpg"
    content = secrets.token_hex(16)
    target = f"ccmirror-storage@{address(lab, 'st-1')}"
    pushed = as_downloader(
        lab,
        f"cd /tmp && mkdir -p push/images/zz && echo {content} > push/images/zz/{name}"
        f" && rsync -a -e '{storage_ssh(lab)}' push/ {target}:",
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    stored = lab.shell("st-1", "cat", f"/srv/ccmirror-storage/images/zz/{name}")
    assert stored.strip() == content
    shell = as_downloader(lab, f"{storage_ssh(lab)} {target} id")
    assert shell.returncode != 0 and "uid=" not in shell.stdout, shell.stdout + shell.stderr


def test_daemons_run_under_their_units(lab: TestLab) -> None:
    for droplet, unit, program in (
        ("dl-1", "ccmirror-downloader", "downloader"),
        ("hv-1", "ccmirror-harvester", "harvester"),
        ("db-1", "ccmirror-queue", "harvester"),
        ("st-1", "ccmirror-storage-sshd", "sshd"),
    ):
        assert lab.shell(droplet, "systemctl", "is-active", unit).strip() == "active", unit
        assert program in lab.shell(droplet, "ps", "-eo", "args"), (droplet, program)


def test_infra_suite_passes_from_the_master(lab: TestLab) -> None:
    argv, env = fleet.infra_command(lab.config, ["-q"])
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 30, result.stdout[-2000:]
    assert "skipped" not in result.stdout.splitlines()[-1], result.stdout[-2000:]
