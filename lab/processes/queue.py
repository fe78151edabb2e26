"""Run the download queue (`harvester serve`) as a child process, with a token per worker.

Tests, benchmarks and the lab start it the same way: a real service on a free loopback port,
its tokens file written by `harvester token add` in a folder of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from lab.processes import child

VENV_BIN = Path(sys.executable).parent


@dataclass
class RunningQueue:
    process: subprocess.Popen
    url: str  # http://127.0.0.1:PORT
    env: dict[str, str] = field(repr=False)
    tokens: dict[str, str] = field(repr=False)  # worker -> bearer token

    def headers(self, worker: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[worker]}"}

    def post(self, path: str, worker: str | None, body: object = None, **kwargs):
        headers = self.headers(worker) if worker else {}
        return requests.post(self.url + path, json=body, headers=headers, timeout=60, **kwargs)

    def status(self) -> dict:
        response = requests.get(self.url + "/v1/status", timeout=60)
        response.raise_for_status()
        return response.json()

    def harvester(self, *args: str) -> subprocess.CompletedProcess:
        """Run another `harvester` command against the same database and tokens file."""
        return subprocess.run(
            [str(VENV_BIN / "harvester"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def add_worker(self, worker: str) -> str:
        result = self.harvester("token", "add", worker)
        if result.returncode != 0:
            raise RuntimeError(f"token add {worker} failed: {result.stderr.strip()}")
        self.tokens[worker] = result.stdout.strip()
        return self.tokens[worker]

    def stop(self, timeout: float = 30.0) -> int:
        return child.stop(self.process, timeout)


def spawn(
    db_url: str,
    workdir: Path,
    workers: list[str],
    *,
    settings: dict[str, str] | None = None,
    stderr=subprocess.DEVNULL,
    timeout: float = 30.0,
) -> RunningQueue:
    """Start `harvester serve` on 127.0.0.1 against `db_url` (migrated), with a token for each
    of `workers`; `settings` adds CCMIRROR_QUEUE_* variables (without the prefix)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "queue-tokens.yaml").unlink(missing_ok=True)  # throw-away tokens, new each time
    port = child.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMIRROR_")}
    env |= {
        "CCMIRROR_DB_URL": db_url,
        "CCMIRROR_QUEUE_TOKENS_FILE": str(workdir / "queue-tokens.yaml"),
        "CCMIRROR_QUEUE_PORT": str(port),
    }
    env |= {f"CCMIRROR_QUEUE_{name.upper()}": value for name, value in (settings or {}).items()}
    queue = RunningQueue(None, f"http://127.0.0.1:{port}", env, {})  # type: ignore[arg-type]
    for worker in workers:
        queue.add_worker(worker)
    queue.process = subprocess.Popen(
        [str(VENV_BIN / "harvester"), "serve"], env=env, stderr=stderr, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if queue.process.poll() is not None:
            raise RuntimeError(f"harvester serve exited with {queue.process.returncode}")
        try:
            requests.get(queue.url + "/openapi.json", timeout=1).raise_for_status()
            return queue
        except requests.RequestException:
            time.sleep(0.05)
    queue.stop()
    raise RuntimeError(f"harvester serve did not answer within {timeout:.0f}s")
