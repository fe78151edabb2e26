"""The backup target's lag under a full-speed push, and restore-photos' rate, one run.

Two private SeaweedFS clusters (`lab/processes/seaweedfs.py`, one volume server each): main,
with the images bucket made as the lab's (object lock, default retention) and a writer
identity, and the backup cluster with a bucket made the same way; `weed filer.backup` between
them with the template Salt renders (lab/processes/seaweedfs_backup.py). N photos of 5-20 KB
(random bytes, written once) are pushed with the downloader's own push
(downloader/s3/push.py, its SHA-256 sent with each PUT) in batches of 500, each batch
recorded in `stored_images` as the queue records a report; meanwhile `backup_lag` (the code
of `harvester backup-lag`) is sampled every `--every` seconds, and after the push until the
lag is 0. Then `backup-check` (harvester/backup/completeness.py): a dry run right away (how
many photos the exact walk still finds missing when the front search says 0, and its walk's
keys/s beside main's own S3 listing of the same keys, the ideal), then a hole of `--hole`
photos pushed while filer.backup is stopped and skipped by its restart (`-timeAgo`), filled
by the check (photos/s beside a plain GET from main and PUT to the backup of the same
objects, 16 threads, as the check copies). Then the only version of `--lost` photos is
removed with the admin key and `restore_photos` puts them back from the backup: photos
checked per second.

    .venv/bin/python bench/backup_lag.py [--photos 20000] [--hole 2000] [--lost 2000] [--every 2]
        (MariaDB: CCMIRROR_TEST_DB_PORT / CCMIRROR_TEST_MARIADB_DIR as the tests use them)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ccmirror_common.layout import image_path
from downloader.s3.push import push_objects
from downloader.s3.target import S3Target
from harvester.backup import target as backup_target
from harvester.backup.completeness import check_backup
from harvester.backup.lag import backup_lag
from harvester.backup.restore import restore_photos
from harvester.config import BackupTargetSettings, StorageSettings
from harvester.db import connect
from harvester.migrate import migrate
from lab.processes import seaweedfs_s3 as s3
from lab.processes.mariadb import LocalMariaDB
from lab.processes.seaweedfs import ClusterSettings, start_cluster
from lab.processes.seaweedfs_backup import start_backup

BATCH = 500
INSERT = (
    "INSERT INTO stored_images (image_id, sha256, bytes, path, md5, worker, lease_id, stored_at)"
    " VALUES (%s, UNHEX(%s), %s, %s, UNHEX(%s), 'bench', 0, %s)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20000)
    parser.add_argument("--lost", type=int, default=2000)
    parser.add_argument("--hole", type=int, default=2000)
    parser.add_argument("--every", type=float, default=2.0)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="backup-lag-"))
    db = LocalMariaDB(
        Path(os.environ.get("CCMIRROR_TEST_MARIADB_DIR", "/tmp/ccmirror-test-mariadb")),
        port=int(os.environ.get("CCMIRROR_TEST_DB_PORT", "13306")),
    )
    started_db = db.ensure_running()
    settings = ClusterSettings(volume_servers=1, replication="000", stop_timeout=10)
    main_cluster = start_cluster(base / "main", settings)
    backup = start_cluster(base / "backup", settings)
    process = None
    try:
        url = db.fresh_database(f"bench_backup_{os.getpid()}")
        conn = connect(url)
        migrate(conn)
        bucket = s3.writable_bucket(main_cluster)
        auditor, sink, reader = s3.new_key(), s3.new_key(), s3.new_key()
        s3.add_identity(main_cluster, "auditor", auditor, actions=s3.AUDITOR_ACTIONS)
        s3.create_images_bucket(s3.admin_client(backup), "backup")
        s3.add_identity(backup, "sink", sink, "backup")
        s3.add_identity(backup, "reader", reader, "backup", ("Read", "List"))
        for cluster, key, name in ((main_cluster, auditor, "images"), (backup, sink, "backup"),
                                   (backup, reader, "backup")):  # fmt: skip
            s3.wait_known(cluster, key, name)
        storage = StorageSettings(**s3.storage_setting(main_cluster, auditor))
        target = BackupTargetSettings(**s3.storage_setting(backup, reader, "backup"),
                                      filer=backup.filer_url)  # fmt: skip
        process = start_backup(
            base / "fb", main_cluster, s3.storage_setting(backup, sink, "backup")
        )
        photos = write_photos(base / "spool", args.photos)
        push_target = S3Target.from_mapping(bucket.storage_setting())
        done = threading.Event()
        pusher = threading.Thread(
            target=push_all, args=(url, base / "spool", photos, push_target, done)
        )
        t0 = time.monotonic()
        pusher.start()
        samples = sample_until_caught_up(conn, storage, target, done, args.every, t0)
        pusher.join()
        report_lag(samples, args.photos)
        writer = replace(target, sink_access_key=sink.access_key, sink_secret_key=sink.secret_key)
        exact_after_front(conn, storage, writer)
        process.stop(10)  # the hole: pushed while it is down, skipped by its restart
        hole = write_photos(base / "hole", args.hole, first=args.photos + 1)
        push_all(url, base / "hole", hole, push_target, threading.Event())
        time.sleep(3)
        process = start_backup(base / "fb2", main_cluster, s3.storage_setting(backup, sink,
                               "backup"), extra_args=("-timeAgo=2s",))  # fmt: skip
        fill_hole(conn, storage, writer, list(hole))
        lose_and_restore(conn, main_cluster, storage, target, photos, args.lost)
    finally:
        if process is not None:
            process.stop(10)
        backup.stop()
        main_cluster.stop()
        if started_db:
            db.stop()


def write_photos(spool: Path, count: int, first: int = 1) -> dict[str, tuple[int, str, str, int]]:
    """key -> (image id, sha256, md5, bytes) of `count` random files of 5-20 KB."""
    spool.mkdir(parents=True)
    rng, photos = random.Random(20 + first), {}
    for image_id in range(first, first + count):
        data = rng.randbytes(rng.randint(5 << 10, 20 << 10))
        key = image_path(9_000_000_000 + image_id, "jpg")
        (spool / f"{image_id}.jpg").write_bytes(data)
        photos[key] = (image_id, hashlib.sha256(data).hexdigest(),
                       hashlib.md5(data).hexdigest(), len(data))  # noqa: S324  # fmt: skip
    return photos


def push_all(url: str, spool: Path, photos: dict, target: S3Target, done) -> None:
    conn, keys = connect(url), list(photos)
    try:
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            mapping = {key: f"{photos[key][0]}.jpg" for key in batch}
            digests = {key: photos[key][1] for key in batch}
            push_objects(spool, mapping, target, digests=digests, concurrency=32)
            now = datetime.now(UTC).replace(tzinfo=None)
            rows = [(photos[k][0], photos[k][1], photos[k][3], k, photos[k][2], now) for k in batch]
            with conn.cursor() as cur:
                cur.executemany(INSERT, rows)
            conn.commit()
    finally:
        conn.close()
        done.set()


def sample_until_caught_up(conn, storage, target, done, every: float, t0: float) -> list[tuple]:
    samples: list[tuple] = []
    while True:
        lag = backup_lag(conn, storage, target)
        conn.commit()
        samples.append((time.monotonic() - t0, done.is_set(), lag))
        print(f"t={samples[-1][0]:6.1f}s push {'done' if done.is_set() else 'on  '}"
              f" behind={lag.behind:6d} seconds={lag.seconds:6.1f}"
              f" probes={lag.probes} in {lag.elapsed:.2f}s", flush=True)  # fmt: skip
        if done.is_set() and lag.behind == 0:
            return samples
        time.sleep(every)


def report_lag(samples: list[tuple], photos: int) -> None:
    pushed_at = next(t for t, done, _ in samples if done)
    caught = samples[-1][0]
    print(f"\n{photos:,} photos pushed in ~{pushed_at:.1f} s ({photos / pushed_at:,.0f}/s);"
          f" max behind {max(s[2].behind for s in samples):,} photos,"
          f" max {max(s[2].seconds for s in samples):.1f} s;"
          f" caught up {caught - pushed_at:.1f} s after the push ended (±sample period);"
          f" a backup-lag call took {max(s[2].elapsed for s in samples):.2f} s at most,"
          f" {max(s[2].probes for s in samples)} probes")  # fmt: skip


def exact_after_front(conn, storage, target) -> None:
    """The exact check as soon as the front search said 0, and its walk beside main's own
    S3 listing of as many keys."""
    result = check_backup(conn, storage, target, dry_run=True, margin=timedelta(0))
    walk_rate = result.backup_keys / result.seconds
    main = s3_client(storage)
    started, listed = time.monotonic(), 0
    for page in main.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket,
                                                              Prefix="images/"):  # fmt: skip
        listed += len(page.get("Contents") or ())
    list_rate = listed / (time.monotonic() - started)
    print(f"backup-check right after the front said 0: {result.missing:,} photos missing, the"
          f" oldest {result.behind_seconds:.1f} s old; its walk {result.backup_keys:,} keys"
          f" in {result.seconds:.1f} s ({walk_rate:,.0f} keys/s); main's S3 listing of"
          f" {listed:,} keys {list_rate:,.0f} keys/s: walk/listing"
          f" {walk_rate / list_rate:.2f}")  # fmt: skip


def fill_hole(conn, storage, target, keys: list[str]) -> None:
    """The check's copies of the hole, beside a plain GET and PUT of the same objects."""
    dry = check_backup(conn, storage, target, dry_run=True, margin=timedelta(0))
    result = check_backup(conn, storage, target, margin=timedelta(0))
    fill_rate = result.filled / max(result.seconds - dry.seconds, 1e-3)  # less its walk
    main, writer = s3_client(storage), backup_target.writer_client(target)

    def copy(key: str) -> None:
        data = main.get_object(Bucket=storage.bucket, Key=key)["Body"].read()
        writer.put_object(Bucket=target.bucket, Key=f"peer/{key}", Body=data)

    started = time.monotonic()
    with ThreadPoolExecutor(16) as workers:
        list(workers.map(copy, keys))
    peer_rate = len(keys) / (time.monotonic() - started)
    print(f"backup-check filled {result.filled:,} of {result.missing:,} missing photos in"
          f" {result.seconds:.1f} s, {dry.seconds:.1f} s of it the walk and the lookups (its"
          f" dry run's), so {fill_rate:,.0f} copies/s; a plain GET+PUT of"
          f" the same {len(keys):,} {peer_rate:,.0f}/s: check/plain"
          f" {fill_rate / peer_rate:.2f}")  # fmt: skip


def s3_client(storage: StorageSettings):
    return backup_target.main_client(storage)


def lose_and_restore(conn, cluster, storage, target, photos: dict, lost: int) -> None:
    admin = s3.admin_client(cluster)
    for key in list(photos)[:lost]:
        version = admin.head_object(Bucket=storage.bucket, Key=key)["VersionId"]
        admin.delete_object(Bucket=storage.bucket, Key=key, VersionId=version,
                            BypassGovernanceRetention=True)  # fmt: skip
    started = time.monotonic()
    result = restore_photos(conn, storage, target)
    seconds = time.monotonic() - started
    print(f"restore-photos: {result.checked:,} checked, {result.restored:,} restored,"
          f" {result.fine:,} fine, {result.not_on_backup:,} not on the backup, then"
          f" {result.unstored.walked:,} backup keys walked for photos not stored, in"
          f" {seconds:.1f} s ({result.checked / seconds:,.0f} checked/s, both passes)")  # fmt: skip


if __name__ == "__main__":
    main()
