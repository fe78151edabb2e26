"""A real SeaweedFS cluster for tests and the lab, started as a fleet runs it: separate processes.

`start_cluster(base_dir, ClusterSettings(...))` starts, all on loopback, each with its log in
base_dir:

    weed master   one, or three with -peers (raft); -defaultReplication (001: two copies on
                  two servers of one rack)
    weed volume   one per storage node, its own data directory, -mserver, -max
    weed filer    its metadata in leveldb2 (a local directory) or mysql2 (MariaDB, so that it
                  survives a storage droplet's loss), from the filer.toml in its -config_dir
    weed s3       the S3 gateway as a process of its own rather than the filer's -s3: it can
                  be restarted (new flags, new TLS) or run on more droplets without taking the
                  metadata service down, and each gets its own systemd unit under Salt

The gateway's admin identity is static (its -config file), so authentication is on from the
first request: a gateway that knows no identity at all lets everyone in. Downloaders'
identities are dynamic, kept by the filer under /etc/iam/identities/ and changed on the
running cluster (lab/processes/seaweedfs_s3.py).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from lab.processes.seaweedfs_process import (
    DATA_CENTER,
    HOST,
    RACK,
    ClusterSettings,
    MySQLFilerStore,
    StorageError,
    WeedProcess,
    answers,
    check_ports,
    free_port_pair,
    get_json,
    weed_binary,
)

__all__ = ["Cluster", "ClusterSettings", "MySQLFilerStore", "StorageError", "start_cluster"]

START_TIMEOUT = 60.0
ADMIN = "admin"
# Every action the gateway knows: the admin key, kept on the master only.
ADMIN_ACTIONS = ["Admin", "Read", "List", "Tagging", "Write", "ReadAcp", "WriteAcp"]


@dataclass
class Cluster:
    base_dir: Path
    settings: ClusterSettings
    weed: str
    admin_access_key: str = field(repr=False)
    admin_secret_key: str = field(repr=False)
    masters: list[WeedProcess] = field(default_factory=list)
    volume_servers: list[WeedProcess] = field(default_factory=list)
    filer: WeedProcess | None = None
    s3: WeedProcess | None = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def master_addresses(self) -> str:
        return ",".join(master.address for master in self.masters)

    @property
    def master_url(self) -> str:
        return f"http://{self.masters[0].address}"

    @property
    def filer_url(self) -> str:
        return f"http://{self.filer.address}"

    @property
    def s3_url(self) -> str:
        return f"http://{self.s3.address}"

    def processes(self) -> list[WeedProcess]:
        tail = [process for process in (self.filer, self.s3) if process is not None]
        return [*self.masters, *self.volume_servers, *tail]

    # -- life ------------------------------------------------------------------------------
    def stop(self) -> None:
        """SIGTERM to every server at once (gateway first), SIGKILL to any still running after
        the settings' stop timeout."""
        order = list(reversed(self.processes()))
        for process in order:
            process.signal(15)
        deadline = time.monotonic() + self.settings.stop_timeout
        for process in order:
            process.wait_stopped(deadline)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill_volume_server(self, index: int) -> WeedProcess:
        """kill -9 one volume server, as a lost droplet ends it; the master notices its
        missing heartbeats and stops placing writes there."""
        server = self.volume_servers[index]
        server.kill()
        wait(lambda: server.address not in self.data_nodes(), 30, f"master to drop {server.name}")
        return server

    def restart_volume_server(self, index: int) -> WeedProcess:
        """Start a stopped volume server again with the same data directory and port."""
        server = self.volume_servers[index]
        self._start(server, lambda: server.address in self.data_nodes())
        return server

    def kill_gateway(self) -> None:
        """kill -9 the S3 gateway: an outage of the store as its clients see it, while the
        filer and the volume servers keep every object."""
        self.s3.kill()

    def restart_gateway(self) -> WeedProcess:
        """Start the stopped gateway again on the same port; it loads the filer's identities
        before it answers."""
        self._start(self.s3, lambda: answers(self.s3_url + "/"))
        return self.s3

    def restart_filer(self, wipe: bool = False) -> WeedProcess:
        """Stop the filer and start it again on the same port and store; `wipe` first deletes
        its directory, as a lost droplet loses it (a leveldb2 store goes with it, a MariaDB
        store does not)."""
        self.filer.stop(self.settings.stop_timeout)
        if wipe:
            shutil.rmtree(self.filer.cwd, ignore_errors=True)
        self.filer = self._filer(self.filer.port)
        self._start(self.filer, lambda: answers(self.filer_url + "/"))
        return self.filer

    def add_volume_server(self, max_volumes: int | None = None) -> WeedProcess:
        """A new storage node: the master places new volumes on it as soon as it heartbeats."""
        taken = {process.port for process in self.processes()}
        server = self._volume_server(len(self.volume_servers) + 1, free_port_pair(taken))
        if max_volumes is not None:
            server.args = [a for a in server.args if not a.startswith("-max=")]
            server.args.append(f"-max={max_volumes}")
        self.volume_servers.append(server)
        self._start(server, lambda: server.address in self.data_nodes())
        return server

    # -- asking the cluster ---------------------------------------------------------------
    def shell(self, command: str, timeout: float = 120.0, locked: bool = False) -> str:
        """Run `weed shell` commands (one a line) on stdin, not argv: a secret key in an
        s3.configure line stays out of `ps`. `locked` wraps them in lock/unlock, which the
        commands that move data (volume.fix.replication, volume.balance) need."""
        script = f"lock\n{command}\nunlock\n" if locked else f"{command}\n"
        try:
            result = subprocess.run(
                [
                    self.weed,
                    f"-config_dir={self.base_dir / 'filer' / 'config'}",  # its key, if any
                    "shell",
                    f"-master={self.master_addresses}",
                    f"-filer={self.filer.address}",
                ],
                input=script + "exit\n",
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.base_dir,
            )
        except subprocess.TimeoutExpired as error:
            raise StorageError(
                f"weed shell {command.splitlines()[0]!r}: no end in {timeout:.0f}s"
            ) from error
        if result.returncode != 0:
            raise StorageError(f"weed shell {command!r} failed: {result.stderr.strip()[-500:]}")
        return result.stdout

    def topology(self) -> dict:
        return get_json(f"{self.master_url}/dir/status")["Topology"]

    def data_nodes(self) -> set[str]:
        """The volume servers the master hears from, as host:port."""
        try:
            topology = self.topology()
        except (requests.RequestException, ValueError, KeyError):
            return set()
        return {
            node["Url"]
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
            for node in rack.get("DataNodes") or []
        }

    def volume_locations(self, collection: str | None = None) -> dict[int, list[str]]:
        """Volume id -> the volume servers holding a copy, as the master reports it."""
        tree = get_json(f"{self.master_url}/vol/status")["Volumes"]["DataCenters"]
        locations: dict[int, list[str]] = {}
        for racks in tree.values():
            for nodes in racks.values():
                for node, volumes in nodes.items():
                    for volume in volumes or []:
                        if collection is None or volume.get("Collection", "") == collection:
                            locations.setdefault(int(volume["Id"]), []).append(node)
        return {vid: sorted(nodes) for vid, nodes in locations.items()}

    def entry_volume_ids(self, path: str) -> set[int]:
        """The volumes holding the chunks of the filer entry at `path` (every version of an
        S3 object in a versioned bucket is an entry under `<key>.versions/`)."""
        entry = get_json(f"{self.filer_url}{path}?metadata=true")
        return {int(chunk["file_id"].split(",")[0]) for chunk in entry.get("chunks") or []}

    def object_volume_ids(self, bucket: str, key: str) -> set[int]:
        """The volumes holding any version of s3://bucket/key."""
        directory = f"/buckets/{bucket}/{key}.versions"
        listing = get_json(f"{self.filer_url}{directory}/?limit=10000")
        ids: set[int] = set()
        for entry in listing.get("Entries") or []:
            ids |= self.entry_volume_ids(entry["FullPath"])
        return ids

    def object_copies(self, bucket: str, key: str) -> int:
        """How many copies the least-copied volume of any version of the object has."""
        locations = self.volume_locations()
        ids = self.object_volume_ids(bucket, key)
        if not ids:
            raise StorageError(f"s3://{bucket}/{key} has no chunk on any volume")
        return min(len(locations.get(vid, [])) for vid in ids)

    # -- building it ------------------------------------------------------------------------
    def _start(self, process: WeedProcess, ready: Callable[[], object]) -> None:
        process.start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not process.running:
                code = process.process.returncode
                raise StorageError(f"{process.name} exited with {code}:\n{process.log_tail()}")
            if ready():
                return
            time.sleep(0.1)
        raise StorageError(
            f"{process.name} not ready in {START_TIMEOUT:.0f}s:\n{process.log_tail()}"
        )

    def _master(self, number: int, port: int, peers: str) -> WeedProcess:
        directory = self.base_dir / f"master-{number}"
        args = [
            self.weed, "master", f"-ip={HOST}", f"-ip.bind={HOST}", f"-port={port}",
            f"-mdir={directory}", f"-peers={peers}",
            f"-defaultReplication={self.settings.replication}",
            f"-volumeSizeLimitMB={self.settings.volume_size_limit_mb}",
            "-telemetry=false",  # on by default: it would post to telemetry.seaweedfs.com
        ]  # fmt: skip
        return WeedProcess(
            f"master-{number}", args, port, self.base_dir / f"master-{number}.log", directory
        )

    def _volume_server(self, number: int, port: int) -> WeedProcess:
        directory = self.base_dir / f"volume-{number}"
        args = [
            self.weed, "volume", f"-ip={HOST}", f"-ip.bind={HOST}", f"-port={port}",
            f"-dir={directory}", f"-max={self.settings.volume_max}",
            f"-mserver={self.master_addresses}", f"-dataCenter={DATA_CENTER}", f"-rack={RACK}",
            f"-index={self.settings.volume_index}", "-preStopSeconds=1",
        ]  # fmt: skip
        return WeedProcess(
            f"volume-{number}", args, port, self.base_dir / f"volume-{number}.log", directory
        )

    def _filer(self, port: int) -> WeedProcess:
        directory = self.base_dir / "filer"
        config_dir = directory / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        write_private(config_dir / "filer.toml", filer_toml(self.settings.filer_store, directory))
        if self.settings.filer_write_key:
            security = f'[jwt.filer_signing]\nkey = "{self.settings.filer_write_key}"\n'
            write_private(config_dir / "security.toml", security)
        args = [
            self.weed, f"-config_dir={config_dir}", "filer", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-port={port}", f"-master={self.master_addresses}", f"-dataCenter={DATA_CENTER}",
            f"-defaultReplicaPlacement={self.settings.replication}",
            f"-localSocket={directory / 'filer.sock'}",
        ]  # fmt: skip
        return WeedProcess("filer", args, port, self.base_dir / "filer.log", directory)

    def _s3(self, port: int) -> WeedProcess:
        directory = self.base_dir / "s3"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "s3.json"
        write_private(
            config, json.dumps(admin_config(self.admin_access_key, self.admin_secret_key))
        )
        # The filer's config directory: its security.toml, when there is one, is the gateway's.
        config_dir = self.base_dir / "filer" / "config"
        args = [
            self.weed, f"-config_dir={config_dir}", "s3", f"-ip.bind={HOST}", f"-port={port}",
            f"-filer={self.filer.address}",
            f"-config={config}", "-port.iceberg=0", "-port.lance=0",
            f"-localSocket={directory / 's3.sock'}",
        ]  # fmt: skip
        return WeedProcess("s3", args, port, self.base_dir / "s3.log", directory)


def admin_config(access_key: str, secret_key: str) -> dict:
    """The gateway's static -config: the admin identity alone."""
    credentials = [{"accessKey": access_key, "secretKey": secret_key}]
    return {"identities": [{"name": ADMIN, "credentials": credentials, "actions": ADMIN_ACTIONS}]}


def filer_toml(store: MySQLFilerStore | None, filer_dir: Path) -> str:
    """The filer's store, always named: with no filer.toml weed would take one from
    ~/.seaweedfs or /etc/seaweedfs if the machine has one."""
    if store is not None:
        return store.toml()
    return f'[leveldb2]\nenabled = true\ndir = "{filer_dir / "store"}"\n'


def write_private(path: Path, text: str) -> None:
    """A file holding a secret: 0600 from its creation, never world-readable for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise StorageError(f"timed out after {timeout:.0f}s waiting for {what}")


def planned_ports(settings: ClusterSettings) -> list[int]:
    """A port for each server (masters, volume servers, filer, gateway), all checked free
    with their gRPC twins before anything starts."""
    count = settings.masters + settings.volume_servers + 2
    if settings.first_port is None:
        taken: set[int] = set()
        for _ in range(count):
            taken.add(free_port_pair(taken))
        return sorted(taken)
    ports = list(range(settings.first_port, settings.first_port + count))
    for port in ports:
        check_ports(port)
    return ports


def start_cluster(base_dir: Path, settings: ClusterSettings | None = None) -> Cluster:
    """Start a cluster under `base_dir` and wait until its S3 gateway answers; StorageError
    (with nothing left running) when it cannot."""
    settings = settings or ClusterSettings()
    if settings.masters not in (1, 3):
        raise StorageError(f"masters must be 1 or 3 (raft), not {settings.masters}")
    if settings.volume_servers < 1:
        raise StorageError("a cluster needs at least one volume server")
    weed = weed_binary(settings.weed)
    ports = planned_ports(settings)
    base_dir.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(
        base_dir, settings, weed, secrets.token_hex(10).upper(), secrets.token_urlsafe(30)
    )
    try:
        _start_all(cluster, ports)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_all(cluster: Cluster, ports: list[int]) -> None:
    settings = cluster.settings
    master_ports = ports[: settings.masters]
    volume_ports = ports[settings.masters : settings.masters + settings.volume_servers]
    filer_port, s3_port = ports[-2:]
    peers = ",".join(f"{HOST}:{port}" for port in master_ports) if settings.masters > 1 else "none"
    cluster.masters = [cluster._master(n + 1, port, peers) for n, port in enumerate(master_ports)]
    for master in cluster.masters:
        master.start()  # together: a raft master waits for its peers
    for master in cluster.masters:
        cluster._start(master, lambda m=master: _has_leader(m))
    for number, port in enumerate(volume_ports, start=1):
        server = cluster._volume_server(number, port)
        cluster.volume_servers.append(server)
        cluster._start(server, lambda s=server: s.address in cluster.data_nodes())
    cluster.filer = cluster._filer(filer_port)
    cluster._start(cluster.filer, lambda: answers(cluster.filer_url + "/"))
    cluster.s3 = cluster._s3(s3_port)
    cluster._start(cluster.s3, lambda: answers(cluster.s3_url + "/"))


def _has_leader(master: WeedProcess) -> bool:
    try:
        return bool(get_json(f"http://{master.address}/cluster/status").get("Leader"))
    except (requests.RequestException, ValueError):
        return False
