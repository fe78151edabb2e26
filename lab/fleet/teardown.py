"""Tearing a lab down: every droplet's processes, the lab's host services, namespaces, links
and directories, whether or not the state file knows of them (what a crashed `up` left is
found by name), and never a walk into a mount of the host's root.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lab.fleet import netns
from lab.fleet.core import Droplet, LabConfig, LabError, LabState, wait_for
from lab.fleet.pids import (
    is_launcher,
    mentions,
    pids_in_namespaces,
    pids_mentioning,
    signal_pid,
)

STOP_SECONDS = 10.0


def remove(config: LabConfig) -> bool:
    state = LabState.load(config.state_file)
    droplets = list(state.droplets.values()) if state else []
    leftovers = netns.netns_names(config.netns_prefix)
    links = netns.links_with_prefix(config.veth_prefix)
    bridge = netns.link_exists(config.bridge)
    services = state.services if state else {}
    if not (droplets or leftovers or links or bridge or config.root.exists()):
        return False
    stop_droplets(droplets, leftovers)
    stop_services(services, config.root)
    for name in leftovers:
        netns.delete_netns(name)
    netns.release_netns_dir()
    for name in netns.links_with_prefix(config.veth_prefix):
        netns.delete_link(name)
    netns.delete_link(config.bridge)
    remove_tree(config.root)
    return True


def stop_services(services: dict[str, int], root: Path) -> None:
    """SIGTERM to each host service's process group, SIGKILL after STOP_SECONDS; then SIGKILL
    to any host process whose command line names a path in the lab directory (what a crash
    left running and the state file may not know)."""
    groups = [pgid for pgid in services.values() if mentions(pgid, root)]
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while any(mentions(pgid, root) for pgid in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in pids_mentioning(root):
        signal_pid(pid, signal.SIGKILL)
    wait_for(lambda: not pids_mentioning(root), STOP_SECONDS, f"processes using {root} to end")


def stop_droplets(droplets: list[Droplet], namespaces: list[str]) -> None:
    """SIGKILL to each live PID 1, which ends its whole PID namespace, then to anything still
    in a droplet's network or PID namespace. No graceful stop: the droplet and its disk are
    thrown away, and the init stopping its units one by one took seconds (salt-minion: 8)."""
    for droplet in droplets:
        if droplet.alive():
            signal_pid(droplet.pid, signal.SIGKILL)
    pidns = {d.pidns for d in droplets if d.pidns}

    def remaining() -> list[int]:
        pids = {pid for name in namespaces for pid in netns.netns_pids(name)}
        return sorted(pids | set(pids_in_namespaces(pidns)))

    for pid in remaining():
        signal_pid(pid, signal.SIGKILL)
    wait_for(lambda: not remaining(), STOP_SECONDS, "the droplets' processes to end")
    # Each `unshare` that forked a PID 1 exits right after it; wait so none outlives `down`.
    launchers = [d.launcher for d in droplets]
    wait_for(
        lambda: not any(is_launcher(pid) for pid in launchers),
        STOP_SECONDS,
        "the droplets' launchers to exit",
    )


def remove_tree(root: Path) -> None:
    """A directory of the lab, after making sure nothing is mounted below it on the host:
    rmtree must never walk into a mount of the host's root."""
    below = [m for m in host_mounts() if m == str(root) or m.startswith(f"{root}/")]
    for mount in sorted(below, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    if any(m == str(root) or m.startswith(f"{root}/") for m in host_mounts()):
        raise LabError(f"mounts remain below {root}; not removing it")
    if root.exists():
        shutil.rmtree(root)


def host_mounts() -> list[str]:
    """Mount points of this process's mount namespace (octal escapes decoded)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), point))
    return points
