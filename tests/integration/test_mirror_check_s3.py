"""The mirror check reading an S3 bucket on a real SeaweedFS, against a real catalog: the
mirror of test_mirror_check.py pushed into a bucket of the test's own (object lock, GOVERNANCE
retention, as the images bucket is) by the downloader's own S3 push with its write-only key, and
read by the check with the admin key, in pages of a few keys. A right bucket passes; each way a
bucket goes wrong (a delete marker, other bytes, a second object, an unknown object, an
overwrite not restored ...) is named by its problem kind, and by that one only; an overwrite the
audit restored is right again. And `s3_put_allowed`, the e2e test's probe of a key.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, astuple, dataclass
from pathlib import Path

import pytest
from botocore.client import BaseClient

from ccmirror_common.layout import image_path
from downloader.s3.push import push_objects
from downloader.s3.target import S3Target
from harvester.audit.s3_listing import restore_version
from harvester.config import StorageSettings
from harvester.db import connect
from lab.fleet.core import Droplet, LabConfig, LabError, LabState
from lab.fleet.pids import pid_namespace
from lab.fleet.salt_master import private_pillar
from lab.mission.bucket_scan import Bucket, BucketUnreadable
from lab.mission.mirror_check import check_mirror, lab_storage
from lab.processes import seaweedfs_s3 as s3
from lab.processes.seaweedfs_s3 import WritableBucket, s3_put_allowed
from tests.integration.test_mirror_check import FIRST_ID, PHOTOS, Mirror, jpeg, make_mirror

PAGE_KEYS = 7  # the check's ListObjectVersions pages: the mirror's 28 keys span several


@dataclass
class BucketMirror:
    files: Mirror  # the catalog, the ground truth and the tree that was pushed
    bucket: WritableBucket

    @property
    def name(self) -> str:
        return self.bucket.name

    @property
    def admin(self) -> BaseClient:
        return self.bucket.admin_client()

    @property
    def writer(self) -> BaseClient:
        return s3.client(self.bucket.cluster.s3_url, self.bucket.writer, retries=1)

    def reader(self) -> Bucket:
        return Bucket(self.admin, self.name, f"s3://{self.name}", page_keys=PAGE_KEYS)

    def check(self):
        with connect(self.files.db_url, autocommit=True) as conn:
            return check_mirror(conn, self.reader(), self.files.truth)

    def put(self, key: str, data: bytes) -> None:
        self.writer.put_object(Bucket=self.name, Key=key, Body=data)

    def key(self, photo_id: int, ext: str = "jpg") -> str:
        return image_path(photo_id, ext)


@pytest.fixture
def bucket_mirror(db_url: str, tmp_path: Path, s3_bucket: WritableBucket) -> BucketMirror:
    """The correct mirror, pushed into the bucket; the tree is gone, so nothing reads it."""
    mirror = make_mirror(db_url, tmp_path)
    push_objects(mirror.root, None, S3Target.from_mapping(s3_bucket.storage_setting()))
    shutil.rmtree(mirror.root)
    return BucketMirror(mirror, s3_bucket)


def test_a_correct_bucket_passes_with_its_counts(bucket_mirror: BucketMirror) -> None:
    """Paged, with the probe object `check-storage` writes (no photo), a photo pushed twice
    with the same bytes, and the counts of objects, bytes and versions in the summary."""
    bucket, writer = bucket_mirror.bucket, bucket_mirror.bucket.writer
    cluster = bucket.cluster
    assert s3_put_allowed(cluster.s3_url, writer.access_key, writer.secret_key, bucket.name)
    twice = FIRST_ID + 9
    bucket_mirror.put(bucket_mirror.key(twice), jpeg(twice))  # a resumed lease's second push
    report = bucket_mirror.check()
    assert report.ok, report.problem_text()
    assert report.states == {"stored": PHOTOS - 4, "gone": 2, "failed": 2}
    assert (report.files, report.manifest_lines) == (PHOTOS - 4, PHOTOS - 4)
    photos = PHOTOS - 4
    assert (report.objects, report.versions) == (photos + 2, photos + 3)  # + manifest, probe
    listed = bucket_mirror.admin.list_objects_v2(Bucket=bucket.name)["Contents"]
    assert report.object_bytes == sum(entry["Size"] for entry in listed)
    summary = "\n".join(report.summary_lines())
    assert f"{photos + 2} objects" in summary and f"{photos + 3} versions" in summary, summary
    assert "mirror check: OK" in summary


# Each wrongness of a bucket, done with the downloader's key (a stolen key's worst) or, for
# what that key cannot do, the admin's; and the one problem kind it must raise.
def deleted_object(m: BucketMirror) -> None:
    m.writer.delete_object(Bucket=m.name, Key=m.key(FIRST_ID + 10))  # a delete marker


def wrong_bytes(m: BucketMirror) -> None:
    """The only version has other bytes (storage corrupted it): no overwrite, bad bytes."""
    key = m.key(FIRST_ID + 12)
    only = m.admin.list_object_versions(Bucket=m.name, Prefix=key)["Versions"][0]
    m.admin.delete_object(
        Bucket=m.name, Key=key, VersionId=only["VersionId"], BypassGovernanceRetention=True
    )
    m.put(key, jpeg(FIRST_ID + 13))


def second_object(m: BucketMirror) -> None:
    m.put(m.key(FIRST_ID + 11, "png"), jpeg(FIRST_ID + 11))


def unknown_object(m: BucketMirror) -> None:
    m.put("backup/notes.txt", b"hello")


def gone_photos_object(m: BucketMirror) -> None:
    m.put(m.key(FIRST_ID + 3), jpeg(FIRST_ID + 3))


def overwrite(m: BucketMirror) -> None:
    m.put(m.key(FIRST_ID + 14), jpeg(FIRST_ID + 15))


def deleted_manifest(m: BucketMirror) -> None:
    manifest = m.admin.list_objects_v2(Bucket=m.name, Prefix="manifests/")["Contents"][0]
    m.writer.delete_object(Bucket=m.name, Key=manifest["Key"])


BUCKET_WRONGS = {
    deleted_object: {"missing_file"},
    wrong_bytes: {"bad_checksum"},
    second_object: {"second_copy"},
    unknown_object: {"unexpected_file"},
    gone_photos_object: {"unexpected_file"},
    overwrite: {"overwritten"},
    deleted_manifest: {"missing_manifest_line"},
}


@pytest.mark.parametrize("wrong", BUCKET_WRONGS, ids=[wrong.__name__ for wrong in BUCKET_WRONGS])
def test_each_wrongness_of_a_bucket_is_reported_by_its_name(
    bucket_mirror: BucketMirror, wrong
) -> None:
    wrong(bucket_mirror)
    report = bucket_mirror.check()
    found = {kind for kind, findings in report.problems.items() if findings}
    assert found == BUCKET_WRONGS[wrong], report.problem_text()
    if wrong is deleted_manifest:
        assert len(report.problems["missing_manifest_line"]) == PHOTOS - 4
    else:
        assert all(len(report.problems[kind]) == 1 for kind in found), report.problem_text()
    assert "mirror check: FAILED" in report.summary_lines()


def test_an_overwrite_or_delete_the_audit_restored_is_right_again(
    bucket_mirror: BucketMirror,
) -> None:
    """The audit's restore (its own code: the first version copied over the key) makes the
    current version the first's bytes again: more versions, nothing wrong."""
    overwritten, deleted = FIRST_ID + 14, FIRST_ID + 10
    overwrite(bucket_mirror)
    deleted_object(bucket_mirror)
    assert not bucket_mirror.check().ok
    admin = s3.admin_key(bucket_mirror.bucket.cluster)
    storage = StorageSettings(
        bucket_mirror.bucket.cluster.s3_url, bucket_mirror.name, s3.REGION, *astuple(admin)
    )
    for pid in (overwritten, deleted):
        key = bucket_mirror.key(pid)
        versions = bucket_mirror.admin.list_object_versions(Bucket=bucket_mirror.name, Prefix=key)
        first = versions["Versions"][-1]["VersionId"]
        restore_version(bucket_mirror.admin, storage, key, first)
    report = bucket_mirror.check()
    assert report.ok, report.problem_text()
    assert report.delete_markers == 1
    assert report.versions == report.objects + 3  # the overwrite and the two restores


def test_a_bucket_the_key_cannot_list_is_one_clear_error(bucket_mirror: BucketMirror) -> None:
    """The downloader's key may not list: the check stops with S3's reason, naming no key."""
    reader = Bucket(bucket_mirror.writer, bucket_mirror.name, "the bucket")
    conn = connect(bucket_mirror.files.db_url, autocommit=True)
    try:
        with pytest.raises(BucketUnreadable, match="^cannot list the bucket: AccessDenied") as e:
            check_mirror(conn, reader, bucket_mirror.files.truth)
    finally:
        conn.close()
    assert bucket_mirror.bucket.writer.access_key not in str(e.value)


def test_put_allowed_tells_a_writing_key_from_a_refused_one(s3_bucket: WritableBucket) -> None:
    endpoint, writer = s3_bucket.cluster.s3_url, s3_bucket.writer
    assert s3_put_allowed(endpoint, writer.access_key, writer.secret_key, s3_bucket.name)
    stranger = s3.new_key()
    assert not s3_put_allowed(endpoint, stranger.access_key, stranger.secret_key, s3_bucket.name)
    wrong_secret = s3.new_key().secret_key
    assert not s3_put_allowed(endpoint, writer.access_key, wrong_secret, s3_bucket.name)
    listed = s3_bucket.admin_client().list_object_versions(Bucket=s3_bucket.name)
    assert [v["Key"] for v in listed.get("Versions", [])] == [s3.PUT_PROBE_KEY]


def test_the_lab_reads_its_bucket_with_its_admin_key_through_a_live_gateway(
    bucket_mirror: BucketMirror, tmp_path: Path
) -> None:
    """`lab_storage` on a lab state of the test's own: st-0 destroyed, st-1 (this process,
    alive) at the gateway's address; the admin key read from the private pillar's record."""
    cluster = bucket_mirror.bucket.cluster
    config = LabConfig(root=tmp_path / "lab")
    config.root.mkdir()
    me = os.getpid()
    host = cluster.s3.address.rsplit(":", 1)[0]
    st1 = Droplet("st-1", host, "ns-1", "v1", "/d1", pid=me, pidns=pid_namespace(me))
    destroyed = Droplet("st-0", "127.0.0.9", "ns-0", "v0", "/d0")
    state = LabState(config.bridge, str(config.network), {"st-0": destroyed})
    state.save(config.state_file)
    with pytest.raises(LabError, match="no live st-\\* droplet"):
        lab_storage(config, bucket_mirror.name, cluster.s3.port)
    state.droplets["st-1"] = st1
    state.save(config.state_file)
    with pytest.raises(LabError, match="S3 admin key: no private pillar root"):
        lab_storage(config, bucket_mirror.name, cluster.s3.port)
    record = {"keys": {"storage-admin": asdict(s3.admin_key(cluster))}}
    private_pillar(config).mkdir()
    (private_pillar(config) / "secrets.json").write_text(json.dumps(record))
    reader = lab_storage(config, bucket_mirror.name, cluster.s3.port)
    assert reader.label == f"s3://{bucket_mirror.name} at {cluster.s3_url}"
    with connect(bucket_mirror.files.db_url, autocommit=True) as conn:
        report = check_mirror(conn, reader, bucket_mirror.files.truth)
    assert report.ok and report.files == PHOTOS - 4, report.problem_text()
