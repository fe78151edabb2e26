"""The lab's master steering droplets through the DigitalOcean simulator, as a real master
steers DigitalOcean: the simulator runs on the bridge address with the lab backend (each
droplet it makes is a lab droplet that runs its `user_data`), and the master's config gains
`ccmirror_fleet` (the simulator's end point and a throw-away token) in a file of its include
dir, which `salt-run fleet.*` reads at every run (no master restart)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.fleet import host_services, salt_master
from lab.fleet.core import LabConfig, LabState
from lab.sims.digitalocean.process import RunningDoSim, spawn

SETTINGS_FILE = "ccmirror-fleet.conf"
SERVICE = "do-sim"
PORT = 8602
TOKEN_FILE = "do-token"
# The replacement systemctl cannot start units through systemd-run (no systemd bus).
LAB_MINION_CONFIG = {"systemd.scope": False, "acceptance_wait_time": 1, "state_events": True}


@dataclass(frozen=True)
class DoService:
    """Where the lab's simulator service answers (a lab.fleet.faults.DoApi)."""

    end_point: str  # http://HOST:PORT/v2/
    token: str


def lab_env(config: LabConfig) -> dict[str, str]:
    """The environment that points lab code (the simulator's lab backend) at this lab."""
    return dict(
        os.environ,
        CCMIRROR_LAB_ROOT=str(config.root),
        CCMIRROR_LAB_BRIDGE=config.bridge,
        CCMIRROR_LAB_NETWORK=str(config.network),
    )


def start_simulator(config: LabConfig, boot_seconds: float = 0.0) -> RunningDoSim:
    """The simulator with the lab backend, listening on the lab's bridge address only."""
    token = "dop_v1_" + secrets.token_hex(32)  # a throw-away, like every lab secret
    return spawn(
        "--backend",
        "lab",
        "--boot-seconds",
        str(boot_seconds),
        token=token,
        host=config.host_address,
        env=lab_env(config),
    )


def ensure_service(config: LabConfig, state: LabState) -> DoService:
    """The simulator as a host service of the lab (it lives as long as the lab, as
    DigitalOcean outlives any one command), its throw-away token in a 0600 file."""
    token_file = config.root / TOKEN_FILE
    if not token_file.exists():
        token_file.touch(mode=0o600)
        token_file.write_text("dop_v1_" + secrets.token_hex(32) + "\n")
    args = ["lab.sims.digitalocean.server", "--backend", "lab", "--boot-seconds", "0", "--host"]
    args += [config.host_address, "--port", str(PORT), "--token-file", str(token_file)]
    host_services.ensure(config, state, SERVICE, args, PORT, env=lab_env(config))
    return service(config)


def service(config: LabConfig) -> DoService:
    """The simulator service `ensure_service` started, as the lab's tools call it."""
    token = (config.root / TOKEN_FILE).read_text().strip()
    return DoService(f"http://{config.host_address}:{PORT}/v2/", token)


def settings_path(config: LabConfig) -> Path:
    """Salt's default include for the master: `master.d/*.conf` beside its config file."""
    return salt_master.config_dir(config) / "master.d" / SETTINGS_FILE


def write_master_settings(
    config: LabConfig, sim: RunningDoSim | DoService, **extra: object
) -> Path:
    """`ccmirror_fleet` for the lab's master: the simulator's end point and token (0600),
    the master's bridge address for new minions, the lab's minion settings, and no data
    volume for a storage droplet (a container has no block device to mount)."""
    fleet = {
        "token": sim.token,
        "end_point": sim.end_point,
        "master_address": config.host_address,
        "minion_config": LAB_MINION_CONFIG,
        "storage_volumes": False,
        **extra,
    }
    path = settings_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    salt_master.write_file(path, yaml.safe_dump({"ccmirror_fleet": fleet}), 0o600)
    return path
