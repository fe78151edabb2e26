"""The lab's faults for real, in one lab of this module's own (db-1, dl-1, st-1 without Salt):
a daemon killed with -9 (and what the droplet's init does about it), a droplet's link down
and up, MariaDB restarted under a client, a droplet destroyed through the DigitalOcean
simulator and straight out of the lab. Each fault is checked from where the fleet would feel
it: the process, the network, the client's connection, the API's listing.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
import requests

from lab.fleet import faults
from lab.fleet.core import LabError
from lab.fleet.pids import pids_in_namespaces
from lab.fleet.systemd_restarts import restart_crashed
from lab.mission.mirror_check import lab_catalog, lab_storage_root
from lab.sims.digitalocean.service import start_simulator
from tests.conftest import VENV_BIN, wait_for
from tests.lab.conftest import TestLab, make_lab, root_only

pytestmark = root_only
UNIT = "ccmirror-fx.service"
# Restart= and RestartSec= as the downloader's unit has them, with a short delay: the init's
# loop then checks every second, so a restart it would make comes within two. The main
# process has a child, as the downloader has an rsync while it pushes.
UNIT_FILE = (
    "[Service]\nType=simple\nExecStart=/bin/sh -c 'sleep 600 & exec sleep 601'\n"
    "Restart=always\nRestartSec=1\n[Install]\nWantedBy=multi-user.target\n"
)
# MariaDB on db-1 as Salt's db state sets it up: its run directory, and listening on the
# droplet's address; a client user for the host.
MARIADB_SETUP = (
    "install -d -o mysql -g mysql /run/mysqld"
    " && printf '[mysqld]\\nbind-address = 0.0.0.0\\n' > /etc/mysql/mariadb.conf.d/99-fx.cnf"
    " && systemctl start mariadb"
)


@pytest.fixture(scope="module")
def lab() -> Iterator[TestLab]:
    test_lab = make_lab("f")
    try:
        test_lab.up("db-1", "dl-1", "st-1")
        yield test_lab
    finally:
        test_lab.down()


@pytest.fixture(scope="module")
def fx_password(lab: TestLab) -> str:
    password = secrets.token_hex(12)
    lab.shell("db-1", "sh", "-c", MARIADB_SETUP, timeout=120)
    grant = f"CREATE USER 'fx'@'%' IDENTIFIED BY '{password}'; GRANT ALL ON *.* TO 'fx'@'%';"
    lab.shell("db-1", "mariadb", "-e", grant)
    return password


def address(lab: TestLab, droplet: str) -> str:
    return lab.state().droplets[droplet].address


def test_kill_daemon_kills_the_main_process_and_the_lab_init_leaves_it_dead(
    lab: TestLab,
) -> None:
    lab.shell("dl-1", "sh", "-c", f"cat > /etc/systemd/system/{UNIT} << 'EOF'\n{UNIT_FILE}EOF")
    lab.shell("dl-1", "systemctl", "enable", "--now", UNIT)
    killed = faults.kill_daemon(lab.config, "dl-1", UNIT)

    assert not faults.is_running(killed.host_pid)
    assert len(killed.descendants) == 1 and faults.is_running(killed.descendants[0])
    assert is_active(lab, "dl-1", UNIT) == "failed"
    # docker-systemctl-replacement restarts only what it started at boot: within three of
    # its one-second loops it has not restarted this unit (a real systemd would have).
    restarted = poll(lambda: faults.main_pid(lab_droplet(lab, "dl-1"), UNIT), seconds=3.5)
    assert bool(restarted) is faults.RESTARTED_BY_LAB_INIT

    started = time.monotonic()
    new_pid = faults.restart_like_systemd(lab.config, killed)
    assert new_pid and new_pid != killed.pid
    assert time.monotonic() - started < 5
    assert not faults.is_running(killed.descendants[0])  # ended, as systemd's stop does
    assert is_active(lab, "dl-1", UNIT) == "active"
    host_pid = faults.host_pid(lab_droplet(lab, "dl-1"), new_pid)
    assert Path(f"/proc/{host_pid}/cmdline").read_bytes() == b"sleep\x00601\x00"


def test_systemd_restarts_leaves_a_running_unit_and_starts_a_crashed_one_again(
    lab: TestLab,
) -> None:
    """What the e2e's faults run beside them: a running unit is known from the init's record
    (read from the host), a crashed one is started again, with its new pid recorded."""
    unit = "ccmirror-fx-crash.service"
    lab.shell("st-1", "sh", "-c", f"cat > /etc/systemd/system/{unit} << 'EOF'\n{UNIT_FILE}EOF")
    lab.shell("st-1", "systemctl", "enable", "--now", unit)
    droplet = lab_droplet(lab, "st-1")
    running = faults.main_pid(droplet, unit)
    assert running and faults.recorded_main_pid(droplet, unit) == running
    assert restart_crashed(droplet, unit) is False
    assert faults.main_pid(droplet, unit) == running

    killed = faults.kill_daemon(lab.config, "st-1", unit)
    assert restart_crashed(droplet, unit) is True
    again = faults.main_pid(droplet, unit)
    assert again and again != killed.pid and faults.host_pid(droplet, again)
    assert faults.recorded_main_pid(droplet, unit) == again
    assert faults.recorded_main_pid(droplet, "ccmirror-nothing") == 0


def test_kill_daemon_of_a_stopped_unit_is_refused(lab: TestLab) -> None:
    with pytest.raises(LabError, match="no running main process"):
        faults.kill_daemon(lab.config, "st-1", "ccmirror-nothing.service")
    with pytest.raises(LabError, match="no droplet 'dl-9'"):
        faults.kill_daemon(lab.config, "dl-9", UNIT)


def test_link_down_cuts_the_droplet_off_until_link_up(lab: TestLab, fx_password) -> None:
    db = address(lab, "db-1")
    assert faults.greets(db, 3306)
    faults.link_down(lab.config, "db-1")
    try:
        assert not faults.greets(db, 3306)  # from the host
        probe = (  # from another droplet on the bridge
            f"import socket\ntry: socket.create_connection(({db!r}, 3306), timeout=1)\n"
            "except OSError: print('cut')\nelse: print('open')"
        )
        assert lab.shell("dl-1", "python3", "-c", probe).strip() == "cut"
        assert "NO-CARRIER" in lab.shell("db-1", "ip", "link", "show", "eth0")
    finally:
        faults.link_up(lab.config, "db-1")
    assert faults.greets(db, 3306)
    assert "NO-CARRIER" not in lab.shell("db-1", "ip", "link", "show", "eth0")


def test_restart_mariadb_cuts_clients_and_returns_when_it_answers(
    lab: TestLab, fx_password: str
) -> None:
    def connect() -> pymysql.Connection:
        return pymysql.connect(
            host=address(lab, "db-1"), user="fx", password=fx_password, connect_timeout=5
        )

    before = connect()
    with before.cursor() as cur:
        cur.execute("SELECT 1")
    started = time.monotonic()
    new_pid = faults.restart_mariadb(lab.config, "db-1")
    print(f"MariaDB restarted and answering in {time.monotonic() - started:.1f}s")
    assert new_pid == faults.main_pid(lab_droplet(lab, "db-1"), "mariadb")
    with pytest.raises(pymysql.err.OperationalError), before.cursor() as cur:
        cur.execute("SELECT 1")  # the old connection died with the old server
    with connect() as after, after.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
        assert int(cur.fetchone()[1]) < 60


def test_restart_mariadb_where_it_does_not_run_is_refused(lab: TestLab) -> None:
    with pytest.raises(LabError, match="mariadb is not running"):
        faults.restart_mariadb(lab.config, "st-1")


def test_destroy_droplet_through_the_simulator_removes_it_without_a_drain(lab: TestLab) -> None:
    sim = start_simulator(lab.config)
    try:
        headers = {"Authorization": f"Bearer {sim.token}"}
        body = {"name": "dl-2", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"}
        made = requests.post(sim.end_point + "droplets", json=body, headers=headers, timeout=30)
        assert made.status_code == 202, made.text
        wait_for(lambda: "dl-2" in lab.state().droplets, 60, "dl-2 to be a lab droplet")
        droplet = wait_for(lambda: alive(lab, "dl-2"), 60, "dl-2's PID 1")
        # A process mid-work in it, as a downloader holding a lease would be.
        worker = subprocess.Popen(
            [str(VENV_BIN / "lab"), "shell", "dl-2", "--", "sleep", "600"],
            env=lab.env,
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: sleeping_in(droplet), 10, "the work in dl-2 to start")

        faults.destroy_droplet(lab.config, "dl-2", do_api=sim)

        assert not droplet.alive()
        assert "dl-2" not in lab.state().droplets
        listed = requests.get(sim.end_point + "droplets", headers=headers, timeout=10).json()
        # Gone from the API too (the lab's core, made before the simulator, stays listed).
        assert "dl-2" not in [d["name"] for d in listed["droplets"]], listed
        assert worker.wait(timeout=10) != 0  # killed with its machine, not asked to stop
    finally:
        assert sim.stop() == 0


def test_destroy_droplet_without_the_simulator_takes_it_out_of_the_lab(lab: TestLab) -> None:
    result = lab.lab("add", "dl-3")
    assert result.returncode == 0, result.stdout + result.stderr
    droplet = lab.state().droplets["dl-3"]
    faults.destroy_droplet(lab.config, "dl-3")
    assert not droplet.alive() and "dl-3" not in lab.state().droplets
    with pytest.raises(LabError, match="no droplet 'dl-3'"):
        faults.destroy_droplet(lab.config, "dl-3")
    assert sorted(lab.state().droplets) == ["db-1", "dl-1", "st-1"]


def test_mirror_check_reads_the_lab_catalog_and_storage_from_the_host(
    lab: TestLab, fx_password: str
) -> None:
    """lab.mission.mirror_check's way into a lab: db-1's MariaDB as root over its socket (no
    password), st-1's storage through its PID 1's root."""
    with lab_catalog(lab.config, "db-1", database="mysql") as conn, conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchone()[0] == "root@localhost"
    lab.shell(
        "st-1",
        "sh",
        "-c",
        "mkdir -p /srv/ccmirror-storage/images && echo st > /srv/ccmirror-storage/images/x",
    )
    assert (lab_storage_root(lab.config, "st-1") / "images" / "x").read_text() == "st\n"
    assert not Path("/srv/ccmirror-storage/images/x").exists()


# ---------------------------------------------------------------------------- helpers
def poll(probe, seconds: float, interval: float = 0.2):
    """The first true value `probe` gives within `seconds`, or the last false one: for
    asserting that something does NOT happen within a bound set by what would cause it."""
    deadline = time.monotonic() + seconds
    value = probe()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = probe()
    return value


def lab_droplet(lab: TestLab, droplet_id: str):
    return lab.state().droplets[droplet_id]


def alive(lab: TestLab, droplet_id: str):
    droplet = lab.state().droplets.get(droplet_id)
    return droplet if droplet is not None and droplet.alive() and droplet.pidns else None


def is_active(lab: TestLab, droplet_id: str, unit: str) -> str:
    return lab.lab("shell", droplet_id, "--", "systemctl", "is-active", unit).stdout.strip()


def sleeping_in(droplet) -> bool:
    for pid in pids_in_namespaces({droplet.pidns}):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\x00"):
                return True
        except FileNotFoundError:
            continue
    return False
