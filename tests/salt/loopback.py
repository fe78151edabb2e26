"""A real salt-master with real minions on loopback, for the runner tests that need minions
to answer (`audit.storage`, `batch.status`). Keys are pre-seeded on both ends, as the lab
does (never `auto_accept`); each minion loads `_modules/` from this checkout and gets a
`ccmirror:` block in its config."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.fleet.salt_master import SALT_VENV, generate_keys, write_file
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
KEYS: dict[str, tuple[str, str]] = {}  # name -> key pair, made once per test session


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Master:
    config_dir: Path  # the master's -c

    def run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SALT_VENV / "bin" / tool), "-c", str(self.config_dir), "--out=json", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_json(self, *args: str, timeout: float = 300) -> tuple[dict, int, list[str]]:
        """`salt-run ARGS`: its return (the last JSON document), exit code, and the progress
        messages it showed before."""
        result = self.run("salt-run", *args, timeout=timeout)
        decoder, text, at, documents = json.JSONDecoder(), result.stdout, 0, []
        while text[at:].strip():
            at = len(text) - len(text[at:].lstrip())
            if text[at] not in "{[":  # a line of Salt's own: "No minions matched the target."
                newline = text.find("\n", at)
                at = len(text) if newline < 0 else newline
                continue
            document, at = decoder.raw_decode(text, at)
            documents.append(document)
        assert documents and isinstance(documents[-1], dict), result.stdout + result.stderr
        progress = [d["event"]["message"] for d in documents[:-1] if d.get("suffix") == "progress"]
        return documents[-1], result.returncode, progress

    def call(self, minion: str, *args: str):
        result = self.run("salt", "-t", "60", minion, *args)
        return json.loads(result.stdout)[minion], result.returncode


def start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={"PATH": os.environ["PATH"]},
        )  # fmt: skip


def throwaway_keys(names: list[str]) -> dict[str, tuple[str, str]]:
    """Key pairs for the master and each minion, each made once per session (salt-key takes
    a second or two each)."""
    missing = [name for name in names if name not in KEYS]
    if missing:
        with ThreadPoolExecutor(len(missing)) as pool:
            KEYS.update(zip(missing, pool.map(generate_keys, missing), strict=True))
    return {name: KEYS[name] for name in names}


def stop(processes: list[subprocess.Popen], grace: float = 1.0) -> None:
    """SIGTERM, then SIGKILL to each process group after `grace` seconds: a throwaway
    master's orderly shutdown takes several seconds and keeps nothing worth waiting for."""
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@contextmanager
def salt_on_loopback(
    base: Path, minions: dict[str, dict], master_options: dict
) -> Iterator[Master]:
    """A master in `base`/master (`master_options` over its defaults) with `minions` (id ->
    the `ccmirror:` block of its config), once every minion answers; `base` is removed after.
    Keep `base` short: Salt's unix sockets live below root_dir, and a pytest tmp_path is too
    long."""
    publish, ret = free_port(), free_port()
    master_dir = base / "master"
    pki = master_dir / "root" / "etc" / "salt" / "pki" / "master"
    keys = throwaway_keys(["master", *minions])
    private, public = keys["master"]
    write_file(pki / "master.pem", private, 0o400)
    write_file(pki / "master.pub", public, 0o644)
    master = {
        "interface": "127.0.0.1",
        "publish_port": publish,
        "ret_port": ret,
        "root_dir": str(master_dir / "root"),
        "user": "root",
        "auto_accept": False,
        "runner_dirs": [str(ROOT / "_runners")],
        "utils_dirs": [str(ROOT / "_utils")],
        "log_level_logfile": "info",
        **master_options,
    }
    write_file(master_dir / "master", yaml.safe_dump(master), 0o644)
    processes = [
        start(
            [str(SALT_VENV / "bin" / "salt-master"), "-c", str(master_dir), "-l", "quiet"],
            base / "master.out",
        )
    ]
    try:
        for minion, ccmirror in minions.items():
            processes.append(start_minion(base, minion, ccmirror, pki, keys[minion], ret, publish))
        setup = Master(master_dir)

        def answering() -> bool:
            result = setup.run("salt", "--static", "-t", "3", "*", "test.ping", timeout=60)
            try:
                return set(json.loads(result.stdout or "{}")) == set(minions)
            except ValueError:
                return False

        wait_for(answering, 90, "every minion to answer the master", interval=0.5)
        yield setup
    finally:
        stop(processes)
        shutil.rmtree(base, ignore_errors=True)


def start_minion(
    base: Path,
    minion: str,
    ccmirror: dict,
    master_pki: Path,
    key_pair: tuple[str, str],
    ret: int,
    publish: int,
) -> subprocess.Popen:
    """A minion with its key accepted on the master before it starts."""
    directory = base / minion
    minion_pki = directory / "root" / "etc" / "salt" / "pki" / "minion"
    private, public = key_pair
    write_file(minion_pki / "minion.pem", private, 0o400)
    write_file(minion_pki / "minion.pub", public, 0o644)
    write_file(minion_pki / "minion_master.pub", (master_pki / "master.pub").read_text(), 0o644)
    write_file(master_pki / "minions" / minion, public, 0o644)
    config = {
        "id": minion,
        "master": "127.0.0.1",
        "master_port": ret,
        "publish_port": publish,
        "root_dir": str(directory / "root"),
        "user": "root",
        "acceptance_wait_time": 1,
        "module_dirs": [str(ROOT / "_modules")],
        "utils_dirs": [str(ROOT / "_utils")],  # arguments.py, as salt://_utils/ gives a droplet
        "systemd.scope": False,
        "ccmirror": ccmirror,
    }
    write_file(directory / "minion", yaml.safe_dump(config), 0o644)
    return start(
        [str(SALT_VENV / "bin" / "salt-minion"), "-c", str(directory), "-l", "quiet"],
        base / f"{minion}.out",
    )
