"""Shared fixtures: a private MariaDB server, a fresh migrated database per test, the
Flickr simulator as a real HTTP server, and running the CLIs as real processes."""

from __future__ import annotations

import os
import secrets
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TypeVar

import pymysql
import pytest
import requests

from harvester.db import connect
from lab.processes.mariadb import LocalMariaDB
from lab.processes.seaweedfs import Cluster, ClusterSettings, start_cluster
from lab.processes.seaweedfs_s3 import (
    WritableBucket,
    admin_client,
    create_images_bucket,
    writable_bucket,
)
from lab.processes.storage import RunningStorage, start_storage
from lab.sims.flickr.process import RunningSim, spawn

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"
VENV_BIN = Path(sys.executable).parent


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval=0.05):
    """Poll `predicate` until it returns something true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def prometheus_targets(url: str) -> dict[str, dict[str, str]]:
    """What the Prometheus at `url` scrapes now: job -> its targets' `minion` label -> health
    (up, down, unknown)."""
    answer = requests.get(f"{url}/api/v1/targets", timeout=10)
    answer.raise_for_status()
    found: dict[str, dict[str, str]] = {}
    for target in answer.json()["data"]["activeTargets"]:
        labels = target["labels"]
        found.setdefault(labels["job"], {})[labels.get("minion", "?")] = target["health"]
    return found


Server = TypeVar("Server", bound=socketserver.BaseServer)


def send_json(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """A 200 JSON answer from a test's own request handler."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def serving(server: Server) -> Iterator[Server]:
    """A test's own HTTP server answering on a thread while the fixture that yields from
    this lives; shut down and its socket closed after."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def worker_server(dir_variable: str, dir_name: str, port_variable: str, port: int) -> LocalMariaDB:
    """A test MariaDB at the datadir and port the variables name (or the defaults), one of its
    own for each of `make test`'s workers (pytest-xdist's gw0, gw1: port + 100 per worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    base = Path(os.environ.get(dir_variable, Path(tempfile.gettempdir()) / dir_name))
    if index:
        base = base.with_name(f"{base.name}-{worker}")
    return LocalMariaDB(base, port=int(os.environ.get(port_variable, port)) + 100 * index)


@pytest.fixture(scope="session")
def mariadb() -> Iterator[LocalMariaDB]:
    """The tests' own MariaDB (datadir under the temp folder, port 13306 or $CCMIRROR_TEST_DB_PORT),
    started if it does not answer and stopped again at the end if this run started it."""
    server = worker_server(
        "CCMIRROR_TEST_MARIADB_DIR", "ccmirror-test-mariadb", "CCMIRROR_TEST_DB_PORT", 13306
    )
    started = server.ensure_running()
    yield server
    if started:
        server.stop()


@pytest.fixture
def database(mariadb: LocalMariaDB) -> Iterator[str]:
    """A new empty database for one test; yields its URL and drops it afterwards."""
    name = f"ccm_test_{secrets.token_hex(4)}"
    with mariadb.root_connection() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    yield mariadb.url(name)
    with mariadb.root_connection() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def db_url(database: str) -> str:
    """A migrated database for one test."""
    from harvester.migrate import migrate

    conn = connect(database)
    migrate(conn)
    conn.close()
    return database


@pytest.fixture
def sql(db_url: str) -> Iterator[Callable[..., list[tuple]]]:
    """Run one query on the test database and return all rows (autocommit)."""
    conns = [connect(db_url, autocommit=True)]

    def run(query: str, *args) -> list[tuple]:
        try:
            conns[0].ping()
        except pymysql.err.Error:  # a test restarted the server
            conns[0] = connect(db_url, autocommit=True)
        with conns[0].cursor() as cur:
            cur.execute(query, args or None)
            return list(cur.fetchall())

    yield run
    conns[0].close()


@pytest.fixture
def flickr_sim_factory() -> Iterator[Callable[..., RunningSim]]:
    """Starts simulators with the given options; stops them after the test."""
    started: list[RunningSim] = []

    def start(*args: str) -> RunningSim:
        started.append(spawn(*args, key="test-flickr-key"))
        return started[-1]

    yield start
    for sim in started:
        sim.stop()


TEST_STORAGE = Path(os.environ.get("CCMIRROR_TEST_STORAGE_DIR", "/var/lib/ccmirror-test/storage"))


def make_storage(lenient_sshd: bool = False) -> RunningStorage:
    """A real write-only storage (sshd + rrsync) of its own, under a root-owned directory:
    sshd refuses an authorized_keys below a world-writable one such as /tmp, and a checkout
    may well be under /tmp."""
    TEST_STORAGE.mkdir(parents=True, exist_ok=True)
    for directory in (TEST_STORAGE.parent, TEST_STORAGE):
        os.chmod(directory, 0o755)  # sshd walks every parent of authorized_keys
    parent = TEST_STORAGE
    base = Path(tempfile.mkdtemp(prefix="st-", dir=parent))
    return start_storage(base, lenient_sshd=lenient_sshd)


def remove_storage(storage: RunningStorage) -> None:
    storage.stop()
    shutil.rmtree(storage.root.parent, ignore_errors=True)


# weed's filer waits 15 s for its own metadata stream on SIGTERM; a test cluster is killed sooner.
TEST_SEAWEEDFS = {"stop_timeout": 5.0}
SESSION_VOLUMES = 400  # volumes a server of the session cluster may hold: about 60 buckets


def seaweedfs_cluster(base_dir: Path, **settings) -> Cluster:
    """A SeaweedFS cluster (lab/processes/seaweedfs.py) with the images bucket made by its
    admin key; the caller stops it."""
    cluster = start_cluster(base_dir, ClusterSettings(**(TEST_SEAWEEDFS | settings)))
    try:
        create_images_bucket(admin_client(cluster))
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the session: a master, two volume servers (replication 001), a filer
    on leveldb2 and the S3 gateway. Tests that kill or add servers start their own."""
    # Every bucket is a collection of its own that takes six volumes on each server at its
    # first PUT (weed's growth for two copies), and tests make buckets of their own (s3_bucket).
    cluster = seaweedfs_cluster(tmp_path_factory.mktemp("seaweedfs"), volume_max=SESSION_VOLUMES)
    yield cluster
    cluster.stop()


@pytest.fixture
def seaweedfs_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Starts clusters of a test's own (ClusterSettings as keywords); stopped after it."""
    started: list[Cluster] = []

    def start(**settings) -> Cluster:
        started.append(seaweedfs_cluster(tmp_path / f"seaweedfs-{len(started)}", **settings))
        return started[-1]

    yield start
    for cluster in started:
        cluster.stop()


def bucket_name() -> str:
    return f"t-{secrets.token_hex(5)}"


@pytest.fixture
def s3_bucket(seaweedfs: Cluster) -> WritableBucket:
    """A bucket of the test's own on the session cluster, made as the images bucket is (object
    lock, GOVERNANCE default retention), with a writer identity of its own (Write on it
    alone): no test sees another's objects, whatever ran before."""
    return writable_bucket(seaweedfs, bucket_name())


@pytest.fixture
def own_s3_bucket(seaweedfs_factory: Callable[..., Cluster]) -> WritableBucket:
    """The same on a cluster of the test's own (one volume server, no replication): for a test
    that kills its gateway or changes what the whole cluster sees."""
    return writable_bucket(seaweedfs_factory(volume_servers=1, replication="000"), bucket_name())


def harvester_env(db_url: str, sim: RunningSim | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMIRROR_")}
    env["CCMIRROR_DB_URL"] = db_url
    if sim is not None:
        env["CCMIRROR_FLICKR_API_URL"] = sim.api_url
        env["CCMIRROR_FLICKR_API_KEY"] = sim.key
    # Tests shorten every wait; the behaviour is the same as in production.
    env.setdefault("CCMIRROR_FLICKR_RATE_LIMIT", "0")
    env.setdefault("CCMIRROR_FLICKR_RETRY_BACKOFF", "0.05")
    env.setdefault("CCMIRROR_FLICKR_TIMEOUT", "5")
    env.setdefault("CCMIRROR_TASK_BACKOFF", "0.2")
    env.update(extra)
    return env


def run_harvester(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "harvester"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
