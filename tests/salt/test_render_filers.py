"""The main cluster's filers (#20): one on each master's node, each with every name in its own
leveldb2 store (the filers sync each other through the masters), the S3 gateway on every node
asking all of them; db-1 keeps no filer store, no seaweedfs database or user."""

from __future__ import annotations

import tomllib

import pytest

from lab.fleet.lab_secrets import write_lab_secrets
from tests.salt.conftest import MINIONS, ROOT, SITE, make_salt_call
from tests.salt.test_render import args, render

NODES = {
    "st-1": SITE["storage_host"],
    "st-2": "10.250.0.9",
    "st-3": "10.250.0.10",
    "st-4": "10.250.0.11",
}
FILER_DIR = "/srv/ccmirror-storage/seaweedfs-filer"


@pytest.fixture(scope="module")
def four_nodes(salt_call_bin, tmp_path_factory) -> dict[str, dict]:
    """The highstates of a SeaweedFS site with four storage nodes (and db-1's)."""
    root = tmp_path_factory.mktemp("four-nodes") / "private"
    minions = [*MINIONS, "st-2", "st-3", "st-4"]
    write_lab_secrets(
        root, minions, {**SITE, "storage_backend": "seaweedfs", "storage_nodes": NODES}
    )
    salt_call = make_salt_call(
        salt_call_bin, tmp_path_factory.mktemp("salt-four"), [ROOT / "pillar", root]
    )
    return {m: salt_call(m, "state.show_highstate") for m in ("db-1", *NODES)}


def gateway_filers(highstate: dict) -> list[str]:
    """The filers a node's S3 gateway asks, in its order."""
    unit = render(highstate["storage-weed-s3-unit-file-managed"], "s3")
    (flag,) = [word for word in unit.split() if word.startswith("-filer=")]
    return flag.removeprefix("-filer=").split(",")


def test_the_first_three_nodes_run_a_filer_each_with_its_own_leveldb2_store(four_nodes):
    for minion in ("st-1", "st-2", "st-3"):
        highstate = four_nodes[minion]
        toml = render(highstate["storage-weed-filer-config-file-managed"], "filer.toml")
        assert tomllib.loads(toml) == {"leveldb2": {"enabled": True, "dir": FILER_DIR}}, minion
        unit = render(highstate["storage-weed-filer-unit-file-managed"], "filer")
        assert f"-ip={NODES[minion]}" in unit and "ExecStartPre" not in unit, minion
        login = args(highstate["storage-weed-filer-login-file-absent"])  # the old password
        assert login["name"] == "/etc/seaweedfs/filer.my.cnf", minion
        assert "storage-weed-filer-service-dead" not in highstate, minion
        directory = args(highstate["storage-weed-filer-dir-file-directory"])
        assert directory["name"] == FILER_DIR and directory["user"] == "seaweedfs"


def test_a_fourth_node_runs_no_filer_and_its_gateway_needs_none_of_its_own(four_nodes):
    st4 = four_nodes["st-4"]
    for state in (
        "storage-weed-filer-unit-file-managed",
        "storage-weed-filer-service-running",
        "storage-weed-filer-config-file-managed",
        "storage-weed-filer-dir-file-directory",
        "storage-weed-master-unit-file-managed",
    ):
        assert state not in st4, state
    assert "storage-weed-volume-service-running" in st4
    # A filer left from the MariaDB store's days is stopped, its unit and config removed.
    assert args(st4["storage-weed-filer-service-dead"])["enable"] is False
    for state in ("storage-weed-filer-unit-file-absent", "storage-weed-filer-config-file-absent"):
        assert state in st4, state
    gateway = args(st4["storage-weed-s3-service-running"])
    assert not any("filer" in str(required) for required in gateway["require"])
    assert "ccmirror-weed-filer" not in render(st4["storage-weed-s3-unit-file-managed"], "s3")


def test_every_gateway_asks_the_three_filers_its_own_first(four_nodes):
    filers = [f"{NODES[m]}:8888" for m in ("st-1", "st-2", "st-3")]
    for minion in ("st-1", "st-2", "st-3"):
        listed = gateway_filers(four_nodes[minion])
        assert listed[0] == f"{NODES[minion]}:8888" and sorted(listed) == sorted(filers)
        gateway = args(four_nodes[minion]["storage-weed-s3-service-running"])
        assert {"service": "storage-weed-filer-service-running"} in gateway["require"]
    assert gateway_filers(four_nodes["st-4"]) == filers


def test_db_1_keeps_no_filer_store(four_nodes):
    db = four_nodes["db-1"]
    assert not [state for state in db if "seaweedfs" in state]
    assert "db-database-ccmirror-mysql-database-present" in db


def test_a_one_node_cluster_runs_every_server_and_its_gateway_asks_its_own_filer(s3_one_node):
    st1 = s3_one_node
    for server in ("master", "volume", "filer", "s3"):
        assert f"storage-weed-{server}-service-running" in st1, server
    assert gateway_filers(st1) == [f"{SITE['storage_host']}:8888"]
    unit = render(st1["storage-weed-master-unit-file-managed"], "master")
    assert "-defaultReplication=000" in unit and "-peers=none" in unit


@pytest.fixture(scope="module")
def s3_one_node(salt_call_bin, tmp_path_factory) -> dict:
    """st-1's highstate on a SeaweedFS site of that one node (the lab's)."""
    root = tmp_path_factory.mktemp("one-node") / "private"
    write_lab_secrets(root, MINIONS, {**SITE, "storage_backend": "seaweedfs"})
    salt_call = make_salt_call(
        salt_call_bin, tmp_path_factory.mktemp("salt-one"), [ROOT / "pillar", root]
    )
    return salt_call("st-1", "state.show_highstate")
