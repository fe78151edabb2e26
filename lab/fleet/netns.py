"""The lab's network plumbing with `ip`: one bridge on the host, and per droplet a named
network namespace joined to the bridge by a veth pair. No default route, no NAT: a droplet
reaches the bridge's /24 and nothing else."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
from pathlib import Path

NETNS_DIR = Path("/run/netns")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `ip ARGS`; a failure raises with ip's own message."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def links_with_prefix(prefix: str) -> list[str]:
    return sorted(name for name in os.listdir("/sys/class/net") if name.startswith(prefix))


def create_bridge(name: str, network: ipaddress.IPv4Network) -> None:
    """The bridge with the first host address of `network` (.1): the droplets' only peer
    outside themselves, and later the salt master's address."""
    host = f"{next(network.hosts())}/{network.prefixlen}"
    ip("link", "add", name, "type", "bridge")
    ip("addr", "add", host, "dev", name)
    ip("link", "set", name, "up")


def delete_link(name: str) -> None:
    if link_exists(name):
        ip("link", "del", name, check=False)


def netns_names(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(name for name in os.listdir(NETNS_DIR) if name.startswith(prefix))


def netns_pids(name: str) -> list[int]:
    """Host pids of every process in the named namespace (`ip netns pids`)."""
    result = ip("netns", "pids", name, check=False)
    return [int(pid) for pid in result.stdout.split()] if result.returncode == 0 else []


def create_netns(name: str, bridge: str, host_veth: str, address: str) -> None:
    """A named namespace whose eth0 (`address`, e.g. 10.213.0.2/24) is a veth into `bridge`.
    Only the on-link route of the /24 exists inside: anything else is unreachable."""
    ip("netns", "add", name)
    ip("link", "add", host_veth, "type", "veth", "peer", "name", "eth0", "netns", name)
    ip("link", "set", host_veth, "master", bridge, "up")
    ip("-n", name, "link", "set", "lo", "up")
    ip("-n", name, "addr", "add", address, "dev", "eth0")
    ip("-n", name, "link", "set", "eth0", "up")


def delete_netns(name: str) -> None:
    ip("netns", "del", name, check=False)


def release_netns_dir() -> None:
    """`ip netns add` made /run/netns a mount of its own; once no namespace is left in it,
    undo that. A plain umount fails (and changes nothing) while anything is mounted below."""
    if NETNS_DIR.is_dir() and not os.listdir(NETNS_DIR):
        # os.path.ismount misses a bind mount within one filesystem: read mountinfo.
        mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
        for _ in range(sum(line.split()[4] == str(NETNS_DIR) for line in mountinfo)):
            subprocess.run(["umount", str(NETNS_DIR)], capture_output=True)
    with contextlib.suppress(OSError):
        NETNS_DIR.rmdir()


def routes(netns: str) -> list[dict]:
    """The routing table inside a named namespace, as `ip -j route` gives it."""
    return json.loads(ip("-n", netns, "-j", "route").stdout or "[]")
