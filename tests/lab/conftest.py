"""Labs of the tests' own: each has its own directory, bridge and /24 (one not routed on this
host yet), so the tests never touch an operator's lab or another test run's; every lab is torn
down with `lab down` even when a test fails."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.fleet import netns
from lab.fleet.core import LabConfig, LabState
from tests.conftest import VENV_BIN

root_only = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="the lab's droplets need root (network/PID/mount namespaces, a bridge, overlayfs)",
)
TEST_LAB_NAME = re.compile(r"^ct(\d+)[a-z]$")  # bridge and directory name: ct<pid><tag>


@dataclass
class TestLab:
    __test__ = False  # a helper, not a test class

    config: LabConfig
    env: dict[str, str]

    def lab(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / "lab"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self, *ids: str) -> LabState:
        """Droplets without Salt: one test below brings up the master and minions."""
        result = self.lab("up", "--no-salt", "--droplets", ",".join(ids))
        assert result.returncode == 0, result.stdout + result.stderr
        return self.state()

    def shell(self, droplet: str, *command: str, timeout: float = 30) -> str:
        result = self.lab("shell", droplet, "--", *command, timeout=timeout)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout

    def state(self) -> LabState:
        state = LabState.load(self.config.state_file)
        assert state is not None, "no state file after lab up"
        return state

    def down(self) -> subprocess.CompletedProcess:
        result = self.lab("down")
        assert result.returncode == 0, result.stdout + result.stderr
        return result


def unused_network() -> ipaddress.IPv4Network:
    """A 10.213.x.0/24 that no route on this host uses yet (an operator's lab is on .0)."""
    routes = json.loads(subprocess.run(["ip", "-j", "route"], capture_output=True).stdout)
    used = {route["dst"] for route in routes}
    for n in range(150):
        network = f"10.213.{100 + (os.getpid() + n) % 150}.0/24"
        if network not in used:
            return ipaddress.IPv4Network(network)
    raise RuntimeError("no free 10.213.x.0/24 for a test lab")


def make_lab(tag: str) -> TestLab:
    """A lab named after this test process (`ct<pid><tag>`), so a later run can tell a lab
    whose run was killed from one still in use."""
    return named_lab(f"ct{os.getpid()}{tag}", unused_network())


def named_lab(name: str, network: ipaddress.IPv4Network) -> TestLab:
    config = LabConfig(Path(f"/var/lib/ccmirror-lab-test-{name}"), name, network)
    env = dict(
        os.environ,
        CCMIRROR_LAB_ROOT=str(config.root),
        CCMIRROR_LAB_BRIDGE=config.bridge,
        CCMIRROR_LAB_NETWORK=str(config.network),
    )
    return TestLab(config, env)


@pytest.fixture(scope="module", autouse=True)
def no_labs_of_killed_runs() -> None:
    """A run killed outright never reached its `lab down`: remove the labs of test processes
    that no longer exist before making new ones."""
    if os.geteuid() != 0:
        return
    roots = Path("/var/lib").glob("ccmirror-lab-test-ct*")
    names = {path.name.removeprefix("ccmirror-lab-test-") for path in roots}
    names |= set(netns.links_with_prefix("ct"))
    for name in sorted(names):
        match = TEST_LAB_NAME.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            named_lab(name, ipaddress.IPv4Network("10.213.255.0/24")).down()
