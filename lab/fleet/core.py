"""What every part of the lab's fleet shares about its droplets: where a lab lives
(`LabConfig`), what it made (`Droplet`, `LabState` in `<lab root>/state.json`), the lock one
`up` or `down` holds, the droplet-id rule, entering a droplet and waiting for something.

Small and at the bottom on purpose: launch, teardown, the salt master, the wheelhouse, faults
and the simulators import it, and it imports none of them (no cycle through `droplets`).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.fleet.lab_secrets import LabSecretsError, writer
from lab.fleet.pids import pid_namespace

DROPLET_ID = re.compile(r"^[a-z][a-z0-9-]{0,29}$")  # a hostname and a minion id
DROPLET_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class LabError(RuntimeError):
    """A lab operation that cannot go on; the message says why."""


@dataclass(frozen=True)
class LabConfig:
    """Where one lab lives: its directory, bridge and /24. Tests use a lab of their own."""

    root: Path = Path("/var/lib/ccmirror-lab")
    bridge: str = "ccmlab0"
    network: ipaddress.IPv4Network = ipaddress.IPv4Network("10.213.0.0/24")

    @classmethod
    def from_env(cls) -> LabConfig:
        env = os.environ
        config = cls(
            root=Path(env.get("CCMIRROR_LAB_ROOT", str(cls.root))),
            bridge=env.get("CCMIRROR_LAB_BRIDGE", cls.bridge),
            network=ipaddress.IPv4Network(env.get("CCMIRROR_LAB_NETWORK", str(cls.network))),
        )
        # veth names are the bridge's name plus "v" and up to three digits: 15 at most.
        if not re.fullmatch(r"[a-z][a-z0-9]{0,10}", config.bridge):
            raise LabError(f"bridge name {config.bridge!r}: 1-11 lowercase letters and digits")
        if config.network.prefixlen != 24:
            raise LabError(f"lab network {config.network}: a /24 is expected")
        return config

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def host_address(self) -> str:
        return str(next(self.network.hosts()))

    @property
    def netns_prefix(self) -> str:
        return f"{self.bridge}-"

    @property
    def veth_prefix(self) -> str:
        return f"{self.bridge}v"


@dataclass
class Droplet:
    """One droplet as recorded in the state file."""

    id: str
    address: str
    netns: str
    veth: str
    dir: str
    pid: int = 0  # host pid of the droplet's PID 1
    pidns: int = 0  # inode of its PID namespace: tells a live PID 1 from a reused pid
    launcher: int = 0  # host pid of the `unshare` that forked PID 1

    def alive(self) -> bool:
        return self.pid > 0 and pid_namespace(self.pid) == self.pidns


@dataclass
class LabState:
    bridge: str
    network: str
    droplets: dict[str, Droplet] = field(default_factory=dict)
    # Processes the lab runs on the host (the salt master): name -> process group id.
    services: dict[str, int] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Written after every step of `up`, atomically, so a crash leaves a usable record."""
        data = {
            "bridge": self.bridge,
            "network": self.network,
            "droplets": {key: asdict(d) for key, d in self.droplets.items()},
            "services": self.services,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LabState | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # a torn write: `down` still sweeps by name
        droplets = {key: Droplet(**value) for key, value in data.get("droplets", {}).items()}
        services = data.get("services", {})
        return cls(data["bridge"], data["network"], droplets=droplets, services=services)


def check_droplet_id(droplet_id: object) -> str:
    """The fleet's rule for a minion id (check_minion_id in _utils/private_pillar.py: the pillar
    gives no other id its secrets), then the lab's own: a letter first, 30 at most."""
    try:
        writer().check_minion_id(droplet_id)
    except LabSecretsError as error:
        raise LabError(f"droplet id: {error}") from None
    if not DROPLET_ID.fullmatch(droplet_id):
        raise LabError(
            f"droplet id {droplet_id!r}: a lowercase letter, then letters, digits or '-'"
            " (30 at most)"
        )
    return droplet_id


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, a bridge, overlay mounts)")


def load_state(config: LabConfig) -> LabState | None:
    return LabState.load(config.state_file)


def find_droplet(config: LabConfig, droplet_id: str) -> Droplet:
    state = load_state(config)
    if state is None or droplet_id not in state.droplets:
        known = ", ".join(state.droplets) if state else "none: run `lab up`"
        raise LabError(f"no droplet {droplet_id!r} in the lab (droplets: {known})")
    droplet = state.droplets[droplet_id]
    if not droplet.alive():
        raise LabError(f"droplet {droplet_id}: its PID 1 ({droplet.pid}) is gone; `lab up`")
    return droplet


def enter_command(droplet: Droplet, command: list[str]) -> list[str]:
    """A command line that runs `command` inside the droplet, with its root, namespaces and a
    clean environment (nothing of the caller's venv leaks in)."""
    env = [
        "env",
        "-i",
        f"PATH={DROPLET_PATH}",
        "HOME=/root",
        "LANG=C.UTF-8",
        f"TERM={os.environ.get('TERM', 'dumb')}",
    ]
    target = ["nsenter", "-t", str(droplet.pid), "-n", "-u", "-p", "-m", "-r", "-w"]
    return [*target, "--", *env, *command]


@contextlib.contextmanager
def lab_lock(config: LabConfig) -> Iterator[None]:
    """One `up` or `down` of a lab at a time (the lock lives outside the lab directory, which
    `down` removes)."""
    with open(lock_path(config), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def lock_path(config: LabConfig) -> Path:
    return Path(f"/run/ccmirror-lab-{config.bridge}.lock")


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval=0.05):
    """Poll `predicate` until it returns something true; LabError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
