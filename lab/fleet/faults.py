"""Faults a test or an operator injects into a running lab: each one clear action that returns
once the fault is in effect (polled with a deadline), or raises LabError saying why not.

    kill_daemon(config, "dl-1", "ccmirror-downloader")   # kill -9 of the unit's main process
    restart_like_systemd(config, killed)                 # what a real fleet's systemd does next
    link_down(config, "st-1") ... link_up(config, "st-1")   # its veth: unreachable, then back
    restart_mariadb(config)                              # `systemctl restart mariadb` on db-1
    destroy_droplet(config, "dl-2", do_api=sim)          # gone from DigitalOcean's console

The droplets' PID 1 is docker-systemctl-replacement, which restarts a failed unit only if it
started that unit itself at boot: units that Salt enables and starts later (every ccmirror
daemon) stay `failed` after a kill, whatever their `Restart=`. A real droplet's systemd
restarts them after `RestartSec=`, and ends what the main process left running (its rsync and
ssh, say) at once, which the lab's init does not either: `restart_like_systemd` does both for
a test that wants the real fleet's behaviour (RESTARTED_BY_LAB_INIT says what the lab gives
by itself).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import requests

from lab.fleet import lifecycle as lab_fleet
from lab.fleet import netns, pids
from lab.fleet.core import (
    Droplet,
    LabConfig,
    LabError,
    enter_command,
    find_droplet,
    load_state,
    wait_for,
)
from lab.fleet.salt_master import master_pki

# Whether a lab droplet's init restarts a unit started after boot when its main process dies.
RESTARTED_BY_LAB_INIT = False
KILL_SECONDS = 10.0
LINK_SECONDS = 10.0
COMMAND_SECONDS = 30.0
MARIADB_SECONDS = 180.0  # its unit allows 900 to start; a lab's starts in under 10
DESTROY_SECONDS = 60.0
# Restart= values under which systemd restarts a service killed by SIGKILL (an unclean signal).
RESTARTS_ON_SIGKILL = frozenset({"always", "on-failure", "on-abnormal", "on-abort"})
DEFAULT_RESTART_SECONDS = 0.1  # systemd's RestartSec default


@dataclass(frozen=True)
class KilledDaemon:
    """A unit's main process, killed: its pid inside the droplet and on the host."""

    droplet: str
    unit: str
    pid: int
    host_pid: int
    killed_at: float  # time.monotonic() when the kill was sent
    # Host pids of the main process's descendants at the kill (an rsync and its ssh, say):
    # they live on in the lab, where a real systemd would end them (restart_like_systemd).
    descendants: tuple[int, ...] = ()


class DoApi(Protocol):
    """Where the DigitalOcean simulator answers (one: RunningDoSim of
    lab.sims.digitalocean.process)."""

    end_point: str  # http://HOST:PORT/v2/
    token: str


# ---------------------------------------------------------------------------- daemons
def kill_daemon(
    config: LabConfig, droplet_id: str, unit: str, timeout: float = KILL_SECONDS
) -> KilledDaemon:
    """`kill -9` of the main process of `unit` inside the droplet; returns once that process
    is dead (a zombie until the droplet's init reaps it counts as dead). A unit with no
    running main process is an error and nothing is killed."""
    droplet = find_droplet(config, droplet_id)
    pid = main_pid(droplet, unit)
    if not pid:
        raise LabError(f"{droplet_id}: {unit} has no running main process to kill")
    host = host_pid(droplet, pid)
    if not host:
        raise LabError(f"{droplet_id}: {unit}'s main process {pid} is not running")
    descendants = descendants_of(droplet, host)
    killed_at = time.monotonic()
    os.kill(host, signal.SIGKILL)
    wait_for(lambda: not is_running(host), timeout, f"{droplet_id}: {unit} (pid {pid}) to die")
    return KilledDaemon(droplet_id, unit, pid, host, killed_at, tuple(descendants))


def restart_like_systemd(
    config: LabConfig, killed: KilledDaemon, timeout: float = COMMAND_SECONDS
) -> int:
    """What a real droplet's systemd does after a kill: it stops the unit, ending what is
    left of it (SIGTERM to the main process's descendants, SIGKILL after `timeout`; the
    lab's init leaves them running), then, when the unit's `Restart=` covers SIGKILL, starts
    it again `RestartSec=` after its death. Returns the new main pid inside the droplet, or
    0 when systemd would leave the unit dead."""
    droplet = find_droplet(config, killed.droplet)
    end_processes(killed.descendants, timeout)
    policy, delay = restart_policy(droplet, killed.unit)
    if policy not in RESTARTS_ON_SIGKILL:
        return 0
    # systemd's own delay, counted from the death, as a real fleet sees it: not a guess.
    remaining = killed.killed_at + delay - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    return restart_unit(droplet, killed.unit, killed.pid, timeout)


def restart_unit(droplet: Droplet, unit: str, old_pid: int, timeout: float) -> int:
    """`systemctl restart` of `unit`; its new main pid (not `old_pid`) once it runs."""
    run_in(droplet, ["systemctl", "restart", unit], timeout)
    return wait_for(
        lambda: new_main_pid(droplet, unit, old_pid),
        timeout,
        f"{droplet.id}: {unit} to run again",
        interval=0.2,
    )


def main_pid(droplet: Droplet, unit: str) -> int:
    """The unit's running main process (a pid inside the droplet), or 0."""
    shown = run_in(droplet, ["systemctl", "show", "-p", "MainPID", unit]).strip()
    value = shown.partition("=")[2]
    return int(value) if value.isdigit() else 0


def recorded_main_pid(droplet: Droplet, unit: str) -> int:
    """The main pid the replacement systemctl recorded for the unit (its `/run/UNIT.status`
    file, read from the host: no process started in the droplet), or 0. A hint for pollers:
    `main_pid` is the word of the droplet's systemctl."""
    name = unit if unit.endswith(".service") else f"{unit}.service"
    try:
        text = Path(f"/proc/{droplet.pid}/root/run/{name}.status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MainPID" and value.strip().isdigit():
            return int(value.strip())
    return 0


def new_main_pid(droplet: Droplet, unit: str, old: int) -> int:
    pid = main_pid(droplet, unit)
    return pid if pid and pid != old and host_pid(droplet, pid) else 0


def restart_policy(droplet: Droplet, unit: str) -> tuple[str, float]:
    """`Restart=` and `RestartSec=` of the unit as loaded (drop-ins included: the last
    assignment wins, as in systemd)."""
    text = run_in(droplet, ["systemctl", "cat", unit])
    policy, delay = "no", DEFAULT_RESTART_SECONDS
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "Restart":
            policy = value.strip()
        elif key == "RestartSec":
            delay = parse_seconds(value.strip())
    return policy, delay


def parse_seconds(text: str) -> float:
    """A systemd time span as `RestartSec=` takes it: `10`, `5s`, `500ms`, `1min 30s`."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "min": 60.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    if not parts or any(suffix not in units for _, suffix in parts):
        raise LabError(f"RestartSec={text!r}: not a time span this lab reads")
    return sum(float(number) * units[suffix] for number, suffix in parts)


def host_pid(droplet: Droplet, pid: int) -> int:
    """The host's pid of a live process that is `pid` inside the droplet, or 0."""
    for candidate in pids.pids_in_namespaces({droplet.pidns}):
        try:
            status = Path(f"/proc/{candidate}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        nspids = re.search(r"^NSpid:\s+(.+)$", status, re.M)
        if nspids and int(nspids.group(1).split()[-1]) == pid and is_running(candidate):
            return candidate
    return 0


def descendants_of(droplet: Droplet, host: int) -> list[int]:
    """Host pids of every live descendant of the host process `host` in the droplet."""
    parents = {pid: pids.parent_pid(pid) for pid in pids.pids_in_namespaces({droplet.pidns})}
    found: list[int] = []
    frontier = {host}
    while frontier:
        children = {pid for pid, parent in parents.items() if parent in frontier}
        found += sorted(children)
        frontier = children
    return [pid for pid in found if is_running(pid)]


def end_processes(host_pids: tuple[int, ...], timeout: float) -> None:
    """SIGTERM, then SIGKILL to those still running after `timeout` (as systemd's stop)."""
    for pid in host_pids:
        if is_running(pid):
            pids.signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(is_running(pid) for pid in host_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in host_pids:
        if is_running(pid):
            pids.signal_pid(pid, signal.SIGKILL)


def is_running(pid: int) -> bool:
    """A live process, not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(")") + 2] != "Z"


# ---------------------------------------------------------------------------- network
def link_down(config: LabConfig, droplet_id: str, timeout: float = LINK_SECONDS) -> None:
    """The droplet's cable pulled: its veth down on the host side, so the droplet's eth0 has
    no carrier and nothing crosses (packets are dropped, not refused: peers see timeouts,
    as with a network partition). Returns once the bridge port is disabled."""
    droplet = find_droplet(config, droplet_id)
    netns.ip("link", "set", droplet.veth, "down")
    wait_for(
        lambda: not link_carries(droplet),
        timeout,
        f"{droplet_id}: its link to go down",
    )


def link_up(config: LabConfig, droplet_id: str, timeout: float = LINK_SECONDS) -> None:
    """The cable back: returns once both ends are up and the bridge forwards the port."""
    droplet = find_droplet(config, droplet_id)
    netns.ip("link", "set", droplet.veth, "up")
    wait_for(lambda: link_carries(droplet), timeout, f"{droplet_id}: its link to come up")


def link_carries(droplet: Droplet) -> bool:
    """True when the host's end is up, the droplet's eth0 has a carrier, and the bridge
    forwards the port."""
    return (
        operstate(["link", "show", droplet.veth]) == "UP"
        and operstate(["-n", droplet.netns, "link", "show", "eth0"]) == "UP"
        and bridge_port_state(droplet.veth) == "forwarding"
    )


def operstate(args: list[str]) -> str:
    shown = json.loads(netns.ip("-j", *args).stdout or "[]")
    return shown[0].get("operstate", "") if shown else ""


def bridge_port_state(veth: str) -> str:
    result = subprocess.run(
        ["bridge", "-j", "link", "show", "dev", veth], capture_output=True, text=True
    )
    ports = json.loads(result.stdout or "[]") if result.returncode == 0 else []
    return ports[0].get("state", "") if ports else ""


# ---------------------------------------------------------------------------- MariaDB
def restart_mariadb(
    config: LabConfig,
    droplet_id: str = "db-1",
    unit: str = "mariadb",
    port: int | None = 3306,
    timeout: float = MARIADB_SECONDS,
) -> int:
    """MariaDB restarted through its unit inside the droplet (every client connection is
    cut); returns its new main pid once it answers a ping on its socket and, unless `port`
    is None, greets a TCP client on the droplet's address."""
    droplet = find_droplet(config, droplet_id)
    old = main_pid(droplet, unit)
    if not old:
        raise LabError(f"{droplet_id}: {unit} is not running; nothing to restart")
    run_in(droplet, ["systemctl", "restart", unit], timeout)

    def answering() -> int:
        pid = new_main_pid(droplet, unit, old)
        if not pid or not pings(droplet):
            return 0
        return pid if port is None or greets(droplet.address, port) else 0

    return wait_for(answering, timeout, f"{droplet_id}: {unit} to answer again", interval=0.2)


def pings(droplet: Droplet) -> bool:
    """`mariadb-admin ping` on the server's socket (root's unix-socket login, as Debian's)."""
    command = ["mariadb-admin", "--connect-timeout=2", "ping"]
    result = subprocess.run(enter_command(droplet, command), capture_output=True, timeout=10)
    return result.returncode == 0


def greets(address: str, port: int) -> bool:
    """The server sends its greeting (or a refusal packet: it answers all the same)."""
    try:
        with socket.create_connection((address, port), timeout=2) as conn:
            return bool(conn.recv(4))
    except OSError:
        return False


# ---------------------------------------------------------------------------- droplets
def destroy_droplet(
    config: LabConfig,
    droplet_id: str,
    do_api: DoApi | None = None,
    keep_minion_key: bool = True,
    timeout: float = DESTROY_SECONDS,
) -> None:
    """The droplet destroyed as from DigitalOcean's console: no drain, its processes gone at
    once (a lease it held lapses on the queue). Through the DigitalOcean simulator's API when
    `do_api` is given (the droplet leaves the API's listing too), else straight out of the
    lab. DigitalOcean deletes no salt key: with `keep_minion_key`, the master keeps the
    droplet's accepted key, as a real master does until `fleet.destroy` or an operator
    deletes it (the lab's removal deletes it; it is put back). Returns once the droplet's
    PID 1 is dead and the lab no longer lists it."""
    droplet = find_droplet(config, droplet_id)
    key_file = minion_key_file(config, droplet_id)
    key = key_file.read_bytes() if keep_minion_key and key_file.exists() else None
    if do_api is None:
        lab_fleet.remove(config, droplet_id, progress=lambda line: None)
    else:
        delete_through_api(do_api, droplet_id)
    # The lab's removal deletes the key last (`salt-key -d`, in the simulator's worker when
    # `do_api`): put back before that, it would be gone again under fleet.destroy's feet.
    wait_for(
        lambda: (
            not droplet.alive()
            and not in_lab(config, droplet_id)
            and (key is None or not key_file.exists())
        ),
        timeout,
        f"{droplet_id}: the droplet to be destroyed",
        interval=0.2,
    )
    if key is not None:
        key_file.write_bytes(key)
        os.chmod(key_file, 0o644)


def delete_through_api(do_api: DoApi, name: str) -> None:
    """DELETE /v2/droplets/{id} of the one droplet named `name`."""
    headers = {"Authorization": f"Bearer {do_api.token}"}
    listed = requests.get(
        do_api.end_point + "droplets", params={"name": name}, headers=headers, timeout=10
    )
    listed.raise_for_status()
    found = listed.json()["droplets"]
    if len(found) != 1:
        raise LabError(f"the DigitalOcean simulator has {len(found)} droplets named {name!r}")
    deleted = requests.delete(
        f"{do_api.end_point}droplets/{found[0]['id']}", headers=headers, timeout=10
    )
    if deleted.status_code != 204:
        raise LabError(f"DELETE droplet {name}: {deleted.status_code} {deleted.text[:200]}")


def in_lab(config: LabConfig, droplet_id: str) -> bool:
    state = load_state(config)
    return state is not None and droplet_id in state.droplets


def minion_key_file(config: LabConfig, droplet_id: str) -> Path:
    return master_pki(config) / "minions" / droplet_id


# ---------------------------------------------------------------------------- helpers
def run_in(droplet: Droplet, command: list[str], timeout: float = COMMAND_SECONDS) -> str:
    """`command` inside the droplet; its stdout. LabError with its output when it fails."""
    result = subprocess.run(
        enter_command(droplet, command),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-1000:]
        raise LabError(f"{droplet.id}: {' '.join(command)} exited {result.returncode}: {output}")
    return result.stdout
