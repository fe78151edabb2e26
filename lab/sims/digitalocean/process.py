"""Run the DigitalOcean simulator as a child process: tests, the lab and the runners' tests
start it the same way, a real server whose first stdout line gives its URL."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import requests

from lab import CHECKOUT
from lab.processes import child
from lab.sims.digitalocean.server import READY, STOP_SECONDS, TOKEN_ENV


@dataclass
class RunningDoSim:
    process: subprocess.Popen
    end_point: str  # http://HOST:PORT/v2/, what DIGITALOCEAN_END_POINT takes
    token: str

    @property
    def base_url(self) -> str:
        return self.end_point.removesuffix("v2/")

    def env(self) -> dict[str, str]:
        """What python-digitalocean reads: the end point and the token."""
        return {"DIGITALOCEAN_END_POINT": self.end_point, "DIGITALOCEAN_ACCESS_TOKEN": self.token}

    def machines(self) -> list[dict]:
        """The memory backend's records: every machine made, its user data, destroyed or not."""
        return self._call("GET", "_sim/machines")["machines"]

    def control(self, **settings: object) -> dict:
        return self._call("POST", "_sim/control", json=settings)["settings"]

    def _call(self, method: str, path: str, **kwargs: object) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"}
        response = requests.request(
            method, self.base_url + path, headers=headers, timeout=10, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def stop(self) -> int | None:
        return child.stop(self.process, timeout=STOP_SECONDS + 20)  # its own wait, and exit


def spawn(
    *args: str,
    token: str,
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> RunningDoSim:
    """Start `python -m lab.sims.digitalocean.server` on `host` (a free port) accepting
    `token`; `args` add options (`--backend lab`, `--boot-seconds 0.2`...). The token goes
    through the environment, never the command line."""
    child_env = dict(env if env is not None else os.environ)
    child_env[TOKEN_ENV] = token
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.sims.digitalocean.server",
            "--host",
            host,
            "--port",
            "0",
            *args,
        ],
        cwd=CHECKOUT,
        env=child_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    return RunningDoSim(process, child.ready_line(process, READY, "do_sim", timeout), token)
