"""The host's /proc as the lab reads it: parents, PID namespaces, signals, and which
processes belong to a lab (by a path in their command line or the lab's service marker).

Standard library only and importing nothing of the lab, so everything may use it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

SERVICE_MARKER = "CCMIRROR_LAB_SERVICE_OF"  # in the environment of the lab's host services


def parent_pid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def pid_namespace(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0


def pids_in_namespaces(inodes: set[int]) -> list[int]:
    """Host pids of every process in one of these PID namespaces."""
    if not inodes:
        return []
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and pid_namespace(int(entry)) in inodes
    ]


def signal_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def mentions(pid: int, root: Path) -> bool:
    """True while `pid` is a live process whose command line names a path below `root`, or
    that the lab started as a host service of this lab (`service_env`)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    named = f"{root}/".encode() in cmdline or service_marker(root).encode() in environ.split(b"\0")
    return named and stat[stat.rindex(")") + 2] != "Z"


def service_marker(root: Path) -> str:
    return f"{SERVICE_MARKER}={root}"


def service_env(root: Path) -> dict[str, str]:
    """The environment of a host service of the lab at `root` (one whose command line need
    not name the lab's directory): `down` finds it by this variable even after a crash."""
    return {**os.environ, SERVICE_MARKER: str(root)}


def pids_mentioning(root: Path) -> list[int]:
    me = os.getpid()
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and int(entry) != me and mentions(int(entry), root)
    ]


def is_launcher(pid: int) -> bool:
    """True while `pid` is a live (not zombie) `unshare`: a reused pid is not mistaken."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return name == "unshare" and state != "Z"
