"""What stands behind a droplet of the DigitalOcean simulator: a record in memory (fast
tests), or a real lab droplet (`lab.fleet.droplets`) that boots as a DigitalOcean image does (host
keys of its own, the droplet's `ssh_keys` authorized for root, sshd on its address) and runs
its `user_data`.

A backend only makes and removes machines; the simulator keeps the API's view (ids, status,
actions) and calls it from worker threads, never from a request.
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ccmirror_common.roles import role_of
from lab.fleet import core as lab_core
from lab.fleet import droplets as lab_droplets
from lab.fleet import lifecycle as lab_fleet

# Where cloud-init keeps the user data, its output and its "done" marker; the simulator's
# lab droplets use the same paths so a script or an operator finds them where on DigitalOcean.
USER_DATA_PATH = "/var/lib/cloud/instance/user-data.txt"
USER_DATA_OUTPUT = "/var/log/cloud-init-output.log"
BOOT_FINISHED = "/var/lib/cloud/instance/boot-finished"
USER_DATA_EXIT = "/var/lib/cloud/instance/user-data.exit"


# Terraform's project tag (terraform/variables.tf `name`, the fleet runner's `project_tag`).
PROJECT_TAG = "ccmirror"


class BackendError(RuntimeError):
    """A machine that cannot be made or removed; the message says why."""


class Backend(Protocol):
    # True when two live droplets may not share a name (a lab droplet's name is its id).
    unique_names: bool

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The range of the home region's default VPC."""
        ...

    def refuse(self, name: str, network: ipaddress.IPv4Network) -> str | None:
        """Why a droplet of this name in a VPC of this range cannot be made here, or None
        (asked before the API answers 202, so a refusal is a 422 that changes nothing)."""
        ...

    def create(
        self,
        name: str,
        user_data: str | None,
        tags: list[str],
        network: ipaddress.IPv4Network,
        authorized_keys: Sequence[str] = (),
    ) -> str:
        """Make the machine in `network` (its VPC's range) with `authorized_keys` (the public
        halves of its `ssh_keys`) for root, start its `user_data`; its private address."""
        ...

    def existing(self) -> list[tuple[str, str, list[str]]]:
        """Machines made before the simulator started, as (name, private address, tags):
        what Terraform made in the account, which the API lists from the start."""
        ...

    def destroy(self, name: str) -> None: ...


def is_script(user_data: str) -> bool:
    """cloud-init runs user data that starts with `#!`; anything else it does not execute."""
    return user_data.startswith("#!")


@dataclass
class MemoryMachine:
    name: str
    address: str
    user_data: str | None
    tags: list[str]
    authorized_keys: list[str] = field(default_factory=list)
    destroyed: bool = False


@dataclass
class MemoryBackend:
    """Machines as records: what was made, with which user data, and what was destroyed."""

    network: ipaddress.IPv4Network = ipaddress.IPv4Network("10.116.0.0/20")
    unique_names: bool = False  # DigitalOcean allows two droplets of one name
    history: list[MemoryMachine] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _used: dict[ipaddress.IPv4Network, int] = field(default_factory=dict)

    def refuse(self, name: str, network: ipaddress.IPv4Network) -> str | None:
        return None

    def create(
        self,
        name: str,
        user_data: str | None,
        tags: list[str],
        network: ipaddress.IPv4Network,
        authorized_keys: Sequence[str] = (),
    ) -> str:
        with self._lock:
            host = self._used.get(network, 1) + 1  # .1 is the VPC's gateway
            if host >= network.num_addresses - 1:
                raise BackendError(f"no free address left in {network}")
            self._used[network] = host
            machine = MemoryMachine(
                name, str(network[host]), user_data, list(tags), list(authorized_keys)
            )
            self.history.append(machine)
            return machine.address

    def destroy(self, name: str) -> None:
        """The oldest live machine of that name (names may repeat, as on DigitalOcean)."""
        with self._lock:
            live = [m for m in self.history if m.name == name and not m.destroyed]
            if not live:
                raise BackendError(f"no machine named {name!r}")
            live[0].destroyed = True

    def existing(self) -> list[tuple[str, str, list[str]]]:
        return []

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [
                {
                    "name": m.name,
                    "address": m.address,
                    "user_data": m.user_data,
                    "tags": m.tags,
                    "destroyed": m.destroyed,
                }
                for m in self.history
            ]


class LabBackend:
    """Each droplet a lab droplet named after it (its hostname, and the minion id its
    user_data will give it). The lab must be up; this process must be root."""

    unique_names = True

    def __init__(self, config: lab_core.LabConfig) -> None:
        self.config = config

    @property
    def network(self) -> ipaddress.IPv4Network:
        return self.config.network

    def refuse(self, name: str, network: ipaddress.IPv4Network) -> str | None:
        if network != self.config.network:
            return f"the lab has one VPC, {self.config.network}; not {network}"
        if not lab_core.DROPLET_ID.match(name):
            return (
                "the lab names droplets with a lowercase letter, then letters, digits or '-'"
                " (30 at most)"
            )
        state = lab_core.load_state(self.config)
        if state is None:
            return "the lab is down (`lab up` first)"
        if name in state.droplets:
            return f"the lab already has a droplet named {name}"
        return None

    def create(
        self,
        name: str,
        user_data: str | None,
        tags: list[str],
        network: ipaddress.IPv4Network,
        authorized_keys: Sequence[str] = (),
    ) -> str:
        try:
            lab_droplets.add(self.config, [name], progress=log)
            droplet = lab_core.find_droplet(self.config, name)
        except lab_core.LabError as error:
            raise BackendError(str(error)) from error
        start_sshd(droplet, authorized_keys)
        if user_data is not None:
            run_user_data(droplet, user_data)
        return droplet.address

    def existing(self) -> list[tuple[str, str, list[str]]]:
        """The lab's core (master, db-*, st-*: the droplets terraform/main.tf makes), with
        Terraform's tags: the fleet runner counts st-* by its role tag, and the console can
        destroy any of them, as on DigitalOcean."""
        state = lab_core.load_state(self.config)
        droplets = state.droplets.items() if state is not None else ()
        made = []
        for name, droplet in sorted(droplets):
            role = role_of(name)
            if role is not None and not role.scaled:  # Terraform's static core
                made.append((name, droplet.address, [PROJECT_TAG, f"{PROJECT_TAG}-{role.name}"]))
        return made

    def destroy(self, name: str) -> None:
        try:
            lab_fleet.remove(self.config, name, progress=log)
        except lab_core.LabError as error:
            raise BackendError(str(error)) from error


# A DigitalOcean image's first boot (cloud-init's ssh module): host keys of its own, never
# the image's (each lab droplet is an overlay of the host's root: the host's keys are
# hidden, not reused), root's authorized_keys exactly the droplet's `ssh_keys`, sshd running.
FIRST_BOOT_SSH = """\
set -eu
rm -f /etc/ssh/ssh_host_*key*
ssh-keygen -A -q
install -d -m 700 /root/.ssh
umask 077
cat > /root/.ssh/authorized_keys
systemctl enable ssh >/dev/null 2>&1
systemctl start ssh
"""


def start_sshd(droplet: lab_core.Droplet, authorized_keys: Sequence[str]) -> None:
    """Before its user_data, as on DigitalOcean: a droplet made with no key gets an empty
    authorized_keys (no login), still a running sshd."""
    done = subprocess.run(
        lab_core.enter_command(droplet, ["sh", "-c", FIRST_BOOT_SSH]),
        input="".join(f"{key.strip()}\n" for key in authorized_keys),
        text=True,
        capture_output=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise BackendError(f"{droplet.id}: sshd did not start: {done.stderr.strip()[-500:]}")


def run_user_data(droplet: lab_core.Droplet, user_data: str) -> None:
    """Put the user data where cloud-init does and, when it is a script, start it in the
    background inside the droplet (as cloud-init does once the machine is up: the droplet is
    `active` before its script ends). Its output goes to cloud-init's log, its exit status
    next to it, and boot-finished marks the end."""
    store = f"mkdir -p /var/lib/cloud/instance && umask 077 && cat > {USER_DATA_PATH}"
    subprocess.run(
        lab_core.enter_command(droplet, ["sh", "-c", store]),
        input=user_data,
        text=True,
        check=True,
        capture_output=True,
    )
    if is_script(user_data):
        body = (
            f"chmod 700 {USER_DATA_PATH}; {USER_DATA_PATH}; echo $? > {USER_DATA_EXIT};"
            f" touch {BOOT_FINISHED}"
        )
    else:
        body = (
            f"echo 'user data is not a #! script: not run (the simulator runs scripts only)';"
            f" touch {BOOT_FINISHED}"
        )
    detached = f"setsid sh -c {shlex.quote(body)} >> {USER_DATA_OUTPUT} 2>&1 < /dev/null &"
    subprocess.run(
        lab_core.enter_command(droplet, ["sh", "-c", detached]),
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=30,
    )


def log(text: str) -> None:
    print(f"do_sim: {text}", file=sys.stderr, flush=True)
