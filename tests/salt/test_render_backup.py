"""The backup role (bk-*, #20) renders as a SeaweedFS cluster of its own and `weed
filer.backup` following the main filer, with its gateway's own keys; db-1 gets the backup
cluster's reader key and nothing else of it; the main cluster's nodes know none of them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from lab.fleet.lab_secrets import write_lab_secrets
from tests.salt.conftest import MINIONS, ROOT, SITE, make_salt_call
from tests.salt.test_render import args, render

BACKUP_ADDRESS = "10.250.0.20"
BACKUP_VOLUME = "/dev/disk/by-id/scsi-0DO_Volume_ccmirror-bk-1"
NODES = {"st-1": SITE["storage_host"], "st-2": "10.250.0.9"}
BACKUP_STATES = [
    "storage-weed-master-service-running",
    "storage-weed-volume-service-running",
    "storage-weed-filer-service-running",
    "storage-weed-s3-service-running",
    "storage-weed-bucket-cmd-run",
    "backup-replication-config-file-managed",
    "backup-weed-service-running",
]


@pytest.fixture(scope="module")
def backup_site(salt_call_bin, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """A SeaweedFS site with two storage nodes and a backup node: its private root and the
    highstates of bk-1, st-1 and db-1."""
    root = tmp_path_factory.mktemp("backup-site") / "private"
    site = {
        **SITE,
        "storage_backend": "seaweedfs",
        "storage_nodes": NODES,
        "backup_nodes": {"bk-1": BACKUP_ADDRESS},
        "backup_volumes": {"bk-1": BACKUP_VOLUME},  # Terraform's output
    }
    write_lab_secrets(root, [*MINIONS, "bk-1"], site)
    salt_call = make_salt_call(
        salt_call_bin, tmp_path_factory.mktemp("salt-backup"), [ROOT / "pillar", root]
    )
    return root, {m: salt_call(m, "state.show_highstate") for m in ("bk-1", "st-1", "db-1")}


def own(root: Path, minion: str) -> dict:
    return yaml.safe_load((root / "minions" / f"{minion}.sls").read_text())


def test_the_backup_node_runs_a_one_node_seaweedfs_of_its_own_and_filer_backup(backup_site):
    _, highstates = backup_site
    bk = highstates["bk-1"]
    assert isinstance(bk, dict), f"bk-1 did not render: {bk}"
    assert [s for s in BACKUP_STATES if s not in bk] == []
    # Nothing of the main site's: no rsync target, no filer database login.
    assert "storage-weed-filer-login-file-managed" not in bk
    assert "storage-sshd-service-running" not in bk
    master = render(bk["storage-weed-master-unit-file-managed"], "master")
    assert f"-ip={BACKUP_ADDRESS}" in master and "-peers=none" in master
    assert "-defaultReplication=000" in master  # one node: one copy
    volume = render(bk["storage-weed-volume-unit-file-managed"], "volume")
    assert f"-mserver={BACKUP_ADDRESS}:9333" in volume and SITE["storage_host"] not in volume
    filer_toml = render(bk["storage-weed-filer-config-file-managed"], "filer.toml")
    assert tomllib.loads(filer_toml) == {
        "leveldb2": {"enabled": True, "dir": "/srv/ccmirror-storage/seaweedfs-filer"}
    }
    assert "ExecStartPre" not in render(bk["storage-weed-filer-unit-file-managed"], "filer")
    # Its data volume (Terraform's backup_volumes) is mounted at the storage root first.
    mount = args(bk["storage-volume-root-mount-mounted"])
    assert (mount["name"], mount["device"]) == ("/srv/ccmirror-storage", BACKUP_VOLUME)


def test_the_backup_filer_takes_writes_only_with_a_key_made_on_the_node(backup_site, tmp_path):
    """db-1 lists the backup's names through bk-1's filer; a write or delete there needs a
    token signed by a key bk-1 makes once for itself, never in pillar or in Salt's data."""
    _, highstates = backup_site
    bk = highstates["bk-1"]
    guard = args(bk["storage-weed-filer-guard-cmd-run"])
    assert guard["creates"] == "/etc/seaweedfs/security.toml"
    filer = args(bk["storage-weed-filer-service-running"])
    assert {"cmd": "storage-weed-filer-guard-cmd-run"} in filer["watch"]
    restart = args(bk["storage-weed-s3-restart-cmd-run"])  # the gateway signs with it
    assert restart["onchanges"] == [{"cmd": "storage-weed-filer-guard-cmd-run"}]
    assert "try-restart ccmirror-weed-s3" in restart["name"]
    for main in ("st-1", "db-1"):
        assert not [k for k in highstates[main] if "guard" in k or "s3-restart" in k], main
    # The command itself, run into a directory of this test's: a 0600 TOML with a fresh key.
    command = guard["name"].replace("/etc/seaweedfs", str(tmp_path))
    command = command.replace("seaweedfs:seaweedfs", f"{os.getuid()}:{os.getgid()}")
    keys = []
    for _ in range(2):
        (tmp_path / "security.toml").unlink(missing_ok=True)
        subprocess.run(["sh", "-c", command], check=True)
        made = tmp_path / "security.toml"
        assert stat.S_IMODE(made.stat().st_mode) == 0o600
        keys.append(tomllib.loads(made.read_text())["jwt"]["filer_signing"]["key"])
    assert all(len(key) == 64 and int(key, 16) for key in keys) and keys[0] != keys[1]
    assert keys[0] not in json.dumps(bk), "the key is made on the node, not rendered"


def test_filer_backup_follows_the_main_filer_and_never_sends_a_delete(backup_site):
    root, highstates = backup_site
    bk = highstates["bk-1"]
    unit = render(bk["backup-weed-unit-file-managed"], "backup")
    (command,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    words = command.split()
    assert "filer.backup" in words
    # The first main node's filer (no masters pinned in this site: the first node by id).
    assert f"-filer={SITE['storage_host']}:8888" in words
    assert "-filerPath=/buckets/images" in words and "-doDeleteFiles=false" in words
    sink = own(root, "bk-1")["storage"]["s3_identities"]["sink"]
    assert sink["secret_key"] not in unit
    replication = args(bk["backup-replication-config-file-managed"])
    assert (replication["mode"], replication["show_changes"]) == ("0600", False)
    toml = tomllib.loads(render(bk["backup-replication-config-file-managed"], "replication"))
    s3 = toml["sink"]["s3"]
    assert s3["enabled"] is True and s3["endpoint"] == f"http://{BACKUP_ADDRESS}:8333"
    assert (s3["bucket"], s3["aws_access_key_id"]) == ("images", sink["access_key"])
    assert s3["aws_secret_access_key"] == sink["secret_key"]


def test_the_backup_gateway_knows_its_own_keys_only(backup_site):
    """bk-1's gateway: its admin, the sink (put only) and db-1's reader (read and list);
    none of the main cluster's keys, and the main gateway none of the backup's."""
    root, highstates = backup_site
    text = render(highstates["bk-1"]["storage-weed-s3-config-file-managed"], "s3.json")
    identities = {i["name"]: i for i in json.loads(text)["identities"]}
    assert set(identities) == {"admin", "sink", "reader"}
    assert identities["sink"]["actions"] == ["Write:images"]
    assert identities["reader"]["actions"] == ["Read:images", "List:images"]
    keys = own(root, "bk-1")["storage"]["s3_identities"]
    main = own(root, "st-1")["storage"]["s3_identities"]
    assert keys["admin"]["access_key"] != main["admin"]["access_key"]
    main_text = render(highstates["st-1"]["storage-weed-s3-config-file-managed"], "s3.json")
    assert all(key["secret_key"] not in main_text for key in keys.values())


def test_db_1_measures_and_restores_with_the_readers_key_and_fills_with_the_sinks(
    backup_site, tmp_path
):
    from harvester.config import load_settings

    root, highstates = backup_site
    state = args(highstates["db-1"]["db-audit-config-file-managed"])
    settings = yaml.safe_load(state["contents"])
    reader = own(root, "bk-1")["storage"]["s3_identities"]["reader"]
    sink = own(root, "bk-1")["storage"]["s3_identities"]["sink"]
    target = {
        "endpoint": f"http://{BACKUP_ADDRESS}:8333",
        "bucket": "images",
        "region": "us-east-1",
        "access_key": reader["access_key"],
        "secret_key": reader["secret_key"],
        "filer": f"http://{BACKUP_ADDRESS}:8888",  # its S3 listing hides the copies' keys
    }
    # audit.backup copies what filer.backup left out with the sink's key (Write only).
    assert settings["backup_target"] == target | {
        "sink_access_key": sink["access_key"],
        "sink_secret_key": sink["secret_key"],
    }
    assert own(root, "db-1")["backup_target"] == reader | {"sink": sink}
    # The catalog's restore reads the backup's copies when db-1 was lost with main's names;
    # its settings have no need of the sink's key, and do not have it.
    backup = args(highstates["db-1"]["db-backup-config-file-managed"])["contents"]
    assert yaml.safe_load(backup)["backup_target"] == target
    (tmp_path / "audit.yaml").write_text(state["contents"])
    loaded = load_settings(tmp_path / "audit.yaml", environ={})  # the harvester reads it
    assert loaded.backup_target.sink_access_key == sink["access_key"]
    admin = own(root, "bk-1")["storage"]["s3_identities"]["admin"]
    assert admin["secret_key"] not in json.dumps(highstates["db-1"])
    # ... which the minion's schedule runs every day, leaving the last hour to filer.backup.
    schedule = args(highstates["db-1"]["db-backup-check-schedule-present"])
    assert schedule["function"] == "ccmirror_audit_s3.backup_check", schedule
    assert (schedule["hours"], schedule["job_kwargs"]) == (24, {"margin_minutes": 60}), schedule
    assert "db-backup-check-schedule-absent" not in highstates["db-1"]
