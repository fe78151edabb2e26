"""Starting droplets: each one's overlay layers and own files, its network namespace on the
bridge, its PID 1 (the replacement `systemctl init`) in new UTS, PID and mount namespaces,
and the wait until that init answers; every droplet's /etc/hosts naming the lab's droplets.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from lab.fleet import netns
from lab.fleet.core import (
    DROPLET_PATH,
    Droplet,
    LabConfig,
    LabError,
    LabState,
    enter_command,
    wait_for,
)
from lab.fleet.pids import parent_pid, pid_namespace

FIRST_OCTET = 2  # .1 is the host's address on the bridge
READY_SECONDS = 60.0
# Runs as PID 1 of the droplet's new PID namespace, inside its new mount and UTS namespaces
# and its network namespace, then becomes the replacement systemctl's init. The mount
# namespace is private: none of these mounts is seen by the host, and all of them vanish
# with the droplet's last process.
INIT_SCRIPT = r"""
set -eu
id=$1 dir=$2 lab=$3
r=$dir/root
hostname "$id"
mount -t overlay overlay -o "lowerdir=/,upperdir=$dir/upper,workdir=$dir/work" "$r"
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$r/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"
# The host's lab directory holds every droplet's upper layer: hide it from this one.
mount -t tmpfs -o mode=700 tmpfs "$r$lab"
# Salt (and other tools) take this directory as "booted with systemd".
mkdir -p "$r/run/systemd/system" "$r/run/lock"
exec chroot "$r" /usr/bin/systemctl init
"""
# The droplet's systemctl: docker-systemctl-replacement, imported from this directory.
SYSTEMCTL_MODULE_DIR = Path("/usr/lib/ccmirror-lab")
SYSTEMCTL_WRAPPER = f"""#! /usr/bin/env python3
import sys

sys.path.insert(0, "{SYSTEMCTL_MODULE_DIR}")
import systemctl3

sys.exit(systemctl3.main())
"""
Seed = Callable[[Droplet, Path], None]  # writes a droplet's own files into its upper layer


def start_droplets(
    config: LabConfig,
    state: LabState,
    ids: list[str],
    progress: Callable[[str], None],
    seed: Seed | None,
) -> None:
    """Each droplet on the next free address, recorded as soon as it runs; then wait until
    every new one answers."""
    used = {int(d.address.rsplit(".", 1)[1]) for d in state.droplets.values()}
    free = [octet for octet in range(FIRST_OCTET, 255) if octet not in used]
    if len(ids) > len(free):
        raise LabError(f"{len(ids)} more droplets do not fit the lab's /24 ({len(free)} free)")
    octets = dict(zip(ids, free[: len(ids)], strict=True))
    planned = {droplet_id: str(config.network[octet]) for droplet_id, octet in octets.items()}
    hosts = hosts_file(config, state, planned)
    for droplet_id, octet in octets.items():
        droplet = start_droplet(config, droplet_id, octet, hosts, seed)
        state.droplets[droplet_id] = droplet
        state.save(config.state_file)
        progress(f"{droplet_id}: {droplet.address}, PID 1 is host pid {droplet.pid}")
    for droplet_id in ids:
        wait_ready(state.droplets[droplet_id])


def hosts_file(config: LabConfig, state: LabState, planned: dict[str, str] | None = None) -> str:
    """/etc/hosts for every droplet: the lab's names, nothing of the host's network."""
    lines = ["127.0.0.1\tlocalhost", f"{config.host_address}\tlab-host salt"]
    addresses = {key: droplet.address for key, droplet in state.droplets.items()}
    for droplet_id, address in {**addresses, **(planned or {})}.items():
        lines.append(f"{address}\t{droplet_id}")
    return "\n".join(lines) + "\n"


def rewrite_hosts(config: LabConfig, state: LabState) -> None:
    """Every live droplet's /etc/hosts names exactly the droplets of the lab now."""
    hosts = hosts_file(config, state)
    for droplet in state.droplets.values():
        if droplet.alive():
            subprocess.run(
                enter_command(droplet, ["sh", "-c", "cat > /etc/hosts"]),
                input=hosts,
                text=True,
                check=True,
            )


def start_droplet(
    config: LabConfig, droplet_id: str, octet: int, hosts: str, seed: Seed | None = None
) -> Droplet:
    droplet = Droplet(
        id=droplet_id,
        address=str(config.network[octet]),
        netns=config.netns_prefix + droplet_id,
        veth=f"{config.veth_prefix}{octet}",
        dir=str(config.root / droplet_id),
    )
    prepare_layers(Path(droplet.dir), droplet_id, hosts)
    if seed is not None:
        seed(droplet, Path(droplet.dir) / "upper")
    netns.create_netns(
        droplet.netns,
        config.bridge,
        droplet.veth,
        f"{droplet.address}/{config.network.prefixlen}",
    )
    launch(config, droplet)
    return droplet


def prepare_layers(directory: Path, droplet_id: str, hosts: str) -> None:
    """The overlay's directories, and the droplet's own files written straight into the
    upper layer before it is mounted: the replacement systemctl, hostname, hosts, machine-id."""
    upper = directory / "upper"
    for sub in (upper, directory / "work", directory / "root"):
        sub.mkdir(parents=True, exist_ok=True)
    scripts = replacement_dir()
    (upper / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    # systemctl imports the replacement from a module directory rather than running it as a
    # script: Python then keeps its bytecode, where it compiled the 345 KB script on every
    # call (0.16 s of CPU; a highstate's `service.running` calls systemctl about six times).
    modules = upper / SYSTEMCTL_MODULE_DIR.relative_to("/")
    modules.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(scripts / "systemctl3.py", modules / "systemctl3.py")
    _executable(upper / "usr" / "bin" / "systemctl", SYSTEMCTL_WRAPPER)
    _executable(upper / "usr" / "bin" / "journalctl", (scripts / "journalctl3.py").read_text())
    # The replacement journalctl runs `systemctl3.py log UNIT` from its own directory.
    (upper / "usr" / "bin" / "systemctl3.py").symlink_to("systemctl")
    etc = upper / "etc"
    etc.mkdir(exist_ok=True)
    (upper / "var" / "log" / "journal").mkdir(parents=True, exist_ok=True)  # units' logs
    (etc / "hostname").write_text(droplet_id + "\n")
    (etc / "hosts").write_text(hosts)
    (etc / "machine-id").write_text(secrets.token_hex(16) + "\n")
    # The host's enabled services (its MariaDB, sshd, ...) must not start in every droplet.
    # The replacement reads both the wants directory and the SysV runlevel links: opaque,
    # empty directories hide the host's; what Salt enables later lands in them.
    hidden = [etc / "systemd" / "system" / "multi-user.target.wants"]
    hidden += [etc / f"rc{level}.d" for level in "0123456S"]
    for directory in hidden:
        directory.mkdir(parents=True, exist_ok=True)
        os.setxattr(directory, "trusted.overlay.opaque", b"y")


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o755)


def replacement_dir() -> Path:
    """Where docker-systemctl-replacement's scripts are: `systemctl2` is a namespace package
    and its console script only a wrapper, so the script itself is copied."""
    spec = importlib.util.find_spec("systemctl2")
    if spec is None or not spec.submodule_search_locations:
        raise LabError("docker-systemctl-replacement is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations)))


def launch(config: LabConfig, droplet: Droplet) -> None:
    """Start the droplet's PID 1 in its namespaces, detached from this process."""
    # No `container=` here: Salt's grains should see a machine, as on a real droplet.
    env = {"PATH": DROPLET_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
    Path(droplet.dir, "init.sh").write_text(INIT_SCRIPT)
    with open(Path(droplet.dir) / "init.log", "ab") as log:
        process = subprocess.Popen(
            [
                "nsenter",
                f"--net={netns.NETNS_DIR / droplet.netns}",
                "unshare",
                "--uts",
                "--pid",
                "--mount",
                "--propagation=private",
                "--fork",
                "--",
                "sh",
                str(Path(droplet.dir) / "init.sh"),
                droplet.id,
                droplet.dir,
                str(config.root),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a ^C at the terminal of `lab up` leaves the lab be
        )
    droplet.launcher = process.pid
    droplet.pid = wait_for(lambda: child_pid(process), 10, f"{droplet.id}'s PID 1")
    droplet.pidns = pid_namespace(droplet.pid)


def child_pid(process: subprocess.Popen) -> int:
    """The pid `unshare --fork` gave its child (the droplet's PID 1), once it exists."""
    if process.poll() is not None:
        raise LabError(f"unshare exited with {process.returncode} before forking PID 1")
    for entry in os.listdir("/proc"):
        if entry.isdigit() and parent_pid(int(entry)) == process.pid:
            return int(entry)
    return 0


def wait_ready(droplet: Droplet, timeout: float = READY_SECONDS) -> None:
    """Until the droplet's init answers; its log in the error when it died instead."""

    def ready() -> bool:
        if not droplet.alive():
            log = Path(droplet.dir, "init.log").read_text(errors="replace")[-2000:]
            raise LabError(f"droplet {droplet.id}: PID 1 exited during start:\n{log}")
        return answers(droplet)

    wait_for(ready, timeout, f"droplet {droplet.id} to answer", interval=0.2)


def answers(droplet: Droplet, timeout: float = 10.0) -> bool:
    """True when the init loop inside reports the system `running`."""
    try:
        result = subprocess.run(
            enter_command(droplet, ["systemctl", "is-system-running"]),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.stdout.strip() == "running"
