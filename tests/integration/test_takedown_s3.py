"""`harvester takedown apply` against a real SeaweedFS S3 gateway (a bucket versioned with
object lock and GOVERNANCE retention, tests/conftest.py `s3_bucket`) and a real MariaDB: the
objects of taken-down photos leave `images/` for `takedown/` with the audit's key (also bytes
that landed after the takedown, reported or not), the storage audit neither restores nor
adopts them, and only the admin key can purge the public versions."""

from __future__ import annotations

import hashlib
import json
import subprocess

from ccmirror_common.layout import image_path
from harvester.db import connect
from harvester.queue import leases as dq
from harvester.takedown.requests import add_takedown, checked_request
from lab.mission.catalog_images import fill_images
from lab.processes import seaweedfs_s3 as s3
from tests.conftest import harvester_env, run_harvester
from tests.integration import test_storage_audit_s3 as audit_s3
from tests.integration.test_storage_audit_s3 import Mirror, content, ok_json, utc_now

# The S3 audit's fixture: a bucket of the test's own and its admin, writer and audit keys.
bucket = audit_s3.store

PHOTOS = 6


def apply(mirror: Mirror, *extra: str, key: str = "auditor") -> subprocess.CompletedProcess:
    env = harvester_env(
        mirror.db_url,
        CCMIRROR_STORAGE_ENDPOINT=mirror.s3.endpoint,
        CCMIRROR_STORAGE_BUCKET=mirror.bucket,
        CCMIRROR_STORAGE_ACCESS_KEY=mirror.keys[key].access_key,
        CCMIRROR_STORAGE_SECRET_KEY=mirror.keys[key].secret_key,
    )
    return run_harvester("takedown", "apply", "--json", "--by", "ops", *extra, env=env, timeout=120)


def push_and_report(mirror: Mirror, take_down_while_leased: list[int]) -> dict[int, str]:
    """Lease every pending photo, take the given photo ids down while the lease holds them,
    push every one with the writer's key and report them all stored. Returns photo id -> key."""
    conn = connect(mirror.db_url)
    try:
        lease = dq.lease(conn, "dl-1", 100, 600, utc_now())
        for photo_id in take_down_while_leased:
            add_takedown(conn, checked_request(photo_id, None, "complaint", "ops"), utc_now())
        reports, keys = [], {}
        for item in json.loads(lease.items_json):
            photo_id = item["photo_id"]
            keys[photo_id] = key = image_path(photo_id, "jpg")
            data = content(photo_id)
            mirror.writer.put_object(Bucket=mirror.bucket, Key=key, Body=data)
            sha, md5 = hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()
            reports.append(dq.Report(item["id"], "stored", sha, len(data), key, md5=md5))
        outcome = dq.complete(conn, "dl-1", lease.id, reports, 5, utc_now())
        assert sorted(outcome.taken_down) == sorted(
            item["id"] for item in json.loads(lease.items_json)
            if item["photo_id"] in take_down_while_leased
        )  # fmt: skip
    finally:
        conn.close()
    return keys


def public_versions(mirror: Mirror, key: str) -> list:
    listing = mirror.admin.list_object_versions(Bucket=mirror.bucket, Prefix=key)
    rows = (listing.get("Versions") or []) + (listing.get("DeleteMarkers") or [])
    return [row for row in rows if row["Key"] == key]


def test_taken_down_objects_leave_the_public_prefix_and_the_audit_leaves_them_out(
    db_url, sql, bucket
):
    conn = connect(db_url)
    fill_images(conn, PHOTOS)
    conn.close()
    mirror = Mirror(db_url, sql, bucket)
    photos = [r[0] for r in sql("SELECT photo_id FROM images ORDER BY id")]
    leased_down, stored_down, unreported = photos[0], photos[1], photos[2]
    keys = push_and_report(mirror, [leased_down])  # its bytes land after the takedown
    add = run_harvester("takedown", "add", "--photo", str(stored_down), "--reason", "DMCA",
                        env=harvester_env(db_url))  # fmt: skip
    assert add.returncode == 0, add.stderr
    # A push whose report never came (its lease lapsed), then the takedown.
    conn = connect(db_url)
    fill_images(conn, 1)
    unreported = int(sql("SELECT MAX(photo_id) FROM images")[0][0])
    keys[unreported] = image_path(unreported, "png")
    mirror.writer.put_object(Bucket=mirror.bucket, Key=keys[unreported], Body=b"late bytes")
    add_takedown(conn, checked_request(unreported, None, "complaint", "ops"), utc_now())
    conn.close()
    down = [leased_down, stored_down, unreported]
    before = sql("SELECT photo_id, state FROM images ORDER BY id")
    # Before the storage step: the unreported push is never adopted as stored.
    assert ok_json(mirror.audit())["adopted"] == 0
    assert sql("SELECT photo_id, state FROM images ORDER BY id") == before

    applied = ok_json(apply(mirror))

    assert (applied["photos"], applied["moved"], applied["no_object"]) == (3, 3, 0), applied
    for photo_id in down:
        assert mirror.latest(keys[photo_id]) is None, "not served from images/ any more"
        copy = mirror.admin.get_object(Bucket=mirror.bucket, Key=f"takedown/{keys[photo_id]}")
        expected = b"late bytes" if photo_id == unreported else content(photo_id)
        assert copy["Body"].read() == expected
    assert sql(
        "SELECT COUNT(*) FROM stored_images s JOIN images i ON i.id = s.image_id"
        " WHERE i.state = 'taken_down'"
    ) == [(0,)]
    logged = sql("SELECT photo_id, step FROM takedown_log ORDER BY id")
    assert [s for p, s in logged if p == leased_down] == [
        "withdrawn", "stored_after_takedown", "object_moved"
    ]  # fmt: skip
    assert sql("SELECT DISTINCT actor FROM takedown_log WHERE step = 'object_moved'") == [("ops",)]

    # The audit finds the rest fine and neither restores, requeues nor adopts the others.
    audit = ok_json(mirror.audit())
    assert (audit["ok"], audit["restored"], audit["adopted"]) == (PHOTOS - 2, 0, 0), audit
    assert (audit["missing"], audit["corrupt"]) == (0, 0), audit
    assert sql("SELECT photo_id, state FROM images ORDER BY id") == before
    assert all(mirror.latest(keys[p]) is None for p in down)
    assert ok_json(apply(mirror))["photos"] == 0, "nothing due a second time"

    # Bytes that land again later: the next --recheck moves them.
    mirror.writer.put_object(Bucket=mirror.bucket, Key=keys[stored_down], Body=b"again")
    rechecked = ok_json(apply(mirror, "--recheck"))
    assert (rechecked["photos"], rechecked["moved"]) == (3, 1), rechecked
    assert mirror.latest(keys[stored_down]) is None


def test_only_the_admin_key_purges_the_public_versions(db_url, sql, bucket):
    conn = connect(db_url)
    fill_images(conn, 2)
    conn.close()
    mirror = Mirror(db_url, sql, bucket)
    photo = int(sql("SELECT MIN(photo_id) FROM images")[0][0])
    keys = push_and_report(mirror, [photo])
    assert ok_json(apply(mirror))["moved"] == 1
    assert len(public_versions(mirror, keys[photo])) == 2  # the photo and a delete marker

    refused = apply(mirror, "--purge")  # the audit's key: no bypass of the retention
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.startswith("harvester: cannot purge") and "admin key" in refused.stderr
    assert len(public_versions(mirror, keys[photo])) == 2

    purged = ok_json(apply(mirror, "--purge", key="admin"))
    assert (purged["photos"], purged["purged"]) == (1, 2), purged
    assert public_versions(mirror, keys[photo]) == []
    kept = mirror.admin.get_object(Bucket=mirror.bucket, Key=f"takedown/{keys[photo]}")
    assert kept["Body"].read() == content(photo)
    assert ok_json(apply(mirror, "--purge", key="admin"))["photos"] == 0
    steps = [r[0] for r in sql("SELECT step FROM takedown_log WHERE photo_id = %s ORDER BY id",
                               photo)]  # fmt: skip
    assert steps == ["withdrawn", "stored_after_takedown", "object_moved", "object_purged"]


def test_apply_without_a_bucket_is_one_error_and_changes_nothing(db_url, sql):
    conn = connect(db_url)
    fill_images(conn, 1)
    photo = int(sql("SELECT photo_id FROM images")[0][0])
    add_takedown(conn, checked_request(photo, None, "complaint", "ops"), utc_now())
    conn.close()
    before = sql("SELECT * FROM takedown_log")
    done = run_harvester("takedown", "apply", env=harvester_env(db_url))
    assert done.returncode == 1 and "takedown apply needs" in done.stderr, done.stderr
    assert sql("SELECT * FROM takedown_log") == before


assert s3.RETENTION_MODE == "GOVERNANCE"  # what makes --purge an admin-only step
