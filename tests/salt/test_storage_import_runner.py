"""`salt-run storage.import` through a real salt-master and a real db-1 minion on loopback:
db-1 runs `harvester import-tree` (`_modules/ccmirror_audit_s3.py`) with the storage audit's
settings against a real SeaweedFS bucket and a real MariaDB catalog, the runner shows its
progress lines as they come, and returns what it did; a second run uploads nothing. Bad
arguments and a site without the settings are one clear error each, with nothing changed.
(tests/salt/test_storage_runner.py checks that it loads as `storage.import` with a CLI example.)"""

from __future__ import annotations

from ccmirror_common.layout import image_path
from lab.mission import old_tree
from tests.integration.test_import_tree import bucket_objects, snapshot
from tests.salt import test_audit_runner
from tests.salt.test_audit_runner import conn_setup

s3_site = test_audit_runner.s3_site  # the fixture: db-1 with the audit's settings for a bucket
GOOD = range(1, 7)  # conn_setup's catalog holds photos 1..8


def test_storage_import_on_db_1_stores_the_good_files_and_changes_nothing_again(
    s3_site, db_url, sql, tmp_path
):
    salt, store = s3_site
    conn_setup(db_url)
    tree = old_tree.OldTree(tmp_path / "old-mirror")
    old_tree.write_good(tree, GOOD[:3], "old")
    old_tree.write_good(tree, GOOD[3:], "rsync")
    old_tree.write_faults(tree, [7], "truncated")
    old_tree.write_unknown(tree, 2, 9_000_000_000)
    report = tmp_path / "reports" / "import.jsonl"

    answer, code, progress = salt.run_json(
        "storage.import", f"path={tree.root}", f"report={report}", "progress_seconds=0"
    )

    assert code == 0, answer
    counts = {k: answer[k] for k in ("seen", "uploaded", "skipped", "unknown", "bad")}
    assert counts == {"seen": 9, "uploaded": 6, "skipped": 0, "unknown": 2, "bad": 1}, answer
    assert answer["db_minion"] == "db-1" and answer["comment"] == answer["import"]["summary"]
    shown = " | ".join(progress)
    assert f"importing {tree.root} on db-1 into the bucket" in shown, progress
    assert f"import {tree.root}: 9 files seen" in shown, progress
    assert len(report.read_text().splitlines()) == 3
    keys = {image_path(old_tree.photo_id(seq), "jpg") for seq in GOOD}
    objects = bucket_objects(store.client("admin"), store.name)
    assert {key for key in objects if key.startswith("images/")} == keys
    # and their attribution, one manifest object for the batch
    assert [key for key in objects if key.startswith("manifests/")] == answer["import"]["manifests"]
    assert sql("SELECT id FROM images WHERE state = 'stored' ORDER BY id") == [(s,) for s in GOOD]

    before = snapshot(sql)
    again, code, _ = salt.run_json("storage.import", f"path={tree.root}", f"report={report}")
    assert code == 0, again
    assert (again["uploaded"], again["skipped"]) == (0, 6), again
    assert snapshot(sql) == before
    assert bucket_objects(store.client("admin"), store.name) == objects

    for args, said in [
        (("path=relative/dir",), "path must be an absolute directory on the database minion"),
        ((f"path={tree.root}", "concurrency=0"), "concurrency must be a whole number >= 1"),
        ((f"path={tree.root}", "dry_run=perhaps"), "dry_run must be True or False"),
        (("path=/nonexistent/old-mirror",), "no such directory: /nonexistent/old-mirror"),
    ]:
        refused, code, _ = salt.run_json("storage.import", *args, f"report={report}")
        assert code == 1 and said in refused["error"], (args, refused)
    salt.audit_config.rename(salt.audit_config.with_suffix(".moved"))
    refused, code, _ = salt.run_json("storage.import", f"path={tree.root}", f"report={report}")
    assert code == 1 and f"no S3 settings at {salt.audit_config}" in refused["error"], refused
    assert snapshot(sql) == before
