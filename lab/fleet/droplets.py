"""The lab's droplets: whole "machines" on this one, as root, made of namespaces.

Each droplet is a named network namespace on the lab bridge (see `lab.fleet.netns`), and a process
tree in new UTS, PID and mount namespaces whose PID 1 is the replacement `systemctl`
(docker-systemctl-replacement) running `init`. Its root is a copy-on-write overlay of the
host's root (lower = host /, upper and work under `<lab root>/<id>/`), with its own /proc,
/sys, /run, /tmp and /dev/shm, so what a droplet writes is seen by no other and not by the
host. Everything made is recorded in `<lab root>/state.json`; `down` also sweeps by name, so
it finds what a crashed `up` left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ccmirror_common.roles import ROLES
from lab.fleet import netns
from lab.fleet.lab_secrets import LabSecretsError, writer

DEFAULT_DROPLETS = tuple(role.first_minion for role in ROLES)  # one per role: master, db-1, ...
DROPLET_ID = re.compile(r"^[a-z][a-z0-9-]{0,29}$")  # a hostname and a minion id
FIRST_OCTET = 2  # .1 is the host's address on the bridge
READY_SECONDS = 60.0
STOP_SECONDS = 10.0
SERVICE_MARKER = "CCMIRROR_LAB_SERVICE_OF"  # in the environment of the lab's host services
DROPLET_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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


class LabError(RuntimeError):
    """A lab operation that cannot go on; the message says why."""


@dataclass(frozen=True)
class LabConfig:
    """Where one lab lives: its directory, bridge and /24. Tests use a lab of their own."""

    root: Path = Path("/var/lib/ccmirror-lab")
    bridge: str = "ccmlab0"
    network: ipaddress.IPv4Network = ipaddress.IPv4Network("10.213.0.0/24")

    @classmethod
    def from_env(cls) -> LabConfig:
        env = os.environ
        config = cls(
            root=Path(env.get("CCMIRROR_LAB_ROOT", str(cls.root))),
            bridge=env.get("CCMIRROR_LAB_BRIDGE", cls.bridge),
            network=ipaddress.IPv4Network(env.get("CCMIRROR_LAB_NETWORK", str(cls.network))),
        )
        # veth names are the bridge's name plus "v" and up to three digits: 15 at most.
        if not re.fullmatch(r"[a-z][a-z0-9]{0,10}", config.bridge):
            raise LabError(f"bridge name {config.bridge!r}: 1-11 lowercase letters and digits")
        if config.network.prefixlen != 24:
            raise LabError(f"lab network {config.network}: a /24 is expected")
        return config

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def host_address(self) -> str:
        return str(next(self.network.hosts()))

    @property
    def netns_prefix(self) -> str:
        return f"{self.bridge}-"

    @property
    def veth_prefix(self) -> str:
        return f"{self.bridge}v"


@dataclass
class Droplet:
    """One droplet as recorded in the state file."""

    id: str
    address: str
    netns: str
    veth: str
    dir: str
    pid: int = 0  # host pid of the droplet's PID 1
    pidns: int = 0  # inode of its PID namespace: tells a live PID 1 from a reused pid
    launcher: int = 0  # host pid of the `unshare` that forked PID 1

    def alive(self) -> bool:
        return self.pid > 0 and pid_namespace(self.pid) == self.pidns


@dataclass
class LabState:
    bridge: str
    network: str
    droplets: dict[str, Droplet] = field(default_factory=dict)
    # Processes the lab runs on the host (the salt master): name -> process group id.
    services: dict[str, int] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Written after every step of `up`, atomically, so a crash leaves a usable record."""
        data = {
            "bridge": self.bridge,
            "network": self.network,
            "droplets": {key: asdict(d) for key, d in self.droplets.items()},
            "services": self.services,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LabState | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # a torn write: `down` still sweeps by name
        droplets = {key: Droplet(**value) for key, value in data.get("droplets", {}).items()}
        services = data.get("services", {})
        return cls(data["bridge"], data["network"], droplets=droplets, services=services)


def parse_ids(text: str) -> list[str]:
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise LabError("no droplet ids given")
    for droplet_id in ids:
        check_droplet_id(droplet_id)
    if len(set(ids)) != len(ids):
        raise LabError(f"droplet ids repeat: {text}")
    return ids


def check_droplet_id(droplet_id: object) -> str:
    """The fleet's rule for a minion id (check_minion_id in _utils/private_pillar.py: the pillar
    gives no other id its secrets), then the lab's own: a letter first, 30 at most."""
    try:
        writer().check_minion_id(droplet_id)
    except LabSecretsError as error:
        raise LabError(f"droplet id: {error}") from None
    if not DROPLET_ID.fullmatch(droplet_id):
        raise LabError(
            f"droplet id {droplet_id!r}: a lowercase letter, then letters, digits or '-'"
            " (30 at most)"
        )
    return droplet_id


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, a bridge, overlay mounts)")


Seed = Callable[[Droplet, Path], None]  # writes a droplet's own files into its upper layer


def up(
    config: LabConfig,
    ids: Iterable[str],
    progress: Callable[[str], None] = print,
    host_services: Callable[[LabState], None] | None = None,
    seed: Seed | None = None,
) -> LabState:
    """Tear down whatever an earlier lab left, then build the bridge, the host's services
    (`host_services`, which records them in the state), and the droplets, each with the
    files `seed` writes before it starts; wait until each droplet's init answers."""
    ids = [check_droplet_id(droplet_id) for droplet_id in ids]
    require_root()
    with lab_lock(config):
        return build(config, ids, progress, host_services, seed)


def build(
    config: LabConfig,
    ids: list[str],
    progress: Callable[[str], None],
    host_services: Callable[[LabState], None] | None,
    seed: Seed | None,
) -> LabState:
    if remove(config):
        progress("cleaned up what an earlier lab left behind")
    config.root.mkdir(parents=True, exist_ok=True)
    os.chmod(config.root, 0o700)
    state = LabState(bridge=config.bridge, network=str(config.network))
    state.save(config.state_file)
    netns.create_bridge(config.bridge, config.network)
    if host_services is not None:
        host_services(state)
        state.save(config.state_file)
    start_droplets(config, state, ids, progress, seed)
    return state


def add(
    config: LabConfig,
    ids: Iterable[str],
    progress: Callable[[str], None] = print,
    seed: Seed | None = None,
) -> LabState:
    """More droplets in the running lab (what the DigitalOcean simulator will do per
    droplet created); every droplet's /etc/hosts then names them all."""
    ids = [check_droplet_id(droplet_id) for droplet_id in ids]
    require_root()
    with lab_lock(config):
        state = load_state(config)
        if state is None:
            raise LabError("the lab is down: `lab up` first")
        taken = [droplet_id for droplet_id in ids if droplet_id in state.droplets]
        if taken:
            raise LabError(f"already in the lab: {', '.join(taken)}")
        start_droplets(config, state, ids, progress, seed)
        rewrite_hosts(config, state)
        return state


def remove_droplet(
    config: LabConfig, droplet_id: str, progress: Callable[[str], None] = print
) -> None:
    """Take one droplet out of the running lab: its processes, namespaces, veth, directory,
    its place in the state and in every other droplet's /etc/hosts
    (`lab.fleet.lifecycle.remove` also deletes its minion key on the master, as destroying a
    droplet on DigitalOcean does). An unknown id is an error and changes nothing."""
    check_droplet_id(droplet_id)
    require_root()
    with lab_lock(config):
        state = load_state(config)
        if state is None or droplet_id not in state.droplets:
            known = ", ".join(state.droplets) if state else "none: the lab is down"
            raise LabError(f"no droplet {droplet_id!r} in the lab (droplets: {known})")
        droplet = state.droplets[droplet_id]
        stop_droplets([droplet], [droplet.netns])
        netns.delete_netns(droplet.netns)
        netns.delete_link(droplet.veth)
        remove_tree(Path(droplet.dir))
        del state.droplets[droplet_id]
        state.save(config.state_file)
        rewrite_hosts(config, state)
        progress(f"{droplet_id}: removed")


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
    for name, source in (("systemctl", "systemctl3.py"), ("journalctl", "journalctl3.py")):
        target = upper / "usr" / "bin" / name
        shutil.copyfile(scripts / source, target)
        os.chmod(target, 0o755)
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


def parent_pid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(stat[stat.rindex(")") + 2 :].split()[1])


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


def enter_command(droplet: Droplet, command: list[str]) -> list[str]:
    """A command line that runs `command` inside the droplet, with its root, namespaces and a
    clean environment (nothing of the caller's venv leaks in)."""
    env = [
        "env",
        "-i",
        f"PATH={DROPLET_PATH}",
        "HOME=/root",
        "LANG=C.UTF-8",
        f"TERM={os.environ.get('TERM', 'dumb')}",
    ]
    target = ["nsenter", "-t", str(droplet.pid), "-n", "-u", "-p", "-m", "-r", "-w"]
    return [*target, "--", *env, *command]


@contextlib.contextmanager
def lab_lock(config: LabConfig) -> Iterator[None]:
    """One `up` or `down` of a lab at a time (the lock lives outside the lab directory, which
    `down` removes)."""
    with open(lock_path(config), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def lock_path(config: LabConfig) -> Path:
    return Path(f"/run/ccmirror-lab-{config.bridge}.lock")


def down(config: LabConfig) -> bool:
    """Remove every process, namespace, link, mount and directory a lab of this config made,
    whether or not the state file knows of it. False when there was nothing to remove."""
    require_root()
    with lab_lock(config):
        removed = remove(config)
        lock_path(config).unlink(missing_ok=True)  # down leaves nothing, not even this
        return removed


def remove(config: LabConfig) -> bool:
    state = LabState.load(config.state_file)
    droplets = list(state.droplets.values()) if state else []
    leftovers = netns.netns_names(config.netns_prefix)
    links = netns.links_with_prefix(config.veth_prefix)
    bridge = netns.link_exists(config.bridge)
    services = state.services if state else {}
    if not (droplets or leftovers or links or bridge or config.root.exists()):
        return False
    stop_droplets(droplets, leftovers)
    stop_services(services, config.root)
    for name in leftovers:
        netns.delete_netns(name)
    netns.release_netns_dir()
    for name in netns.links_with_prefix(config.veth_prefix):
        netns.delete_link(name)
    netns.delete_link(config.bridge)
    remove_tree(config.root)
    return True


def stop_services(services: dict[str, int], root: Path) -> None:
    """SIGTERM to each host service's process group, SIGKILL after STOP_SECONDS; then SIGKILL
    to any host process whose command line names a path in the lab directory (what a crash
    left running and the state file may not know)."""
    groups = [pgid for pgid in services.values() if mentions(pgid, root)]
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while any(mentions(pgid, root) for pgid in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in pids_mentioning(root):
        signal_pid(pid, signal.SIGKILL)
    wait_for(lambda: not pids_mentioning(root), STOP_SECONDS, f"processes using {root} to end")


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


def stop_droplets(droplets: list[Droplet], namespaces: list[str]) -> None:
    """SIGKILL to each live PID 1, which ends its whole PID namespace, then to anything still
    in a droplet's network or PID namespace. No graceful stop: the droplet and its disk are
    thrown away, and the init stopping its units one by one took seconds (salt-minion: 8)."""
    for droplet in droplets:
        if droplet.alive():
            signal_pid(droplet.pid, signal.SIGKILL)
    pidns = {d.pidns for d in droplets if d.pidns}

    def remaining() -> list[int]:
        pids = {pid for name in namespaces for pid in netns.netns_pids(name)}
        return sorted(pids | set(pids_in_namespaces(pidns)))

    for pid in remaining():
        signal_pid(pid, signal.SIGKILL)
    wait_for(lambda: not remaining(), STOP_SECONDS, "the droplets' processes to end")
    # Each `unshare` that forked a PID 1 exits right after it; wait so none outlives `down`.
    launchers = [d.launcher for d in droplets]
    wait_for(
        lambda: not any(is_launcher(pid) for pid in launchers),
        STOP_SECONDS,
        "the droplets' launchers to exit",
    )


def is_launcher(pid: int) -> bool:
    """True while `pid` is a live (not zombie) `unshare`: a reused pid is not mistaken."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return name == "unshare" and state != "Z"


def remove_tree(root: Path) -> None:
    """A directory of the lab, after making sure nothing is mounted below it on the host:
    rmtree must never walk into a mount of the host's root."""
    below = [m for m in host_mounts() if m == str(root) or m.startswith(f"{root}/")]
    for mount in sorted(below, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    if any(m == str(root) or m.startswith(f"{root}/") for m in host_mounts()):
        raise LabError(f"mounts remain below {root}; not removing it")
    if root.exists():
        shutil.rmtree(root)


def host_mounts() -> list[str]:
    """Mount points of this process's mount namespace (octal escapes decoded)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), point))
    return points


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


def load_state(config: LabConfig) -> LabState | None:
    return LabState.load(config.state_file)


def status(config: LabConfig) -> list[dict]:
    """Per droplet: its address, its PID 1, whether that is alive and whether it answers."""
    state = load_state(config)
    rows = []
    for droplet in state.droplets.values() if state else []:
        alive = droplet.alive()
        rows.append(
            {
                "id": droplet.id,
                "address": droplet.address,
                "pid": droplet.pid,
                "alive": alive,
                "answers": alive and answers(droplet),
            }
        )
    return rows


def find_droplet(config: LabConfig, droplet_id: str) -> Droplet:
    state = load_state(config)
    if state is None or droplet_id not in state.droplets:
        known = ", ".join(state.droplets) if state else "none: run `lab up`"
        raise LabError(f"no droplet {droplet_id!r} in the lab (droplets: {known})")
    droplet = state.droplets[droplet_id]
    if not droplet.alive():
        raise LabError(f"droplet {droplet_id}: its PID 1 ({droplet.pid}) is gone; `lab up`")
    return droplet


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval=0.05):
    """Poll `predicate` until it returns something true; LabError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
