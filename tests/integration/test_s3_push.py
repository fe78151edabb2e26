"""The S3 push (`downloader/s3/`) against a real SeaweedFS S3 gateway: every file at its key
with its bytes, a wrong digest refused with nothing stored, keys and buckets refused for
good, a gateway that is down retried until it is back, a resumed push that puts only the
rest, and `downloader check-storage` writing its probe object by the same code."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from downloader.config import Settings
from downloader.push import PushFailed
from downloader.s3.push import push_objects
from downloader.s3.target import S3Target
from downloader.spool import Spool
from downloader.stages import lease_pusher
from lab.processes.seaweedfs_s3 import WritableBucket
from tests.conftest import wait_for

VENV_BIN = Path(sys.executable).parent


def target_of(writable: WritableBucket, **change: str) -> S3Target:
    return S3Target.from_mapping(writable.storage_setting() | change)


def spool_tree(root: Path, count: int, prefix: int = 0) -> dict[str, bytes]:
    """`count` photos at their layout paths (5-20 KB each) and a manifest; path -> bytes."""
    files = {}
    for n in range(count):
        photo_id = prefix * 1_000_000 + 7000 + n
        body = hashlib.sha256(str(photo_id).encode()).digest() * (160 + 32 * (n % 16))
        low = photo_id & 0xFFFF
        files[f"images/{low & 0xFF:02x}/{low >> 8:02x}/{photo_id}.jpg"] = body
    files[f"manifests/2026/12/05/{prefix}{count}.jsonl"] = b'{"photo_id": 1}\n'
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
    return files


def read_back(bucket: WritableBucket, key: str) -> bytes:
    return bucket.admin_client().get_object(Bucket=bucket.name, Key=key)["Body"].read()


def versions(bucket: WritableBucket, prefix: str) -> dict[str, int]:
    """Key -> how many versions the bucket holds under `prefix` (the admin key lists)."""
    counts: dict[str, int] = {}
    pages = bucket.admin_client().get_paginator("list_object_versions")
    for page in pages.paginate(Bucket=bucket.name, Prefix=prefix):
        for version in page.get("Versions", []):
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


def exists(bucket: WritableBucket, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        bucket.admin_client().head_object(Bucket=bucket.name, Key=key)
        return True
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("404", "NoSuchKey")
        return False


def test_every_file_lands_at_its_key_with_its_bytes(s3_bucket, tmp_path):
    files = spool_tree(tmp_path, 40, prefix=1)
    digests = {p: hashlib.sha256(b).hexdigest() for p, b in files.items() if p.startswith("i")}
    put: list[str] = []
    result = push_objects(
        tmp_path, sorted(files), target_of(s3_bucket), digests=digests, on_put=put.extend
    )
    assert result.files_transferred == len(files) == len(put)
    assert result.bytes_transferred == sum(len(b) for b in files.values())
    for key, body in files.items():
        assert read_back(s3_bucket, key) == body
    # Pushed again: harmless, the versioned bucket keeps an identical second version.
    again = push_objects(tmp_path, sorted(files), target_of(s3_bucket), digests=digests)
    assert again.files_transferred == len(files)
    manifest = "manifests/2026/12/05/140.jsonl"
    assert (
        versions(s3_bucket, manifest) == {manifest: 2}
        and read_back(s3_bucket, manifest) == files[manifest]
    )


def test_a_wrong_digest_is_refused_and_nothing_is_stored(s3_bucket, tmp_path):
    files = spool_tree(tmp_path, 3, prefix=2)
    key = sorted(files)[0]
    wrong = hashlib.sha256(b"not these bytes").hexdigest()
    with pytest.raises(PushFailed) as refused:
        push_objects(tmp_path, [key], target_of(s3_bucket), digests={key: wrong})
    assert not refused.value.transient and "BadDigest" in str(refused.value)
    assert not exists(s3_bucket, key)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"secret_key": "not-the-secret"}, "SignatureDoesNotMatch"),
        ({"access_key": "nobody"}, "InvalidAccessKeyId"),
        ({"bucket": "no-such-bucket"}, "NoSuch"),  # refused before or as NoSuchBucket
    ],
)
def test_a_refused_key_or_bucket_is_fatal_at_once(s3_bucket, tmp_path, change, code):
    files = spool_tree(tmp_path, 2, prefix=3)
    retried = []
    with pytest.raises(PushFailed) as refused:
        push_objects(
            tmp_path, sorted(files), target_of(s3_bucket, **change), retry_seconds=5, backoff=0.1,
            on_retry=retried.append,
        )  # fmt: skip
    assert not refused.value.transient and refused.value.attempts == 1 and not retried
    assert code in str(refused.value) or "AccessDenied" in str(refused.value)
    assert "not-the-secret" not in str(refused.value)
    assert not any(exists(s3_bucket, key) for key in files)


def test_a_missing_local_file_is_fatal(s3_bucket, tmp_path):
    with pytest.raises(PushFailed) as failed:
        push_objects(tmp_path, ["images/00/00/1.jpg"], target_of(s3_bucket))
    assert not failed.value.transient and "nothing to push" in str(failed.value)


def test_a_gateway_that_is_down_is_retried_until_it_is_back(own_s3_bucket, tmp_path):
    files = spool_tree(tmp_path, 30, prefix=4)
    own_s3_bucket.cluster.kill_gateway()
    retries = []
    outcome: dict = {}

    def push() -> None:
        try:
            outcome["result"] = push_objects(
                tmp_path, sorted(files), target_of(own_s3_bucket), retry_seconds=120, backoff=0.2,
                max_backoff=1.0, on_retry=retries.append,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - told to the test below
            outcome["error"] = exc

    pusher = threading.Thread(target=push)
    try:
        pusher.start()
        wait_for(lambda: len(retries) >= 2, 30, "two failed attempts")
        assert "result" not in outcome and "error" not in outcome
        assert "refused" in retries[0].error.lower() or "connect" in retries[0].error.lower()
    finally:
        own_s3_bucket.cluster.restart_gateway()
        pusher.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].files_transferred == len(files)
    assert all(read_back(own_s3_bucket, key) == body for key, body in files.items())


def test_a_push_killed_midway_resumes_with_only_the_rest(s3_bucket, tmp_path):
    """A real kill -9 of a process pushing a lease by the daemon's own push (`lease_pusher`:
    the journal records keys as they land); the next push puts only what is not recorded."""
    spool = Spool(tmp_path / "spool")
    journal = spool.begin(5, "2030-01-01T00:00:00", [])
    files = spool_tree(journal.files, 300, prefix=5)
    images = sorted(p for p in files if p.startswith("images/"))
    journal.record(
        [
            {"id": n, "result": "stored", "path": p, "sha256": hashlib.sha256(files[p]).hexdigest()}
            for n, p in enumerate(images)
        ]
    )
    journal.manifest = next(p for p in files if p.startswith("manifests/"))
    journal.save()
    mapping = json.dumps(s3_bucket.storage_setting())
    script = f"""
import json, threading
from pathlib import Path
from downloader.config import Settings
from downloader.s3.target import S3Target
from downloader.spool import Spool
from downloader.stages import lease_pusher
settings = Settings(storage=S3Target.from_mapping(json.loads({mapping!r})))
settings.push.concurrency = 2
lease_pusher(settings)(Spool(Path({str(spool.root)!r})).current(), threading.Event(), print)
"""
    pusher = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        wait_for(lambda: len(journal.put_keys()) >= 20, 60, "twenty keys recorded as put")
    finally:
        os.killpg(pusher.pid, signal.SIGKILL)
        pusher.wait(10)
    recorded = journal.put_keys()
    assert 20 <= len(recorded) < len(files), "killed before the end"
    settings = Settings(storage=target_of(s3_bucket))
    result = lease_pusher(settings)(spool.current(), threading.Event(), print)
    assert result.files_transferred == len(files) - len(recorded)
    assert journal.put_keys() == set(files)
    held = versions(s3_bucket, "images/") | versions(s3_bucket, journal.manifest)
    mine = {key: held.get(key, 0) for key in files}
    assert all(count >= 1 for count in mine.values())
    # At most the PUTs in flight at the kill went twice (stored, not yet journaled).
    assert sum(mine.values()) <= len(files) + 2
    assert all(read_back(s3_bucket, key) == body for key, body in list(files.items())[:30])


def check_storage(bucket: WritableBucket, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CCMIRROR_")}
    setting = bucket.storage_setting()
    base |= {f"CCMIRROR_STORAGE_{k.upper()}": v for k, v in setting.items()}
    base |= {"CCMIRROR_CONFIG": "/dev/null", "CCMIRROR_WORKER": "dl-7"} | env
    return subprocess.run(
        [str(VENV_BIN / "downloader"), "check-storage", "--json"],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_storage_writes_its_probe_object(s3_bucket):
    done = check_storage(s3_bucket)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["path"] == "probes/dl-7/probe.txt"
    assert read_back(s3_bucket, "probes/dl-7/probe.txt").startswith(b"dl-7 ")
    refused = check_storage(s3_bucket, CCMIRROR_STORAGE_SECRET_KEY="wrong-secret-value")
    assert refused.returncode == 1
    said = json.loads(refused.stdout)
    assert not said["ok"] and "SignatureDoesNotMatch" in said["error"]
    assert "wrong-secret-value" not in refused.stdout + refused.stderr


def test_bad_s3_settings_are_one_clear_error_without_the_secret(s3_bucket):
    done = check_storage(s3_bucket, CCMIRROR_STORAGE_ENDPOINT="ftp://x/y")
    assert done.returncode == 1
    said = json.loads(done.stdout)
    assert "endpoint must be http(s)://host[:port]" in said["error"]
    assert s3_bucket.writer.secret_key not in done.stdout + done.stderr
