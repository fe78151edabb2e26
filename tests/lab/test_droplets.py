"""The lab's droplets for real: namespaces, a bridge and overlays built by `lab up` (root only).

Each lab here has its own directory, bridge and /24 (one not routed on this host yet), so the
tests never touch an operator's lab or another test run's; every lab is torn down with
`lab down` even when a test fails. Traffic goes only to the lab's own addresses: the one
outside address used is refused by the droplet's routing table before any packet leaves.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.fleet import netns
from lab.fleet.core import LabConfig, LabError, LabState, lock_path
from lab.fleet.droplets import add, parse_ids, remove_droplet, up
from lab.fleet.pids import is_launcher, mentions, pids_in_namespaces
from lab.fleet.salt_master import master_pki
from tests.conftest import VENV_BIN, wait_for
from tests.lab.conftest import TestLab, make_lab, root_only

OUTSIDE = "198.51.100.7"  # TEST-NET-2: never routed from a droplet, so no packet is sent


@pytest.fixture(scope="module")
def lab() -> Iterator[TestLab]:
    """Two droplets, t-a and t-b, for the tests that only look at a running lab."""
    test_lab = make_lab("a")
    try:
        test_lab.up("t-a", "t-b")
        yield test_lab
    finally:
        test_lab.down()


def test_droplet_ids_are_checked() -> None:
    assert parse_ids("db-1, dl-1") == ["db-1", "dl-1"]
    for bad in ("", "DB-1", "db_1", "1db", "db-1,db-1", "a" * 31, "dl-?", "*-1", "dl-1.example"):
        with pytest.raises(LabError):
            parse_ids(bad)


def test_an_id_the_pillar_would_not_serve_is_refused_before_anything_is_made(
    tmp_path: Path,
) -> None:
    """The fleet's rule (check_minion_id in _utils/private_pillar.py) at every entry that takes
    a droplet id, not only the CLI's: nothing is locked, made or looked up first."""
    config = LabConfig(root=tmp_path / "lab", bridge="zh3ids")
    for bad in ("dl-?", "*-1", "DL-1", "dl-1\n", "dl_1", "../dl-1"):
        for entry, argument in ((up, ["db-1", bad]), (add, [bad]), (remove_droplet, bad)):
            with pytest.raises(LabError, match="bad minion id"):
                entry(config, argument)
    assert not config.root.exists() and not lock_path(config).exists()


@root_only
def test_each_droplet_has_its_own_hostname_address_and_init(lab: TestLab) -> None:
    state = lab.state()
    for droplet_id, address in (("t-a", lab.config.network[2]), ("t-b", lab.config.network[3])):
        assert lab.shell(droplet_id, "hostname").strip() == droplet_id
        assert state.droplets[droplet_id].address == str(address)
        assert f"inet {address}/24" in lab.shell(droplet_id, "ip", "-4", "-o", "addr", "show")
        # PID 1 of its own PID namespace is the replacement systemctl's init loop.
        cmdline = lab.shell(droplet_id, "cat", "/proc/1/cmdline").split("\0")
        assert cmdline[1:3] == ["/usr/bin/systemctl", "init"]
    assert socket.gethostname() not in ("t-a", "t-b")


@root_only
def test_droplets_reach_each_other_and_the_host(lab: TestLab) -> None:
    state = lab.state()
    server_code = (
        "import socket; s = socket.socket(); s.bind(('0.0.0.0', 7070)); s.listen();"
        " print('ready', flush=True); c, peer = s.accept(); print(peer[0], c.recv(64).decode())"
    )
    server = subprocess.Popen(
        [str(VENV_BIN / "lab"), "shell", "t-b", "--", "python3", "-c", server_code],
        env=lab.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([server.stdout], [], [], 15)
        assert ready and server.stdout.readline().strip() == "ready"
        send_hostname(lab, "t-a", state.droplets["t-b"].address, 7070)
        output, _ = server.communicate(timeout=15)
    finally:
        server.kill()
        server.wait()
    assert output.split() == [state.droplets["t-a"].address, "t-a"]

    # The host's bridge address (where the salt master will listen) answers a droplet.
    with socket.create_server((lab.config.host_address, 0)) as listener:
        listener.settimeout(15)
        send_hostname(lab, "t-b", lab.config.host_address, listener.getsockname()[1])
        conn, peer = listener.accept()
        with conn:
            assert (peer[0], conn.recv(64).decode()) == (state.droplets["t-b"].address, "t-b")


def send_hostname(lab: TestLab, droplet: str, address: str, port: int) -> None:
    client = (
        f"import socket; c = socket.create_connection(({address!r}, {port}), timeout=10);"
        " c.sendall(socket.gethostname().encode()); c.close()"
    )
    lab.shell(droplet, "python3", "-c", client)


@root_only
def test_nothing_routes_outside_the_lab(lab: TestLab) -> None:
    for droplet in lab.state().droplets.values():
        routes = netns.routes(droplet.netns)
        assert [route["dst"] for route in routes] == [str(lab.config.network)], routes
    probe = (
        "import socket, time; s = socket.socket(); t = time.monotonic()\n"
        f"try: s.connect(({OUTSIDE!r}, 80))\n"
        "except OSError as e: print(e.strerror, time.monotonic() - t)"
    )
    message, seconds = lab.shell("t-a", "python3", "-c", probe).rsplit(" ", 1)
    assert message == "Network is unreachable"
    assert float(seconds) < 0.5


@root_only
def test_writes_stay_in_their_droplet(lab: TestLab) -> None:
    name = f"/etc/ccmirror-lab-test-{secrets.token_hex(4)}"
    lab.shell("t-a", "sh", "-c", f"echo written-in-t-a > {name}")
    assert lab.shell("t-a", "cat", name) == "written-in-t-a\n"
    assert not Path(name).exists()
    assert lab.shell("t-b", "sh", "-c", f"test -e {name} && echo seen || echo absent") == (
        "absent\n"
    )
    # Other droplets' layers are hidden too: the lab directory is empty inside a droplet.
    assert lab.shell("t-b", "ls", "-A", str(lab.config.root)) == ""


@root_only
def test_systemctl_inside_is_the_replacement_and_runs_units(lab: TestLab) -> None:
    assert "systemctl.py" in lab.shell("t-a", "systemctl", "--version")
    assert b"systemctl.py" not in Path("/usr/bin/systemctl").read_bytes()[:200_000]
    assert lab.shell("t-a", "test", "-d", "/run/systemd/system") == ""
    unit = "[Service]\nExecStart=/bin/sleep 600\n[Install]\nWantedBy=multi-user.target\n"
    lab.shell("t-a", "sh", "-c", f"printf '{unit}' > /etc/systemd/system/lab-test.service")
    lab.shell("t-a", "systemctl", "enable", "--now", "lab-test.service")
    assert lab.shell("t-a", "systemctl", "is-active", "lab-test.service").strip() == "active"
    assert "sleep 600" in lab.shell("t-a", "ps", "-eo", "args")
    assert "sleep 600" not in lab.shell("t-b", "ps", "-eo", "args")
    assert not Path("/etc/systemd/system/lab-test.service").exists()
    lab.shell("t-a", "systemctl", "stop", "lab-test.service")


@root_only
def test_status_reports_every_droplet_alive_and_answering(lab: TestLab) -> None:
    result = lab.lab("status", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["id"], r["alive"], r["answers"]) for r in rows] == [
        ("t-a", True, True),
        ("t-b", True, True),
    ]
    unknown = lab.lab("shell", "t-z", "--", "true")
    assert unknown.returncode == 1 and "no droplet 't-z'" in unknown.stderr


@root_only
def test_up_after_a_crash_then_down_leaves_nothing() -> None:
    crashed = make_lab("b")
    try:
        first = crashed.up("c-1", "c-2")
        for droplet in first.droplets.values():  # the crash: every droplet killed, state left
            os.kill(droplet.pid, signal.SIGKILL)
        namespaces = {d.pidns for d in first.droplets.values()}
        wait_for(lambda: not pids_in_namespaces(namespaces), 10, "the killed droplets to end")
        status = crashed.lab("status", "--json")
        assert status.returncode == 1 and not any(r["alive"] for r in json.loads(status.stdout))

        crashed.up("c-1", "c-2")
        assert crashed.shell("c-2", "hostname").strip() == "c-2"
        assert crashed.lab("status").returncode == 0

        # One more droplet in the running lab: the next address, and every droplet knows it.
        added = crashed.lab("add", "c-3", "--no-salt")
        assert added.returncode == 0, added.stdout + added.stderr
        second = crashed.state()
        assert second.droplets["c-3"].address == str(crashed.config.network[4])
        assert crashed.shell("c-3", "hostname").strip() == "c-3"
        assert crashed.shell("c-1", "getent", "hosts", "c-3").split() == [
            second.droplets["c-3"].address,
            "c-3",
        ]
        assert crashed.lab("add", "c-3").returncode == 1  # already there

        # And out again: nothing of it left, the others no longer name it.
        removed = crashed.lab("remove", "c-3")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert "c-3" not in crashed.state().droplets
        assert not netns.link_exists(second.droplets["c-3"].veth)
        assert crashed.config.netns_prefix + "c-3" not in netns.netns_names("")
        assert not Path(second.droplets["c-3"].dir).exists()
        assert pids_in_namespaces({second.droplets["c-3"].pidns}) == []
        assert crashed.shell("c-1", "sh", "-c", "getent hosts c-3 || echo unknown") == ("unknown\n")
        assert crashed.lab("remove", "c-3").returncode == 1  # no longer there
    finally:
        result = crashed.down()
    assert "removed" in result.stdout
    assert_nothing_left(crashed.config, second)
    again = crashed.down()
    assert "nothing to remove" in again.stdout


def assert_nothing_left(config: LabConfig, state: LabState) -> None:
    assert not netns.link_exists(config.bridge)
    assert netns.links_with_prefix(config.veth_prefix) == []
    assert netns.netns_names(config.netns_prefix) == []
    mounts = Path("/proc/mounts").read_text()
    assert str(config.root) not in mounts and f"/run/netns/{config.netns_prefix}" not in mounts
    assert pids_in_namespaces({d.pidns for d in state.droplets.values()}) == []
    assert not any(is_launcher(d.launcher) for d in state.droplets.values())
    assert not config.root.exists()
    assert not lock_path(config).exists()


@root_only
def test_salt_master_reaches_preseeded_minions_and_down_sweeps_a_lost_lab() -> None:
    """`lab up` with Salt: a master on the bridge address, a minion per droplet under the
    replacement systemctl with its key accepted beforehand; then the state file is lost and
    `lab down` still finds the master, the namespaces and the bridge by name."""
    salted = make_lab("s")
    try:
        # The first run on a machine installs salt from PyPI into its own venv.
        result = salted.lab("up", "--droplets", "s-1,s-2", timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        ping = salted.lab("salt", "--", "--out=json", "--static", "*", "test.ping")
        assert json.loads(ping.stdout) == {"s-1": True, "s-2": True}, ping.stderr
        status = json.loads(salted.lab("status", "--json").stdout)
        assert [(row["id"], row["answers"], row["minion"]) for row in status] == [
            ("s-1", True, True),
            ("s-2", True, True),
        ]
        keys = json.loads(salted.lab("salt-key", "--", "--out=json", "-L").stdout)
        assert sorted(keys["minions"]) == ["s-1", "s-2"] and keys["minions_pre"] == []
        # The master listens on the lab's bridge only; the droplets cannot read its keys.
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", 4506)) != 0
        assert salted.shell("s-1", "ls", "-A", str(salted.config.root)) == ""
        # Each end had the other's key before the first connection (no trust on first use).
        master_key = (master_pki(salted.config) / "master.pub").read_text()
        assert salted.shell("s-1", "cat", "/etc/salt/pki/minion/minion_master.pub") == master_key
        # Salt's service states run unchanged (no systemd-run: systemd.scope is off).
        unit = "[Service]\nExecStart=/bin/sleep 600\n"
        salted.shell("s-2", "sh", "-c", f"printf '{unit}' > /etc/systemd/system/lab-salt.service")
        applied = salted.lab(
            "salt", "--", "--out=json", "s-2", "state.single", "service.running", "name=lab-salt"
        )
        (outcome,) = json.loads(applied.stdout)["s-2"].values()
        assert outcome["result"] is True, outcome
        assert "sleep 600" in salted.shell("s-2", "ps", "-eo", "args")

        # A droplet taken out loses its key on the master too.
        assert salted.lab("remove", "s-2").returncode == 0
        keys = json.loads(salted.lab("salt-key", "--", "--out=json", "-L").stdout)
        assert keys["minions"] == ["s-1"]

        state = salted.state()
        for droplet in state.droplets.values():
            os.kill(droplet.pid, signal.SIGKILL)
        salted.config.state_file.unlink()
    finally:
        result = salted.down()
    assert "removed" in result.stdout
    assert_nothing_left(salted.config, state)
    assert not any(mentions(pid, salted.config.root) for pid in state.services.values())
