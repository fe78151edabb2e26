"""`harvester audit-storage --s3` run as a process against a real SeaweedFS S3 gateway and a
real MariaDB. The bucket is versioned with object lock (made by an admin identity); photos are
put with a downloader's write-only identity and reported stored through the real queue code;
the audit uses its own identity (Read, List and Write on the bucket). A photo deleted or
overwritten with the downloader's key is restored, one whose object is missing or has other
bytes goes back to the queue, an unknown key is counted and left alone, the same bytes pushed
twice are fine, and a second audit finds nothing; a bad endpoint or key changes nothing.

Each test has a bucket of its own on the session's SeaweedFS cluster (tests/conftest.py
`s3_bucket`), made as the images bucket is: object lock with a GOVERNANCE default retention, so
only the admin key bypassing it removes a version."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from ccmirror_common.layout import image_path
from harvester.db import connect
from harvester.queue import leases as dq
from lab.mission.catalog_images import fill_images
from lab.processes import seaweedfs_s3 as s3
from tests.conftest import harvester_env, run_harvester

PHOTOS = 10


@dataclass
class Store:
    """A bucket of the test's own and its keys: the cluster's admin, a downloader's (Write on
    the bucket: put, never get or list) and the audit's own (Read, List and Write on it)."""

    bucket: s3.WritableBucket
    keys: dict[str, s3.S3Key]

    @property
    def name(self) -> str:
        return self.bucket.name

    @property
    def endpoint(self) -> str:
        return self.bucket.cluster.s3_url

    def client(self, who: str) -> BaseClient:
        return s3.client(self.endpoint, self.keys[who], retries=1)


@pytest.fixture
def store(s3_bucket: s3.WritableBucket) -> Store:
    cluster, auditor = s3_bucket.cluster, s3.new_key()
    s3.add_identity(cluster, f"auditor-{s3_bucket.name}", auditor, s3_bucket.name,
                    s3.AUDITOR_ACTIONS)  # fmt: skip
    s3.wait_known(cluster, auditor, s3_bucket.name)
    keys = {"admin": s3.admin_key(cluster), "writer": s3_bucket.writer, "auditor": auditor}
    return Store(s3_bucket, keys)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def content(photo_id: int, generation: int = 0) -> bytes:
    return f"jpeg of {photo_id} #{generation} ".encode() * 50


class Mirror:
    """A catalog and the bucket its stored photos are in."""

    def __init__(self, db_url: str, sql, store: Store) -> None:
        self.db_url, self.sql, self.s3 = db_url, sql, store
        self.bucket, self.keys = store.name, store.keys
        self.writer = store.client("writer")
        self.admin = store.client("admin")

    def store(self, with_md5: bool = True) -> dict[int, str]:
        """Lease every pending photo, put its object with the writer's key, report it stored.
        Returns catalog id -> key."""
        conn = connect(self.db_url)
        try:
            lease = dq.lease(conn, "dl-1", 1000, 600, utc_now())
            reports, keys = [], {}
            for item in json.loads(lease.items_json):
                key = image_path(item["photo_id"], "jpg")
                data = content(item["photo_id"])
                self.writer.put_object(Bucket=self.bucket, Key=key, Body=data)
                md5 = hashlib.md5(data).hexdigest() if with_md5 else None
                sha = hashlib.sha256(data).hexdigest()
                reports.append(dq.Report(item["id"], "stored", sha, len(data), key, md5=md5))
                keys[item["id"]] = key
            dq.complete(conn, "dl-1", lease.id, reports, 5, utc_now())
        finally:
            conn.close()
        return keys

    def latest(self, key: str) -> bytes | None:
        try:
            return self.admin.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError:
            return None

    def audit(self, *extra: str, key: s3.S3Key | None = None, endpoint: str = ""):
        key = key or self.keys["auditor"]
        env = harvester_env(
            self.db_url,
            CCMIRROR_STORAGE_ENDPOINT=endpoint or self.s3.endpoint,
            CCMIRROR_STORAGE_BUCKET=self.bucket,
            CCMIRROR_STORAGE_ACCESS_KEY=key.access_key,
            CCMIRROR_STORAGE_SECRET_KEY=key.secret_key,
        )
        # One clock here: no skew to allow for.
        args = ("audit-storage", "--s3", "--json", "--clock-margin", "0", *extra)
        return run_harvester(*args, env=env, timeout=120)

    def snapshot(self) -> tuple:
        return (
            self.sql("SELECT id, state, lease_id, attempts, last_error FROM images ORDER BY id"),
            self.sql("SELECT * FROM stored_images ORDER BY image_id"),
            self.sql("SELECT COUNT(*) FROM storage_audits"),
        )

    def versions(self) -> list[tuple]:
        listing = self.admin.list_object_versions(Bucket=self.bucket)
        rows = (listing.get("Versions") or []) + (listing.get("DeleteMarkers") or [])
        return sorted((v["Key"], v["VersionId"], v.get("ETag")) for v in rows)


@pytest.fixture
def mirror(db_url, sql, store) -> Mirror:
    conn = connect(db_url)
    fill_images(conn, PHOTOS)
    conn.close()
    return Mirror(db_url, sql, store)


def ok_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("with_md5", [True, False], ids=["md5", "size-only"])
def test_the_audit_restores_overwritten_requeues_bad_and_counts_orphans(mirror, sql, with_md5):
    keys = mirror.store(with_md5=with_md5)
    ids = sorted(keys)
    missing, corrupt, overwritten, deleted, twice = ids[1:6]
    photo = {i: int(keys[i].rsplit("/", 1)[1].split(".")[0]) for i in ids}
    admin, writer = mirror.admin, mirror.writer
    # Gone from the store (only the admin can do this, bypassing the bucket's GOVERNANCE
    # retention): requeued.
    remove_only_version(mirror, keys[missing], missing)
    # Other bytes of the same size at the key, and no good version left: requeued.
    remove_only_version(mirror, keys[corrupt], corrupt)
    # Without the catalog's MD5 only a size tells other bytes from the photo's.
    wrong = bytes(len(content(photo[corrupt]))) if with_md5 else b"short"
    admin.put_object(Bucket=mirror.bucket, Key=keys[corrupt], Body=wrong)
    # What a stolen downloader key can do: overwrite (same size, other bytes) and delete.
    writer.put_object(
        Bucket=mirror.bucket, Key=keys[overwritten], Body=content(photo[overwritten], 1)
    )
    writer.delete_object(Bucket=mirror.bucket, Key=keys[deleted])
    # The same bytes pushed again (a resumed lease): two versions, one ETag, nothing wrong.
    writer.put_object(Bucket=mirror.bucket, Key=keys[twice], Body=content(photo[twice]))
    orphan = image_path(7_000_000_001, "jpg")
    writer.put_object(Bucket=mirror.bucket, Key=orphan, Body=b"an object nobody reported")
    writer.put_object(Bucket=mirror.bucket, Key="manifests/2026/12/05/1.jsonl", Body=b"{}\n")

    first = ok_json(mirror.audit())

    assert (first["missing"], first["corrupt"], first["restored"]) == (1, 1, 2), first
    assert (first["ok"], first["orphans"], first["requeued"]) == (PHOTOS - 4, 1, 2), first
    assert first["samples"]["orphans"] == [orphan]
    assert sorted(first["samples"]["restored"]) == sorted([keys[overwritten], keys[deleted]])
    assert first["samples"]["missing"] == [keys[missing]]
    assert first["samples"]["corrupt"] == [keys[corrupt]]
    for restored in (overwritten, deleted):
        assert mirror.latest(keys[restored]) == content(photo[restored])
    requeued = sql(
        "SELECT id, state, lease_id, attempts, last_error FROM images WHERE id IN (%s, %s)"
        " ORDER BY id",
        missing,
        corrupt,
    )
    assert requeued == [
        (missing, "pending", 0, 0, "storage audit: file missing"),
        (corrupt, "pending", 0, 0, "storage audit: file corrupt"),
    ]
    assert sql("SELECT COUNT(*) FROM stored_images") == [(PHOTOS - 2,)]
    assert mirror.latest(orphan) == b"an object nobody reported", "an orphan is never deleted"
    assert sql("SELECT restored, requeued FROM storage_audits") == [(2, 2)]

    versions = mirror.versions()
    second = ok_json(mirror.audit())
    assert (second["missing"], second["corrupt"], second["restored"]) == (0, 0, 0), second
    assert second["ok"] == PHOTOS - 2
    # The corrupt object is now a key no stored photo names, until its photo is pushed again.
    assert sorted(second["samples"]["orphans"]) == sorted([orphan, keys[corrupt]])
    assert mirror.versions() == versions, "a clean audit adds no version"


def _only_version(mirror: Mirror, image_id: int) -> str:
    key = mirror.sql("SELECT path FROM stored_images WHERE image_id = %s", image_id)[0][0]
    listing = mirror.admin.list_object_versions(Bucket=mirror.bucket, Prefix=key)
    (version,) = listing["Versions"]
    return version["VersionId"]


def remove_only_version(mirror: Mirror, key: str, image_id: int) -> None:
    version = _only_version(mirror, image_id)
    mirror.admin.delete_object(
        Bucket=mirror.bucket, Key=key, VersionId=version, BypassGovernanceRetention=True
    )


def test_a_dry_run_counts_and_changes_nothing(mirror):
    keys = mirror.store()
    victim = sorted(keys)[0]
    mirror.writer.delete_object(Bucket=mirror.bucket, Key=keys[victim])
    before, versions = mirror.snapshot(), mirror.versions()

    dry = ok_json(mirror.audit("--dry-run"))

    assert dry["restored"] == 1 and dry["dry_run"] is True, dry
    assert "1 overwritten would be restored" in dry["summary"]
    assert (mirror.snapshot(), mirror.versions()) == (before, versions)


@pytest.mark.parametrize(
    "who, endpoint, message",
    [
        ("auditor", "http://127.0.0.1:9", "cannot list s3://{bucket} at http://127.0.0.1:9"),
        ("writer", "", "AccessDenied"),  # a downloader's key cannot list
    ],
    ids=["unreachable", "write-only-key"],
)
def test_a_bucket_it_cannot_list_is_one_clear_error_and_nothing_written(
    mirror, who, endpoint, message
):
    keys = mirror.store()
    mirror.writer.delete_object(Bucket=mirror.bucket, Key=keys[sorted(keys)[0]])
    before, versions = mirror.snapshot(), mirror.versions()

    failed = mirror.audit(key=mirror.keys[who], endpoint=endpoint)

    assert failed.returncode != 0 and failed.stdout == ""
    message = message.format(bucket=mirror.bucket)
    assert message in failed.stderr and "Traceback" not in failed.stderr, failed.stderr
    assert mirror.keys[who].secret_key not in failed.stderr, "the secret key is never printed"
    assert (mirror.snapshot(), mirror.versions()) == (before, versions)


def test_a_wrong_secret_is_one_clear_error(mirror):
    before = mirror.snapshot()
    wrong = replace(mirror.keys["auditor"], secret_key=f"not-the-secret-{random.randrange(10**6)}")
    failed = mirror.audit(key=wrong)
    assert failed.returncode != 0 and f"cannot list s3://{mirror.bucket}" in failed.stderr, (
        failed.stderr
    )
    assert "not-the-secret" not in failed.stderr
    assert mirror.snapshot() == before
