"""The lab's Salt: a salt-master on the host bound to the bridge address, and a salt-minion
in every droplet as a unit under the replacement systemctl, its key pre-seeded on the
master (as salt-cloud does; never `auto_accept`).

Salt comes from PyPI into a venv of its own (`/opt/ccmirror-salt`, `$CCMIRROR_SALT_VENV`):
Debian 12 has no salt package and Broadcom's repository is not reachable from the lab. The
venv is on the host's root, so every droplet's overlay has the same salt-minion.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from lab.fleet.core import Droplet, LabConfig, LabError, LabState, wait_for
from lab.fleet.wheelhouse import dependency_cache, fileserver_root, served_checkout

SALT_VENV = Path(os.environ.get("CCMIRROR_SALT_VENV", "/opt/ccmirror-salt"))
SALT_REQUIREMENT = "salt>=3006,<3009"  # DESIGN.md: Salt 3006 LTS to 3008
# tests/infra runs from the master with salt importable: testinfra's salt:// backend.
INFRA_REQUIREMENTS = ("pytest>=8.0", "pytest-testinfra>=10")
# What the master's runners import beside salt: the fleet runner's DigitalOcean client.
RUNNER_REQUIREMENTS = ("python-digitalocean>=1.17,<2",)
PUBLISH_PORT, RET_PORT = 4505, 4506
MASTER_SECONDS = 60.0
MINION_UNIT = """\
[Unit]
Description=Salt minion (ccmirror lab)

[Service]
Type=simple
ExecStart={venv}/bin/salt-minion
Restart=on-failure
KillMode=process

[Install]
WantedBy=multi-user.target
"""


def ensure_salt(progress: Callable[[str], None] = print) -> Path:
    """The salt venv, made once with Debian's python3 (pip from PyPI, nothing else), with
    pytest-testinfra beside salt for tests/infra and python-digitalocean for the fleet
    runner. One maker at a time: `make test`'s two workers (or a test and `make lab`) may
    both find it missing on a fresh machine."""
    SALT_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(SALT_VENV.with_name(SALT_VENV.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        make_salt_venv(progress)
    return SALT_VENV


def make_salt_venv(progress: Callable[[str], None]) -> None:
    if not (SALT_VENV / "bin" / "salt-master").exists():
        progress(f"installing {SALT_REQUIREMENT} into {SALT_VENV} (once; a minute or two)")
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"
        subprocess.run([python, "-m", "venv", str(SALT_VENV)], check=True)
        salt_pip(SALT_REQUIREMENT, remove_on_failure=True)
    if not any(SALT_VENV.glob("lib/python3*/site-packages/testinfra")):
        progress(f"installing pytest-testinfra into {SALT_VENV} (once)")
        salt_pip(*INFRA_REQUIREMENTS)
    if not any(SALT_VENV.glob("lib/python3*/site-packages/digitalocean")):
        progress(f"installing {', '.join(RUNNER_REQUIREMENTS)} into {SALT_VENV} (once)")
        salt_pip(*RUNNER_REQUIREMENTS)


def salt_pip(*requirements: str, remove_on_failure: bool = False) -> None:
    result = subprocess.run(
        [str(SALT_VENV / "bin" / "pip"), "install", "--quiet", *requirements],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        if remove_on_failure:
            shutil.rmtree(SALT_VENV, ignore_errors=True)  # no half-made venv taken as ready
        raise LabError(f"pip install {' '.join(requirements)} failed:\n{result.stderr[-2000:]}")


def config_dir(config: LabConfig) -> Path:
    """`-c` for every salt command of this lab: holds the `master` file."""
    return config.root / "salt"


def master_root(config: LabConfig) -> Path:
    """The master's root_dir: pki, cache, sockets and logs live below it."""
    return config_dir(config) / "root"


def minion_keys_dir(config: LabConfig) -> Path:
    return master_root(config) / "etc" / "salt" / "pki" / "master" / "minions"


def master_config(config: LabConfig) -> dict:
    checkout = served_checkout(config)
    return {
        "interface": config.host_address,
        "publish_port": PUBLISH_PORT,
        "ret_port": RET_PORT,
        "root_dir": str(master_root(config)),
        "user": "root",
        "auto_accept": False,
        "open_mode": False,
        # The checkout's states, then the lab's fileserver root (salt://wheelhouse/).
        "file_roots": {"base": [str(checkout / "salt"), str(fileserver_root(config))]},
        # The checkout's pillar (no real secret), then the lab's private one (0700).
        "pillar_roots": {"base": [str(checkout / "pillar"), str(private_pillar(config))]},
        # The checkout's runners and modules; Salt skips these while they do not exist.
        "runner_dirs": [str(checkout / "_runners")],
        "module_dirs": [str(checkout / "_modules")],
        "utils_dirs": [str(checkout / "_utils")],  # fleet_join: the fleet runner's handover
        "ccmirror_checkout": str(checkout),  # what deploy.release builds
        # deploy.release builds with the project's Python and the lab's cached wheels
        # (offline after the first build), not a venv of its own on the host.
        "ccmirror_build_python": sys.executable,
        "ccmirror_wheel_cache": str(dependency_cache()),
        "log_level_logfile": "info",
        # As _runners/fleet.py gives fleet droplets: a dead master connection noticed
        # within a minute (storage's link down in tests/e2e).
        "tcp_keepalive_idle": 30,
        "tcp_keepalive_intvl": 10,
        "tcp_keepalive_cnt": 3,
    }


def private_pillar(config: LabConfig) -> Path:
    """The master's second pillar root: the lab's site facts and throw-away secrets."""
    return config.root / "pillar-private"


def minion_config(config: LabConfig, droplet: Droplet) -> dict:
    return {
        "id": droplet.id,
        "master": config.host_address,
        "master_port": RET_PORT,
        "publish_port": PUBLISH_PORT,
        # Without this Salt starts units through systemd-run, which needs systemd's bus.
        "systemd.scope": False,
        "acceptance_wait_time": 1,  # the master is up before any minion starts
        "state_events": True,  # a progress event per state: `lab highstate` shows them
        "log_level_logfile": "info",
        # As _runners/fleet.py gives fleet droplets: a dead master connection noticed
        # within a minute (storage's link down in tests/e2e).
        "tcp_keepalive_idle": 30,
        "tcp_keepalive_intvl": 10,
        "tcp_keepalive_cnt": 3,
    }


def master_pki(config: LabConfig) -> Path:
    return master_root(config) / "etc" / "salt" / "pki" / "master"


def start_master(config: LabConfig, state: LabState) -> None:
    """Write the master's config and key pair, start it detached (its own process group,
    recorded in the state for `lab down`), and wait until its return port answers."""
    directory = config_dir(config)
    minion_keys_dir(config).mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    # Made here rather than by the master, so each minion is given the master's public key
    # before it starts and never takes whatever answers on the first connection.
    private, public = generate_keys("master")
    write_file(master_pki(config) / "master.pem", private, 0o400)
    write_file(master_pki(config) / "master.pub", public, 0o644)
    (directory / "master").write_text(yaml.safe_dump(master_config(config)))
    with open(directory / "master.out", "ab") as log:
        process = subprocess.Popen(
            [str(SALT_VENV / "bin" / "salt-master"), "-c", str(directory), "-l", "warning"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state.services["salt-master"] = process.pid

    def listening() -> bool:
        if process.poll() is not None:
            output = (directory / "master.out").read_text(errors="replace")[-2000:]
            raise LabError(f"salt-master exited with {process.returncode}:\n{output}")
        with socket.socket() as probe:
            probe.settimeout(1)
            return probe.connect_ex((config.host_address, RET_PORT)) == 0

    wait_for(listening, MASTER_SECONDS, "the salt master to listen", interval=0.2)


def seed_minion(config: LabConfig) -> Callable[[Droplet, Path], None]:
    """A seed for `droplets.up`: the minion's config, key pair, the master's public key and
    the enabled unit written into the droplet's upper layer; its public key into the master's
    accepted keys. Both ends know each other's key before the first connection."""

    def seed(droplet: Droplet, upper: Path) -> None:
        etc = upper / "etc" / "salt"
        pki = etc / "pki" / "minion"
        pki.mkdir(parents=True, exist_ok=True)
        os.chmod(pki, 0o700)
        private, public = generate_keys(droplet.id)
        write_file(pki / "minion.pem", private, 0o400)
        write_file(pki / "minion.pub", public, 0o644)
        write_file(minion_keys_dir(config) / droplet.id, public, 0o644)
        master_public = (master_pki(config) / "master.pub").read_text()
        write_file(pki / "minion_master.pub", master_public, 0o644)
        write_file(etc / "minion", yaml.safe_dump(minion_config(config, droplet)), 0o644)
        write_file(etc / "minion_id", droplet.id, 0o644)
        units = upper / "etc" / "systemd" / "system"
        write_file(units / "salt-minion.service", MINION_UNIT.format(venv=SALT_VENV), 0o644)
        wanted = units / "multi-user.target.wants" / "salt-minion.service"
        wanted.symlink_to("/etc/systemd/system/salt-minion.service")

    return seed


def generate_keys(minion_id: str) -> tuple[str, str]:
    """A fresh RSA key pair from `salt-key --gen-keys`, made on the host (as salt-cloud
    does), so the public half is accepted on the master before the minion ever starts."""
    with tempfile.TemporaryDirectory(prefix="lab-keys-") as tmp:
        subprocess.run(
            [
                str(SALT_VENV / "bin" / "salt-key"),
                f"--gen-keys={minion_id}",
                f"--gen-keys-dir={tmp}",
                "--log-level=quiet",
            ],
            check=True,
            capture_output=True,
        )
        directory = Path(tmp)
        return (
            (directory / f"{minion_id}.pem").read_text(),
            (directory / f"{minion_id}.pub").read_text(),
        )


def write_file(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def salt_command(config: LabConfig, tool: str, args: Iterable[str]) -> list[str]:
    """`salt`, `salt-run`, `salt-key`, ... of the salt venv against this lab's master."""
    return [str(SALT_VENV / "bin" / tool), "-c", str(config_dir(config)), *args]


def ping(config: LabConfig, timeout: int = 5) -> dict[str, bool]:
    """`salt '*' test.ping`: minion id -> answered."""
    result = subprocess.run(
        salt_command(config, "salt", ["--out=json", "--static", f"-t{timeout}", "*", "test.ping"]),
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )
    try:
        answers = json.loads(result.stdout or "{}")
    except ValueError:
        return {}
    return {minion: value is True for minion, value in answers.items()}


def wait_minions(config: LabConfig, ids: Iterable[str], timeout: float = 90.0) -> None:
    """Until every minion answers test.ping; LabError naming the silent ones otherwise."""
    wanted = set(ids)
    answered: dict[str, bool] = {}

    def all_answer() -> bool:
        answered.update({k: v for k, v in ping(config).items() if v})
        return wanted <= set(answered)

    try:
        wait_for(all_answer, timeout, "every salt minion to answer test.ping", interval=0.5)
    except LabError as error:
        silent = ", ".join(sorted(wanted - set(answered)))
        raise LabError(f"{error}: no answer from {silent}") from None


def forget_minion(config: LabConfig, minion_id: str) -> None:
    """Delete a removed droplet's key on the master (`salt-key -d`, which also drops what
    the master cached about it), so a new droplet of the same id must be seeded again."""
    if (minion_keys_dir(config) / minion_id).exists():
        subprocess.run(
            salt_command(config, "salt-key", ["-y", "-d", minion_id, "--log-level=quiet"]),
            check=True,
            capture_output=True,
        )
