"""How a new droplet joins the master with no secret in its ``user_data`` (the fleet runner
reaches this module as ``__utils__["fleet_join.*"]``; the master's config has ``utils_dirs``
on this checkout's ``_utils/``).

DigitalOcean serves a droplet's ``user_data`` to any process on it, unauthenticated, for its
whole life, so it holds no key: it installs Salt if absent, writes the minion's config (the
master's fingerprint pinned in it) and a unit that starts only once the minion's key is
there, then marks the droplet prepared. The key pair the master made and accepted comes over
SSH once, as salt-cloud's deploy step does: the droplet was created with the fleet's SSH key
(DigitalOcean installs it for root), its host key is taken on first use into a known_hosts
file of that droplet alone, and the keys travel in the script's standard input, never in an
argument, a file on the master or the API.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

try:
    import digitalocean
except ImportError:  # the fleet runner says so first
    digitalocean = None

__virtualname__ = "fleet_join"
__load__ = [
    "user_data",
    "handover_script",
    "hand_over",
    "hand_over_all",
    "known_hosts",
    "ssh_key_id",
    "forget_host",
]

HEREDOC_END = "CCMIRROR_FLEET_EOF"
PKI = "/etc/salt/pki/minion"
# Written by user_data as its last step: the handover waits for it (a droplet's SSH answers
# before its user_data has installed Salt).
PREPARED = "/etc/salt/ccmirror-fleet-prepared"
BOOT_FINISHED = "/var/lib/cloud/instance/boot-finished"  # cloud-init, after user_data
SSH_ERROR = 255  # ssh's own failure (no answer yet, refused): tried again until the deadline
MINION_UNIT = """\
[Unit]
Description=Salt minion (ccmirror)
After=network-online.target
# Its key comes over SSH from the master after boot: never a key of its own making.
ConditionPathExists={pki}/minion.pem

[Service]
Type=simple
ExecStart={venv}/bin/salt-minion
Restart=on-failure
KillMode=process
UMask=0022

[Install]
WantedBy=multi-user.target
"""


class JoinError(ValueError):
    """A text that cannot go into a script, or a handover that did not happen."""


def __virtual__():
    return __virtualname__


def user_data(
    minion_id: str,
    config: dict[str, Any],
    salt_venv: str,
    salt_requirement: str,
) -> str:
    """The droplet's first-boot script, with no key in it: Salt installed into `salt_venv`
    unless it is there already (the lab's droplets have it), the minion's config and unit
    written and enabled, and the droplet marked prepared for the key's handover."""
    venv = shlex.quote(salt_venv)
    lines = [
        "#!/bin/sh",
        f"# Written by salt-run fleet.up: prepares this droplet to join the ccmirror master as"
        f" {minion_id}.",
        "# No secret here: the minion's keys come from the master over SSH, then it starts.",
        "set -eu",
        "umask 022",
        f"if [ ! -x {venv}/bin/salt-minion ]; then",
        "  export DEBIAN_FRONTEND=noninteractive",
        "  python3 -m venv --help >/dev/null 2>&1 || {",
        "    apt-get update -q && apt-get install -y -q python3-venv; }",
        f"  python3 -m venv {venv}",
        f"  {venv}/bin/pip install -q {shlex.quote(salt_requirement)}",
        "fi",
        f"mkdir -p /etc/salt/minion.d /etc/systemd/system {PKI}",
        f"chmod 700 {PKI}",
        *heredoc("/etc/salt/minion.d/ccmirror.conf", yaml.safe_dump(config, sort_keys=True)),
        "chmod 600 /etc/salt/minion.d/ccmirror.conf",
        *heredoc("/etc/salt/minion_id", minion_id),
        "if [ ! -e /etc/systemd/system/salt-minion.service ]; then",
        *heredoc(
            "/etc/systemd/system/salt-minion.service",
            MINION_UNIT.format(venv=salt_venv, pki=PKI),
        ),
        "fi",
        "systemctl daemon-reload 2>/dev/null || true",
        "systemctl enable salt-minion",
        f"touch {PREPARED}",
        "",
    ]
    return "\n".join(lines)


def handover_script(
    private_key: str, public_key: str, master_public_key: str, wait_seconds: int
) -> str:
    """Run on the droplet as root with this text as its standard input: waits (up to
    `wait_seconds`) until user_data has prepared the minion, writes its key pair (0600 and
    0644, root's) and the master's public key, and starts the minion."""
    wait = int(wait_seconds)
    lines = [
        "set -eu",
        "umask 077",
        f"deadline=$(( $(date +%s) + {wait} ))",
        f"until [ -e {PREPARED} ]; do",
        f"  if [ -e {BOOT_FINISHED} ]; then",
        "    echo 'user_data ended without preparing the minion:"
        " see /var/log/cloud-init-output.log' >&2; exit 3",
        "  fi",
        '  if [ "$(date +%s)" -ge "$deadline" ]; then',
        f"    echo 'user_data did not prepare the minion within {wait}s' >&2; exit 3",
        "  fi",
        "  sleep 1",
        "done",
    ]
    for name, text, mode in (
        ("minion.pem", private_key, "600"),
        ("minion.pub", public_key, "644"),
        ("minion_master.pub", master_public_key, "644"),
    ):
        path = f"{PKI}/{name}"
        lines += [*heredoc(f"{path}.new", text), f"chown root:root {path}.new"]
        lines += [f"chmod {mode} {path}.new", f"mv -f {path}.new {path}"]
    # The keys are written under umask 077; the minion must not inherit it (the lab's
    # systemctl starts the unit from this shell and does not apply UMask=): what Salt then
    # installs (the venvs the services run from as their own users) would be root's alone.
    lines += ["umask 022", "systemctl restart salt-minion", "echo handed over", ""]
    return "\n".join(lines)


def heredoc(path: str, text: str) -> list[str]:
    if HEREDOC_END in text:
        raise JoinError(f"{path}: its text holds the script's end marker")
    return [f"cat > {path} <<'{HEREDOC_END}'", text.rstrip("\n"), HEREDOC_END]


def ssh_command(address: str, key_file: str, known_hosts: str) -> list[str]:
    """Root on the droplet with the fleet's key only. Its host key is trusted on first use
    (`accept-new`) into a file of this droplet alone, and must match on every later call."""
    return [
        "ssh",
        "-i",
        key_file,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "LogLevel=ERROR",
        f"root@{address}",
        "sh -s",
    ]


def hand_over(
    address: str, key_file: str, known_hosts: str, script: str, seconds: float
) -> dict[str, Any]:
    """`script` on the droplet over SSH, tried again while SSH itself fails (sshd not up yet)
    until `seconds` have passed. {"result": bool, "comment": why}."""
    Path(known_hosts).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    deadline = time.monotonic() + seconds
    command = ssh_command(address, key_file, known_hosts)
    why = "no attempt"
    while True:
        left = max(deadline - time.monotonic(), 1.0)
        try:
            done = subprocess.run(
                command, input=script, capture_output=True, text=True, timeout=left + 30
            )
        except subprocess.TimeoutExpired:
            return {"result": False, "comment": f"ssh root@{address}: no end in {seconds:g}s"}
        why = (done.stderr.strip() or done.stdout.strip())[-500:]
        if done.returncode == 0:
            return {"result": True, "comment": "keys handed over over SSH; minion started"}
        if done.returncode != SSH_ERROR or time.monotonic() >= deadline:
            return {"result": False, "comment": f"ssh root@{address}: {why}"}
        time.sleep(1)


def known_hosts(cachedir: str, droplet_id: object) -> str:
    """One droplet's host key, trusted on first use: a file of its own, by droplet id."""
    return str(Path(cachedir, "ccmirror-fleet", "known_hosts", str(droplet_id)))


def hand_over_all(
    conf: dict[str, Any],
    droplets: list[Any],
    fresh: dict[str, dict],
    master_public: str,
    seconds: float,
    errors: dict[str, str],
    ping: Callable[[list[str]], dict[str, bool]],
    new_keys: Callable[[str], dict],
    address_of: Callable[[Any], str | None],
    known_hosts_of: Callable[[Any], str],
    progress: Callable[[str], None],
) -> None:
    """Each droplet's minion key pair over SSH (`fresh`: made for it in this run). One from
    an earlier run whose minion does not answer gets a new pair (`new_keys`: the old private
    half was never kept); one that answers is left alone."""
    for droplet in droplets:
        name, keys = droplet.name, fresh.get(droplet.name)
        if keys is None:
            if ping([name]).get(name):
                continue
            keys = new_keys(name)
        script = handover_script(keys["priv"], keys["pub"], master_public, int(seconds))
        done = hand_over(
            address_of(droplet), conf["ssh_key_file"], known_hosts_of(droplet), script, seconds
        )
        progress(f"{name}: {done['comment']}")
        if not done["result"]:
            errors[name] = f"key handover: {done['comment']}"


def ssh_public_key(key_file: str) -> str:
    """The fleet's SSH public key (`type base64`), its key pair made (ed25519, 0600) when the
    file does not exist yet. It lives on the master only."""
    path = Path(key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ccmirror-fleet", "-f", key_file],
            check=True,
            capture_output=True,
        )
    path.chmod(0o600)
    made = subprocess.run(
        ["ssh-keygen", "-y", "-f", key_file], check=True, capture_output=True, text=True
    )
    return " ".join(made.stdout.split()[:2])


def ssh_key_id(conf: dict[str, Any], name: str) -> int:
    """The id at DigitalOcean of the fleet's SSH key (`conf`: the fleet runner's settings),
    registered under `name` on first use."""
    public = ssh_public_key(conf["ssh_key_file"])
    api = {"token": conf["token"], "end_point": conf["end_point"]}
    try:
        manager = digitalocean.Manager(**api)
        for key in manager.get_all_sshkeys():
            if key.public_key.split()[:2] == public.split():
                return key.id
        key = digitalocean.SSHKey(**api, name=name, public_key=public)
        key.create()
    except digitalocean.Error as error:
        raise JoinError(f"the fleet's SSH key at DigitalOcean: {error}") from None
    return key.id


def forget_host(known_hosts: str) -> None:
    """A destroyed droplet's host key: a new droplet at its address is a new host."""
    Path(known_hosts).unlink(missing_ok=True)
