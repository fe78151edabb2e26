"""`salt-run storage.status` and `salt-run storage.repair` through a real salt-master and a
real storage minion on loopback (`_modules/ccmirror_storage.py`), against a real SeaweedFS
cluster (two volume servers, replication 001). The minion finds the masters as a storage
droplet does, from `site:storage_nodes` and `storage:seaweedfs:ports` in its config, and weed
under `storage:seaweedfs:prefix`.

SeaweedFS 4.48 will not copy a volume between servers on one host (loopback), so no repair
here moves data: the dry run's plan and the refusal of a repair that cannot restore copies
are tested here, the real repair in the e2e test on the lab's bridge."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from lab.processes.seaweedfs import Cluster
from lab.processes.seaweedfs_s3 import IMAGES_BUCKET, admin_client
from tests.conftest import wait_for
from tests.salt.conftest import runner_master_config
from tests.salt.loopback import Master, salt_on_loopback

ROOT = Path(__file__).resolve().parent.parent.parent
OBJECTS = 20
POLL = 60  # seconds for the master to hear of puts and lost servers (heartbeats)


def storage_minion_config(base: Path, minion: str, cluster: Cluster) -> None:
    """The storage settings a droplet's pillar gives, in the minion's minion.d/ (read with
    the config salt_on_loopback writes): this cluster's master port, weed under a prefix."""
    weed = base / "prefix" / "venv" / "bin" / "weed"
    weed.parent.mkdir(parents=True)
    weed.symlink_to(cluster.weed)
    settings = {
        "site": {"storage_nodes": {minion: "127.0.0.1"}},
        "storage": {
            "seaweedfs": {
                "prefix": str(base / "prefix"),
                "ports": {"master": cluster.masters[0].port},
            }
        },
    }
    (base / minion / "minion.d").mkdir(parents=True)
    (base / minion / "minion.d" / "storage.conf").write_text(yaml.safe_dump(settings))


@pytest.fixture
def cluster(seaweedfs_factory: Callable[..., Cluster]) -> Cluster:
    cluster = seaweedfs_factory()
    s3 = admin_client(cluster)
    for number in range(OBJECTS):
        s3.put_object(Bucket=IMAGES_BUCKET, Key=f"images/00/00/{number}.jpg", Body=os.urandom(4000))
    return cluster


@pytest.fixture
def salt(cluster: Cluster, salt_call_bin) -> Iterator[Master]:
    base = Path(tempfile.mkdtemp(prefix="ccm-st-"))  # short: Salt's sockets live below it
    storage_minion_config(base, "st-1", cluster)
    with salt_on_loopback(base, {"st-1": {}, "db-1": {}}, {}) as master:
        yield master


def status_when(salt: Master, predicate: Callable[[dict], bool], what: str) -> dict:
    """`salt-run storage.status` once it shows what the cluster's heartbeats bring."""

    def current() -> dict | None:
        answer, code, _ = salt.run_json("storage.status")
        assert code == 0, answer
        return answer if predicate(answer) else None

    return wait_for(current, POLL, what, interval=1)


def test_status_reports_the_cluster_and_a_lost_copy_and_repair_plans_the_fix(salt, cluster):
    answer = status_when(salt, lambda a: a["files"] == OBJECTS, f"{OBJECTS} files")
    volumes = cluster.volume_locations()
    assert answer["minion"] == "st-1" and answer["leader"] == cluster.masters[0].address
    assert {node["address"] for node in answer["nodes"]} == cluster.data_nodes()
    assert answer["volumes"] == len(volumes) and answer["replication"] == ["001"]
    assert answer["stored_bytes"] == 2 * answer["bytes"] >= OBJECTS * 4000
    assert answer["free_slots"] == answer["max_volumes"] - 2 * len(volumes)
    assert all(node["disk"]["free_bytes"] > 0 for node in answer["nodes"])
    assert answer["under_replicated"]["volumes"] == 0 and answer["missing_volume_ids"] == []

    cluster.kill_volume_server(0)
    lost = status_when(
        salt,
        lambda a: a["under_replicated"]["files"] == OBJECTS,
        "every volume to show one copy of two",
    )
    under = lost["under_replicated"]
    assert under["volumes"] == len(volumes) == lost["volumes"]
    assert {v["id"] for v in under["list"]} == set(volumes)
    assert all((v["copies"], v["wanted"]) == (1, 2) for v in under["list"])
    assert "1 volume server(s)" in lost["comment"]

    # No server left to hold the second copies: the repair says so and fails.
    failed, code, progress = salt.run_json("storage.repair", timeout=600)
    assert code == 1, failed
    assert f"no server with a free slot for {len(volumes)} volume(s)" in failed["error"]
    assert failed["copied"] == 0 and failed["under_replicated_after"] == len(volumes)

    # A new server: the dry run plans a copy of each volume onto it and changes nothing.
    new = cluster.add_volume_server()
    plan, code, progress = salt.run_json("storage.repair", "apply=False", timeout=600)
    assert code == 0, plan
    assert progress[0].startswith("before, from st-1:"), progress
    assert "step 1/2: volume.fix.replication (dry run) on st-1" in progress
    assert "step 2/2: volume.balance (dry run) on st-1" in progress
    assert progress[-1].startswith("after:"), progress
    fix = plan["steps"][0]
    assert fix["step"] == "fix_replication" and fix["under_replicated"] == len(volumes)
    assert sorted(c["volume"] for c in fix["copies"]) == sorted(volumes)
    assert {c["to"] for c in fix["copies"]} == {new.address}
    assert (plan["would_copy"], plan["copied"], plan["moved"]) == (len(volumes), 0, 0)
    assert plan["under_replicated_after"] == len(volumes)
    assert plan["status"]["volume_servers"] == 2


def test_bad_arguments_are_one_clear_error(salt, cluster):
    refusals = [
        (("storage.repair", "apply=maybe"), "apply must be True or False"),
        (("storage.status", "timeout=-1"), "timeout must be a number of seconds"),
        (("storage.status", "minion=db-1"), "minion must be a storage minion"),
        (("storage.status", "minion=st-9"), "the storage minion st-9 did not answer"),
    ]
    for args, message in refusals:
        answer, code, _ = salt.run_json(*args)
        assert code == 1 and message in answer["error"], (args, answer)
    answer, code = salt.call("st-1", "ccmirror_storage.status", "masters=not-an-address")
    assert code == 1 and "masters must be host:port" in answer["comment"], answer
    answer, code = salt.call("st-1", "ccmirror_storage.status", "masters=127.0.0.1:1")
    assert code == 1 and "no SeaweedFS master answered" in answer["comment"], answer
    answer, code = salt.call("st-1", "ccmirror_storage.repair", "steps=vacuum")
    assert code == 1 and "steps must be some of fix_replication, balance" in answer["comment"]
    answer, code = salt.call("db-1", "ccmirror_storage.status")
    assert code == 1 and "site:storage_nodes is empty" in answer["comment"], answer


def test_no_storage_minion_is_one_clear_error(salt_call_bin):
    base = Path(tempfile.mkdtemp(prefix="ccm-st-"))
    with salt_on_loopback(base, {"db-1": {}}, {}) as master:
        for function in ("storage.status", "storage.repair"):
            answer, code, _ = master.run_json(function)
            assert code == 1 and "no storage minion (st-*) answered" in answer["error"], answer


LOAD_AND_CHECK = r"""
import json, sys
import salt.config, salt.loader
opts = salt.config.master_config(sys.argv[1])
runners = salt.loader.runner(opts, utils=salt.loader.utils(opts))
minion_opts = salt.config.minion_config(None)
minion_opts.update(module_dirs=[sys.argv[2]], file_client="local")
modules = salt.loader.minion_mods(minion_opts)
names = sorted(n for n in runners if n.startswith("storage.")) + sorted(
    n for n in modules
    if n.startswith(("ccmirror_storage.", "ccmirror_storage_access.", "ccmirror_backup.")))
print(json.dumps({n: (runners.get(n) or modules.get(n)).__doc__ for n in names}))
"""


def test_runner_and_module_load_through_salt_with_a_cli_example_each(salt_call_bin, tmp_path):
    result = subprocess.run(
        [str(salt_call_bin.parent / "python"), "-c", LOAD_AND_CHECK,
         str(runner_master_config(tmp_path)), str(ROOT / "_modules")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    docs = json.loads(result.stdout)
    assert sorted(docs) == [
        "ccmirror_backup.backup",
        "ccmirror_backup.backups",
        "ccmirror_backup.restore",
        "ccmirror_storage.repair",
        "ccmirror_storage.status",
        "ccmirror_storage_access.apply",
        "ccmirror_storage_access.reload_gateway",
        "storage.backup_catalog",
        "storage.import",  # import_tree, by its alias: Python has `import`
        "storage.repair",
        "storage.restore",
        "storage.restore_catalog",
        "storage.status",
    ]
    for name, doc in docs.items():
        command = "salt-run storage." if name.startswith("storage.") else name.split(".")[0]
        assert "CLI Example::" in doc and command in doc, name


def test_status_and_repair_ask_the_pinned_masters_not_the_first_nodes() -> None:
    """After st-3 (a master) left site:storage_nodes and st-4 came, the module asks the
    masters the cluster runs (the pinned addresses), as salt/storage/seaweedfs/map.jinja
    renders them; with nothing pinned, the first three nodes by id."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "ccmirror_storage_under_test", ROOT / "_modules" / "ccmirror_storage.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    nodes = {"st-1": "10.0.0.3", "st-2": "10.0.0.4", "st-4": "10.0.0.9"}
    pinned = {"st-3": "10.0.0.5", "st-1": "10.0.0.3", "st-2": "10.0.0.4"}
    assert module.masters_of(nodes, 9333, None, pinned) == [
        "10.0.0.3:9333",
        "10.0.0.4:9333",
        "10.0.0.5:9333",
    ]
    assert module.masters_of(nodes, 9333) == ["10.0.0.3:9333", "10.0.0.4:9333", "10.0.0.9:9333"]
