"""`harvester import-tree` run as a process against a real SeaweedFS S3 gateway and a real
MariaDB: a directory of 10,000 files in both old layouts (lab/mission/old_tree.py) stores
exactly the good files of known photos, each object's bytes those of its file, marks those
photos stored as a downloader's report does, lists what it did not take, and a second run
uploads nothing and changes nothing; the queue then leases none of the imported photos.
A photo the catalog already calls stored but whose key the bucket lacks (a site moving from
rsync storage) is put back, the catalog untouched. Bad input is one clear error, nothing done.

The bucket is the test's own, made as the images bucket is (object lock, versioning); the
import uses the storage audit's identity (Read, List and Write on it)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccmirror_common.layout import image_path
from harvester.db import connect
from harvester.queue import leases as dq
from lab.mission import old_tree
from lab.mission.catalog_images import fill_images
from lab.processes import seaweedfs_s3 as s3
from tests.conftest import harvester_env, run_harvester

CATALOG = 6_600  # photos, catalog ids 1..CATALOG
GOOD_OLD = range(1, 3001)  # the old system's names; 1..100 as the fallback size (_b)
GOOD_RSYNC = range(3001, 6001)  # this project's rsync layout
FAULTS = {
    "text": range(6001, 6201),
    "truncated": range(6201, 6401),
    "png": range(6401, 6451),
    "secret": range(6451, 6501),
}
WITHDRAWN = range(6501, 6511)
LEASED = range(6511, 6521)  # held by a downloader's lease when the import runs
# Ids the catalog does not have (the rest of the 10,000 files), and files of no layout. Most
# files of a real tree are photos; here fewer of them are, to keep the PUTs (the slow part
# on this machine: ~250/s into a two-server cluster) to 6,000.
UNKNOWN_IDS, STRAYS = 3_380, 50
FIRST_UNKNOWN = 9_000_000_000
DUPLICATES = range(1, 51)  # also in the rsync layout, same bytes


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture
def auditor(s3_bucket: s3.WritableBucket) -> s3.S3Key:
    """The storage audit's own identity on the test's bucket: what db-1's import uses."""
    key = s3.new_key()
    s3.add_identity(s3_bucket.cluster, f"auditor-{s3_bucket.name}", key, s3_bucket.name,
                    s3.AUDITOR_ACTIONS)  # fmt: skip
    s3.wait_known(s3_bucket.cluster, key, s3_bucket.name)
    return key


def run_import(db_url: str, bucket: s3.WritableBucket, key: s3.S3Key, *args: str):
    env = harvester_env(
        db_url,
        CCMIRROR_STORAGE_ENDPOINT=bucket.cluster.s3_url,
        CCMIRROR_STORAGE_BUCKET=bucket.name,
        CCMIRROR_STORAGE_ACCESS_KEY=key.access_key,
        CCMIRROR_STORAGE_SECRET_KEY=key.secret_key,
    )
    return run_harvester("import-tree", *args, env=env, timeout=300)


def ok_json(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def catalog(db_url: str, photos: int) -> None:
    conn = connect(db_url)
    fill_images(conn, photos)
    conn.close()


def snapshot(sql) -> tuple:
    return (
        sql("SELECT id, state, lease_id, attempts, last_error FROM images ORDER BY id"),
        sql("SELECT * FROM stored_images ORDER BY image_id"),
    )


def bucket_objects(admin, bucket: str) -> dict[str, list[tuple[int, str]]]:
    """Every version in the bucket: key -> [(size, ETag)] (a key put twice has two)."""
    found: dict[str, list] = {}
    for page in admin.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions") or []:
            found.setdefault(version["Key"], []).append((version["Size"], version["ETag"]))
    return found


def build_tree(root: Path) -> old_tree.OldTree:
    tree = old_tree.OldTree(root)
    old_tree.write_good(tree, GOOD_OLD[:100], "old", size="b")
    old_tree.write_good(tree, GOOD_OLD[100:], "old")
    old_tree.write_good(tree, GOOD_RSYNC, "rsync")
    for fault, seqs in FAULTS.items():
        old_tree.write_faults(tree, seqs, fault)
    for seq in [*WITHDRAWN, *LEASED]:
        tree.write(old_tree.rsync_name(seq), old_tree.photo_bytes(seq))
    for seq in DUPLICATES:
        tree.write(old_tree.rsync_name(seq), old_tree.photo_bytes(seq))
    old_tree.write_unknown(tree, UNKNOWN_IDS, FIRST_UNKNOWN)
    old_tree.write_strays(tree, STRAYS)
    return tree


def test_a_tree_of_10000_files_stores_exactly_the_good_known_ones_once(
    db_url, sql, s3_bucket, auditor, tmp_path
):
    catalog(db_url, CATALOG)
    sql("UPDATE images SET state = 'withdrawn' WHERE id BETWEEN %s AND %s",
        WITHDRAWN[0], WITHDRAWN[-1])  # fmt: skip
    conn = connect(db_url)
    held = dq.lease(conn, "dl-1", len(LEASED), 3600, utc_now(), after=LEASED[0] - 1)
    assert held.item_ids == list(LEASED)
    tree = build_tree(tmp_path / "tree")
    assert tree.files == 10_000
    good = set(tree.good)
    report = tmp_path / "report.jsonl"

    done = run_import(db_url, s3_bucket, auditor, str(tree.root), "--json", "--report",
                      str(report), "--progress-seconds", "5")  # fmt: skip

    first = ok_json(done)
    bad = sum(len(seqs) for fault, seqs in FAULTS.items() if fault != "secret")
    unknown = UNKNOWN_IDS + STRAYS + len(FAULTS["secret"])
    skipped = len(WITHDRAWN) + len(LEASED) + len(DUPLICATES)
    counts = {k: first[k] for k in ("seen", "matched", "uploaded", "skipped", "unknown", "bad")}
    assert counts == {
        "seen": 10_000,
        "matched": 10_000 - unknown,
        "uploaded": len(good),
        "skipped": skipped,
        "unknown": unknown,
        "bad": bad,
    }, first
    # The progress line, at the end at least: counts of each kind and the rate.
    assert re.search(
        rf"import {tree.root}: 10,000 files seen, {10_000 - unknown:,} matched, {len(good):,}"
        rf" uploaded, {skipped} skipped, {unknown:,} unknown, {bad} bad \([\d,]+ files/s\)$",
        done.stderr.strip(),
    ), done.stderr[-500:]
    # Every file not uploaded is in the report, with why.
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(lines) == 10_000 - len(good)
    reasons = {line["path"]: line["reason"] for line in lines}
    assert reasons["notes/readme-0.txt"] == "its name fits neither layout"
    assert reasons[old_tree.rsync_name(FAULTS["text"][0])].startswith("not an image")
    assert reasons[old_tree.old_system_name(FAULTS["truncated"][0])].startswith("truncated")
    assert reasons[old_tree.rsync_name(FAULTS["png"][0])] == "a png image named .jpg"
    assert "secret" in reasons[old_tree.old_system_name(FAULTS["secret"][0], secret="abc")]
    assert reasons[old_tree.rsync_name(0, pid=FIRST_UNKNOWN)].startswith("no photo 9000000000")
    assert reasons[old_tree.rsync_name(LEASED[0])] == "held by a download lease"
    assert reasons[old_tree.rsync_name(WITHDRAWN[0])] == "withdrawn in the catalog"

    # The catalog marks exactly those photos stored, as a downloader's report does.
    keys = {seq: image_path(old_tree.photo_id(seq), "jpg") for seq in good}
    stored = sql(
        "SELECT i.id, i.state, i.lease_id, HEX(s.sha256), HEX(s.md5), s.bytes, s.path, s.worker,"
        " s.lease_id FROM images i JOIN stored_images s ON s.image_id = i.id ORDER BY i.id"
    )
    expected = []
    for seq in sorted(good):
        data = tree.good[seq].read_bytes()
        expected.append((seq, "stored", 0, hashlib.sha256(data).hexdigest().upper(),
                         hashlib.md5(data).hexdigest().upper(), len(data), keys[seq],
                         "import", 0))  # fmt: skip
    assert stored == expected
    assert sql("SELECT COUNT(*) FROM images WHERE state = 'stored'") == [(len(good),)]

    # Run again: nothing uploaded, nothing in the catalog changed.
    before = snapshot(sql)
    second = ok_json(run_import(db_url, s3_bucket, auditor, str(tree.root), "--json"))
    assert (second["uploaded"], second["skipped"]) == (0, len(good) + skipped), second
    assert second["reasons"]["already stored"] >= len(good), second
    assert snapshot(sql) == before

    # The bucket holds exactly the good files, one version each (neither run put one twice),
    # every object's bytes its file's: its MD5 (the ETag of a single PUT) for all of them,
    # byte by byte for a sample.
    admin = s3_bucket.admin_client()
    want = {row[6]: [(row[5], f'"{row[4].lower()}"')] for row in expected}
    objects = bucket_objects(admin, s3_bucket.name)
    assert {key: v for key, v in objects.items() if not key.startswith("manifests/")} == want
    # Each imported photo's attribution, as a downloader writes a lease's: one manifest object
    # per batch of the first run, a line per photo with the catalog's license and owner.
    manifests = sorted(key for key in objects if key.startswith("manifests/"))
    assert manifests == sorted(first["manifests"]) and manifests, first["manifests"]
    bodies = [admin.get_object(Bucket=s3_bucket.name, Key=key)["Body"] for key in manifests]
    lines = [json.loads(line) for body in bodies for line in body.iter_lines()]
    attribution = {row[0]: row[1:] for row in sql(
        "SELECT i.photo_id, i.license_id, l.name, l.url, i.owner, i.owner_name, i.title,"
        " i.page_url FROM images i LEFT JOIN licenses l ON l.id = i.license_id"
        " WHERE i.state = 'stored'"
    )}  # fmt: skip
    fields = ("license_id", "license_name", "license_url", "owner", "owner_name", "title",
              "page_url")  # fmt: skip
    assert sorted(line["photo_id"] for line in lines) == sorted(attribution)
    by_key = {row[6]: row for row in expected}
    for line in lines:
        assert tuple(line[name] for name in fields) == attribution[line["photo_id"]], line
        assert line["sha256"].upper() == by_key[line["path"]][3], line
        assert line["bytes"] == by_key[line["path"]][5] and line["source_url"], line
    for seq in random.Random(20).sample(sorted(good), 100):
        body = admin.get_object(Bucket=s3_bucket.name, Key=keys[seq])["Body"].read()
        assert body == tree.good[seq].read_bytes()

    # The queue hands out none of them: what it leases is exactly the photos left pending.
    rest = dq.lease(conn, "dl-2", 100_000, 600, utc_now())
    conn.close()
    pending = {*range(FAULTS["text"][0], FAULTS["secret"][-1] + 1),
               *range(LEASED[-1] + 1, CATALOG + 1)}  # fmt: skip
    assert set(rest.item_ids) == pending


def test_a_photo_stored_on_rsync_but_missing_from_the_bucket_is_put_back_once(
    db_url, sql, s3_bucket, auditor, tmp_path
):
    catalog(db_url, 20)
    tree = old_tree.OldTree(tmp_path / "storage")
    old_tree.write_good(tree, range(1, 21), "rsync")
    # The catalog says stored (an rsync site's downloader reported them); the bucket is empty.
    conn = connect(db_url)
    lease = dq.lease(conn, "dl-1", 20, 600, utc_now())
    reports = []
    for seq in lease.item_ids:
        data = tree.good[seq].read_bytes()
        key = image_path(old_tree.photo_id(seq), "jpg")
        sha = hashlib.sha256(data).hexdigest()
        if seq == 20:
            sha = hashlib.sha256(b"other bytes").hexdigest()
        reports.append(dq.Report(seq, "stored", sha, len(data), key))
    dq.complete(conn, "dl-1", lease.id, reports, 5, utc_now())
    conn.close()
    before = snapshot(sql)

    first = ok_json(run_import(db_url, s3_bucket, auditor, str(tree.root), "--json"))

    assert (first["uploaded"], first["restored"], first["skipped"]) == (19, 19, 1), first
    assert first["reasons"] == {"stored with other bytes": 1}
    assert snapshot(sql) == before, "the catalog already said stored"
    admin = s3_bucket.admin_client()
    objects = bucket_objects(admin, s3_bucket.name)
    assert sorted(objects) == sorted(image_path(old_tree.photo_id(s), "jpg") for s in range(1, 20))
    again = ok_json(run_import(db_url, s3_bucket, auditor, str(tree.root), "--json"))
    assert (again["uploaded"], again["reasons"]["already stored"]) == (0, 19), again
    assert bucket_objects(admin, s3_bucket.name) == objects


def test_bad_input_is_one_clear_error_and_changes_nothing(
    db_url, sql, s3_bucket, auditor, tmp_path
):
    catalog(db_url, 5)
    tree = old_tree.OldTree(tmp_path / "tree")
    old_tree.write_good(tree, range(1, 6), "rsync")
    before = snapshot(sql)
    a_file = tree.good[1]
    for given, said in [
        (tmp_path / "nowhere", f"no such directory: {tmp_path / 'nowhere'}"),
        (a_file, f"not a directory: {a_file}"),
    ]:
        result = run_import(db_url, s3_bucket, auditor, str(given))
        assert result.returncode == 1, result
        assert result.stderr.strip().splitlines() == [f"harvester: {said}"]
    wrong = s3.S3Key(auditor.access_key, "not-the-secret")
    result = run_import(db_url, s3_bucket, wrong, str(tree.root))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "SignatureDoesNotMatch" in result.stderr or "AccessDenied" in result.stderr
    assert snapshot(sql) == before
    assert bucket_objects(s3_bucket.admin_client(), s3_bucket.name) == {}
