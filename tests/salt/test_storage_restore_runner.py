"""`salt-run storage.restore from=backup`, `audit.backup` and db-1's
`ccmirror_audit_s3.backup_lag` through a real salt-master and a real db-1 minion on loopback:
db-1 runs `harvester backup-lag`, `backup-check` and `restore-photos --from backup` with the
audit's settings file, which carries `backup_target:` (a second SeaweedFS cluster that `weed
filer.backup` copies the test's bucket into, and the sink's key for backup-check's copies)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.processes import seaweedfs_s3 as s3
from lab.processes.seaweedfs_backup import start_backup
from tests.conftest import wait_for
from tests.integration.test_storage_audit_s3 import content, remove_only_version
from tests.salt import test_audit_runner
from tests.salt.test_audit_runner import BucketMirror, conn_setup

s3_site = test_audit_runner.s3_site  # the fixture: db-1 with the audit's settings for a bucket
BACKUP_BUCKET = "backup"
RUNNER = Path(__file__).resolve().parents[2] / "_runners" / "storage.py"


@dataclass
class BackupCluster:
    cluster: object
    sink: s3.S3Key  # filer.backup's and audit.backup's: Write only
    reader: s3.S3Key


def backup_cluster(seaweedfs_factory, salt) -> BackupCluster:
    """A second SeaweedFS cluster with a bucket made as the images bucket is, its sink and
    reader keys, and db-1's audit settings pointed at it (salt/db/audit.sls's shape)."""
    backup = seaweedfs_factory(volume_servers=1, replication="000")
    s3.create_images_bucket(s3.admin_client(backup), BACKUP_BUCKET)
    sink, reader = s3.new_key(), s3.new_key()
    s3.add_identity(backup, "sink", sink, BACKUP_BUCKET)
    s3.add_identity(backup, "reader", reader, BACKUP_BUCKET, ("Read", "List"))
    s3.wait_known(backup, reader, BACKUP_BUCKET)
    s3.wait_known(backup, sink, BACKUP_BUCKET)
    settings = yaml.safe_load(salt.audit_config.read_text())
    settings["backup_target"] = s3.storage_setting(backup, reader, BACKUP_BUCKET) | {
        "filer": backup.filer_url,
        "sink_access_key": sink.access_key,
        "sink_secret_key": sink.secret_key,
    }
    salt.audit_config.write_text(yaml.safe_dump(settings))
    return BackupCluster(backup, sink, reader)


def follow(site: BackupCluster, main, bucket: str, base: Path, *extra: str):
    """`weed filer.backup` from main's `bucket` into the backup cluster."""
    target = s3.storage_setting(site.cluster, site.sink, BACKUP_BUCKET)
    return start_backup(base, main, target, bucket, extra_args=extra)


def test_audit_backup_finds_and_fills_a_hole_through_a_master(
    s3_site, seaweedfs_factory, db_url, sql, tmp_path
):
    """Photos filer.backup never copied (its checkpoint moved past them): `audit.backup`
    names them, copies them from main with the sink's key, and a second run finds none."""
    salt, store = s3_site
    site = backup_cluster(seaweedfs_factory, salt)
    refused, code, _ = salt.run_json("audit.backup")
    assert code == 1 and "no backup target" in refused["error"], refused
    (salt.base / "pillar" / "site.sls").write_text(yaml.safe_dump({"site": {
        "storage_backend": "seaweedfs", "backup_endpoint": site.cluster.s3_url}}))  # fmt: skip
    refused, code, _ = salt.run_json("audit.backup", "margin_minutes=-1")
    assert code == 1 and "margin_minutes" in refused["error"], refused

    conn_setup(db_url)
    keys = BucketMirror(db_url, sql, store).store()
    time.sleep(3)  # -timeAgo=2s: filer.backup starts after every one of them
    process = follow(site, store.bucket.cluster, store.name, tmp_path / "fb", "-timeAgo=2s")
    try:
        dry, code, _ = salt.run_json("audit.backup", "dry_run=True", "margin_minutes=0")
        assert code == 0 and (dry["missing"], dry["filled"]) == (len(keys), 0), dry
        assert dry["whole"] is False and dry["comment"] == dry["backup"]["summary"], dry
        filled, code, _ = salt.run_json("audit.backup", "margin_minutes=0")
        assert code == 0 and (filled["filled"], filled["whole"]) == (len(keys), True), filled
        again, code, _ = salt.run_json("audit.backup", "dry_run=True", "margin_minutes=0")
        assert code == 0 and (again["missing"], again["whole"]) == (0, True), again
        assert again["backup"]["checked"] == len(keys), again
        # What orch.rotate checks after a rotation of the backup keys: the sink's writes too.
        probed, code = salt.call("db-1", "ccmirror_audit_s3.backup_lag", "probe_sink=True")
        assert code == 0 and probed["backup-lag"]["sink_probe"].endswith("/sink.txt"), probed
    finally:
        process.stop(10)


def test_restore_from_the_backup_through_a_master(
    s3_site, seaweedfs_factory, db_url, sql, tmp_path
):
    salt, store = s3_site
    main, bucket = store.bucket.cluster, store.name
    site = backup_cluster(seaweedfs_factory, salt)
    process = follow(site, main, bucket, tmp_path / "filer-backup")
    try:
        conn_setup(db_url)
        mirror = BucketMirror(db_url, sql, store)
        keys = mirror.store()
        photo_of = {i: int(keys[i].rsplit("/", 1)[1].split(".")[0]) for i in keys}

        def caught_up():
            lag, code = salt.call("db-1", "ccmirror_audit_s3.backup_lag")
            assert code == 0, lag
            return lag if lag["backup-lag"]["behind"] == 0 else None

        wait_for(caught_up, 90, "the backup to catch up", interval=1)
        missing, deleted, lost = sorted(keys)[1:4]
        remove_only_version(mirror, keys[missing], missing)  # the admin key's mistake
        mirror.writer.delete_object(Bucket=mirror.bucket, Key=keys[deleted])
        # Stored after the newest catalog backup: the restored catalog has it pending, and
        # main's filer store, restored too, lost its name.
        remove_only_version(mirror, keys[lost], lost)
        sql("DELETE FROM stored_images WHERE image_id = %s", lost)
        sql("UPDATE images SET state = 'pending' WHERE id = %s", lost)

        for args, said in [
            (("from=elsewhere",), "from must be one of backup, not 'elsewhere'"),
            ((), "from must be one of backup, not None"),
            (("from=backup", "dry_run=perhaps"), "dry_run must be True or False"),
        ]:
            refused, code, _ = salt.run_json("storage.restore", *args)
            assert code == 1 and said in refused["error"], (args, refused)
        dry, code, _ = salt.run_json("storage.restore", "from=backup", "dry_run=True")
        assert code == 0 and (dry["restored"], dry["unstored_restored"]) == (2, 1), dry
        assert mirror.latest(keys[missing]) is None, "a dry run changes nothing"
        assert mirror.latest(keys[lost]) is None, "a dry run changes nothing"

        answer, code, _ = salt.run_json("storage.restore", "from=backup")
        assert code == 0, answer
        assert (answer["restored"], answer["not_on_backup"]) == (2, 0), answer
        assert (answer["unstored_restored"], sum(answer["unstored_skipped"].values())) == (1, 0)
        assert answer["db_minion"] == "db-1" and answer["comment"] == answer["restore"]["summary"]
        for image_id in (missing, deleted, lost):
            assert mirror.latest(keys[image_id]) == content(photo_of[image_id])
        again, code, _ = salt.run_json("storage.restore", "from=backup")
        assert code == 0 and (again["restored"], again["unstored_restored"]) == (0, 0), again
        assert again["fine"] == len(keys) - 1, again  # `lost` is the audit's to adopt
    finally:
        process.stop(10)


SUMMARY = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("storage_runner", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
status = {"volume_servers": 1, "masters": ["st-1"], "volumes": 2, "files": 5, "bytes": 9,
          "stored_bytes": 9, "free_slots": 3, "free_bytes": 7, "replication": ["000"],
          "under_replicated": {"volumes": 0, "files": 0}}
print(json.dumps([module.summary_line(status),
                  module.summary_line(status | {"backup_lag": {"behind": 1200, "seconds": 42.4}})]))
"""


def test_the_status_line_shows_the_backup_lag_only_when_the_site_has_a_backup(salt_call_bin):
    result = subprocess.run(
        [str(salt_call_bin.parent / "python"), "-c", SUMMARY, str(RUNNER)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    without, with_backup = json.loads(result.stdout)
    assert "backup" not in without
    assert with_backup == without + "; backup 1,200 photo(s), 42 s behind"
