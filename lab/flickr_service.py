"""The lab's Flickr API: the simulator as a host service on the bridge address, accepting the
harvester droplets' own throw-away keys (from their private pillar files), so `harvester
work` on an hv-* droplet runs against it as it would against Flickr."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from lab.droplets import LabConfig, LabError, LabState, mentions, service_env, wait_for

SERVICE = "flickr-sim"
PORT = 8600
START_SECONDS = 30.0
CHECKOUT = Path(__file__).resolve().parent.parent


def api_url(config: LabConfig) -> str:
    return f"http://{config.host_address}:{PORT}/services/rest/"


def harvester_keys(private_pillar: Path) -> list[str]:
    """Every hv-* minion's Flickr key, as its own pillar file gives it (none before the
    private pillar root is written)."""
    keys = []
    for path in sorted(private_pillar.glob("minions/hv-*.sls")):
        own = yaml.safe_load(path.read_text()) or {}
        key = own.get("harvester", {}).get("flickr", {}).get("api_key")
        if key:
            keys.append(key)
    return keys


def restart(config: LabConfig, state: LabState, private_pillar: Path) -> None:
    """(Re)start the simulator with the keys known now, recorded in the state for `down`;
    one already running with these keys is left be."""
    keys = harvester_keys(private_pillar)
    running = state.services.get(SERVICE, 0)
    if keys and running and mentions(running, config.root) and serves(running, keys):
        return
    stop(config, state)
    if not keys:
        return
    log = open(config.root / f"{SERVICE}.log", "ab")  # noqa: SIM115 - the child's own log
    with log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lab.flickr_sim",
                "--host",
                config.host_address,
                "--port",
                str(PORT),
                "--keys",
                ",".join(keys),  # throw-away lab keys; the simulator takes them no other way
            ],
            cwd=CHECKOUT,
            env=service_env(config.root),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state.services[SERVICE] = process.pid

    def listening() -> bool:
        if process.poll() is not None:
            raise LabError(f"the Flickr simulator exited with {process.returncode}")
        with socket.socket() as probe:
            return probe.connect_ex((config.host_address, PORT)) == 0

    wait_for(listening, START_SECONDS, "the Flickr simulator to listen", interval=0.1)


def serves(pid: int, keys: list[str]) -> bool:
    try:
        return ",".join(keys).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


def stop(config: LabConfig, state: LabState) -> None:
    pid = state.services.pop(SERVICE, 0)
    if pid and mentions(pid, config.root):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        wait_for(lambda: not mentions(pid, config.root), 10, "the Flickr simulator to stop")
