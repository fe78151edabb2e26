"""`downloader run` as a real process with `storage` an S3 bucket: the real queue service (on
MariaDB), the lab's image host and a real SeaweedFS S3 gateway. Every photo `stored`, each
object at its layout key with the bytes the queue recorded, the lease's manifest one object;
the gateway down mid-push costs retries, not photos."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator

import pytest

from lab.processes.seaweedfs_s3 import WritableBucket
from tests.conftest import wait_for
from tests.integration.test_downloader import Fleet, make_fleet, photo_ids
from tests.integration.test_s3_push import versions


class S3Fleet(Fleet):
    """A droplet whose storage is a SeaweedFS bucket, through its write-only key."""

    bucket: WritableBucket

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCMIRROR_")}
        env |= {
            "CCMIRROR_CONFIG": "/dev/null",
            "CCMIRROR_QUEUE_URL": self.queue.url,
            "CCMIRROR_QUEUE_TOKEN": self.queue.tokens["dl-1"],
            "CCMIRROR_WORKER": "dl-1",
            "CCMIRROR_SPOOL": str(self.spool),
            "CCMIRROR_BATCH_SIZE": "12",
            "CCMIRROR_MIN_FREE_MB": "1",
            "CCMIRROR_FETCH_TIMEOUT": "10",
            "CCMIRROR_FETCH_ALLOW_HOSTS": "127.0.0.1",
            "CCMIRROR_PUSH_RETRY_SECONDS": "5",
        }
        setting = self.bucket.storage_setting()
        env |= {f"CCMIRROR_STORAGE_{k.upper()}": v for k, v in setting.items()}
        return env | extra

    def objects(self, prefix: str) -> dict[str, bytes]:
        client = self.bucket.admin_client()
        keys = versions(self.bucket, prefix)
        return {
            key: client.get_object(Bucket=self.bucket.name, Key=key)["Body"].read() for key in keys
        }


def s3_fleet(db_url, sql, tmp_path, bucket: WritableBucket) -> Iterator[S3Fleet]:
    from lab.sims.image_host import server as image_host

    host = image_host.spawn("--slow-delay", "3")
    try:
        for plain in make_fleet(db_url, sql, tmp_path, None, host, 24):
            fleet = S3Fleet(plain.queue, plain.host, plain.storage, plain.spool, plain.sql)
            fleet.bucket = bucket
            yield fleet
    finally:
        host.stop()


@pytest.fixture
def fleet(db_url, sql, tmp_path, s3_bucket) -> Iterator[S3Fleet]:
    """Storage: a bucket of the test's own on the session cluster."""
    yield from s3_fleet(db_url, sql, tmp_path, s3_bucket)


@pytest.fixture
def fleet_own_gateway(db_url, sql, tmp_path, own_s3_bucket) -> Iterator[S3Fleet]:
    """Storage: a cluster of the test's own, whose gateway the test may kill."""
    yield from s3_fleet(db_url, sql, tmp_path, own_s3_bucket)


def assert_stored_in_the_bucket(fleet: S3Fleet, photos: int) -> None:
    sql = fleet.sql
    assert len(photo_ids(sql, "stored")) == photos
    recorded = dict(sql("SELECT path, LOWER(HEX(sha256)) FROM stored_images"))
    images = fleet.objects("images/")
    mine = {key: body for key, body in images.items() if key in recorded}
    assert set(mine) == set(recorded)
    for key, body in mine.items():
        assert hashlib.sha256(body).hexdigest() == recorded[key]
    # The MD5 too: an S3 listing's ETags are what the storage audit compares it with.
    md5s = dict(sql("SELECT path, LOWER(HEX(md5)) FROM stored_images"))
    assert md5s == {key: hashlib.md5(body).hexdigest() for key, body in mine.items()}
    assert not (fleet.spool / "lease").exists()


def test_run_stores_every_photo_and_the_manifest_in_the_bucket(fleet):
    for _ in range(2):
        done = fleet.run("run", "--once")
        assert done.returncode == 0, done.stderr
    assert_stored_in_the_bucket(fleet, 24)
    # Each lease's manifest is one object, manifests/<day>/<lease>.jsonl: every stored photo
    # in one of them with the digest the queue recorded.
    recorded = dict(fleet.sql("SELECT path, LOWER(HEX(sha256)) FROM stored_images"))
    leases = [row[0] for row in fleet.sql("SELECT id FROM leases")]
    manifests = fleet.objects("manifests/")
    lines = []
    for lease in leases:
        (body,) = [v for k, v in manifests.items() if k.endswith(f"/{lease}.jsonl")]
        lines += [json.loads(line) for line in body.splitlines()]
    assert sorted(line["photo_id"] for line in lines) == sorted(photo_ids(fleet.sql))
    assert all(recorded[line["path"]] == line["sha256"] for line in lines)


def test_the_gateway_down_mid_push_costs_retries_not_photos(fleet_own_gateway):
    fleet = fleet_own_gateway
    fleet.bucket.cluster.kill_gateway()
    try:
        proc = fleet.start("--once")
        wait_for(lambda: fleet.phase() == "fetched", 60, "the lease fetched, pushing")
        wait_for(
            lambda: "storage" in json.loads(fleet.run("status", "--json").stdout)["errors"],
            60,
            "a storage error in the status",
        )
    finally:
        fleet.bucket.cluster.restart_gateway()
    assert proc.wait(120) == 0, proc.stderr.read()
    assert_stored_in_the_bucket(fleet, 12)
