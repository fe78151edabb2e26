"""The lab's host services: programs the lab runs on the host, listening on the bridge
address for the droplets (the Flickr simulator, the image host). Each is a process group of
its own, recorded in the state file (`lab down` stops them all), its output in
`<lab root>/<name>.log`, and started the same way so a second start with the same command
line leaves the running one be."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from lab import CHECKOUT
from lab.fleet.core import LabConfig, LabError, LabState, wait_for
from lab.fleet.pids import mentions, service_env

START_SECONDS = 30.0


def ensure(
    config: LabConfig,
    state: LabState,
    name: str,
    module_args: list[str],
    port: int,
    env: dict[str, str] | None = None,
) -> None:
    """`python -m <module_args>` running as service `name`, listening on the bridge address
    at `port` (`env`: more environment); one already running with this very command line is
    left be."""
    argv = [sys.executable, "-m", *module_args]
    running = state.services.get(name, 0)
    if running and mentions(running, config.root) and command_line(running) == argv:
        return
    stop(config, state, name)
    log = open(config.root / f"{name}.log", "ab")  # noqa: SIM115 - the child's own log
    with log:
        process = subprocess.Popen(
            argv,
            cwd=CHECKOUT,
            env={**service_env(config.root), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state.services[name] = process.pid

    def listening() -> bool:
        if process.poll() is not None:
            raise LabError(f"{name} exited with {process.returncode} (see {name}.log)")
        with socket.socket() as probe:
            return probe.connect_ex((config.host_address, port)) == 0

    wait_for(listening, START_SECONDS, f"{name} to listen", interval=0.1)


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
    except FileNotFoundError:
        return []


def stop(config: LabConfig, state: LabState, name: str) -> None:
    pid = state.services.pop(name, 0)
    if pid and mentions(pid, config.root):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        wait_for(lambda: not mentions(pid, config.root), 10, f"{name} to stop")
