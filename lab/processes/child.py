"""Children the lab starts (simulators, the queue service, sshd): a free port to give them,
their ready line to wait for, and a stop that never hangs."""

from __future__ import annotations

import select
import socket
import subprocess
import time


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ready_line(process: subprocess.Popen, prefix: str, name: str, timeout: float = 30.0) -> str:
    """What follows `prefix` on the child's first stdout line (its URL); RuntimeError and the
    child killed when it exits or stays silent instead."""
    deadline = time.monotonic() + timeout
    line = ""
    while not line and time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        line = process.stdout.readline() if ready else ""
    if not line.startswith(prefix):
        process.kill()
        process.wait()
        raise RuntimeError(f"{name} did not start (exit {process.returncode}): {line!r}")
    return line[len(prefix) :].strip()


def stop(process: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout`; the exit code."""
    if process is None:
        return None
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
