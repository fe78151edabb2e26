"""Catalog backups (`harvester backup-catalog`, `restore-catalog`) run as processes against a
real SeaweedFS cluster whose gateway reads the storage states' own s3.json
(salt/storage/seaweedfs/files/s3.json.jinja, rendered with the pillar's identities: admin,
audit, backup, a downloader) and real MariaDB servers: the catalog's, and a second, fresh one
(port $CCMIRROR_TEST_DB2_PORT, 13324) that plays the new db-1.

A backup, then writes to the catalog, then a restore on the fresh server: the restored catalog
is the backup's, row for row; the S3 audit then marks stored the photos pushed after the
backup (found in the bucket) and the queue goes on with the rest. The retention keeps N. The
backup key reaches its prefix only and a downloader's key cannot read a backup. No backup, a
bucket that does not answer, a catalog that is not empty: one clear error, nothing changed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from ccmirror_common.layout import image_path
from harvester.db import connect, parse_db_url
from harvester.migrate import migrate
from harvester.queue import leases as dq
from lab.mission.catalog_images import fill_images
from lab.processes import seaweedfs_s3 as s3
from lab.processes.mariadb import LocalMariaDB
from lab.processes.seaweedfs import Cluster
from tests.conftest import harvester_env, run_harvester, wait_for, worker_server
from tests.integration.test_object_store import rendered_identities

BUCKET = s3.IMAGES_BUCKET
PHOTOS = 40
TABLES = ("images", "leases", "stored_images", "queue_settings", "schema_migrations")


@pytest.fixture(scope="module")
def fresh_mariadb() -> Iterator[LocalMariaDB]:
    """The second server: the new db-1 a restore rebuilds (stopped after if started here)."""
    server = worker_server(
        "CCMIRROR_TEST_MARIADB2_DIR", "ccmirror-test-mariadb2", "CCMIRROR_TEST_DB2_PORT", 13324
    )
    started = server.ensure_running()
    yield server
    if started:
        server.stop()


@dataclass
class Site:
    """The cluster, the keys its gateway knows from the rendered s3.json, and clients."""

    cluster: Cluster
    keys: dict[str, s3.S3Key]

    def client(self, who: str) -> BaseClient:
        return s3.client(self.cluster.s3_url, self.keys[who], retries=1)

    def env(self, db_url: str, who: str = "backup", endpoint: str = "") -> dict[str, str]:
        key = self.keys[who]
        return harvester_env(
            db_url,
            CCMIRROR_STORAGE_ENDPOINT=endpoint or self.cluster.s3_url,
            CCMIRROR_STORAGE_BUCKET=BUCKET,
            CCMIRROR_STORAGE_ACCESS_KEY=key.access_key,
            CCMIRROR_STORAGE_SECRET_KEY=key.secret_key,
        )

    def backups(self) -> list[str]:
        listing = self.client("admin").list_objects_v2(Bucket=BUCKET, Prefix="catalog/")
        return sorted(entry["Key"] for entry in listing.get("Contents") or [])


@pytest.fixture
def site(seaweedfs_factory) -> Site:
    """A cluster of the test's own whose gateway runs the states' s3.json (SIGHUP reload)."""
    cluster = seaweedfs_factory(volume_servers=1, replication="000")
    admin = s3.admin_key(cluster)
    keys = {"admin": admin, "audit": s3.new_key(), "backup": s3.new_key(), "dl-1": s3.new_key()}
    config = cluster.base_dir / "s3" / "s3.json"
    config.write_text(rendered_identities(keys, []))
    os.kill(cluster.s3.process.pid, signal.SIGHUP)
    site = Site(cluster, keys)
    wait_for(lambda: _lists(site.client("backup")), 30, "the gateway to know the backup key")
    return site


def _lists(client: BaseClient) -> bool:
    try:
        client.list_objects_v2(Bucket=BUCKET, Prefix="catalog/")
    except ClientError:
        return False
    return True


def rows(url: str) -> dict[str, list[tuple]]:
    """Every row of the catalog's tables, in key order: what "equal" means here."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            found = {}
            for table in TABLES:
                cur.execute(f"SELECT * FROM {table} ORDER BY 1")
                found[table] = list(cur.fetchall())
            return found
    finally:
        conn.close()


def root_url(server: LocalMariaDB, database: str) -> str:
    """root over the unix socket, as the restore runs on db-1 (it creates databases)."""
    return f"mysql://root@localhost/{database}?unix_socket={server.socket}"


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def content(photo_id: int) -> bytes:
    return f"jpeg of {photo_id} ".encode() * 40


def push(db_url: str, writer: BaseClient, count: int) -> list[int]:
    """Lease `count` photos as dl-1, put each at its key with the downloader's key and report
    it stored through the queue's code. Returns the catalog ids stored."""
    conn = connect(db_url)
    try:
        lease = dq.lease(conn, "dl-1", count, 600, utc_now())
        reports = []
        for item in json.loads(lease.items_json):
            key, data = image_path(item["photo_id"], "jpg"), content(item["photo_id"])
            writer.put_object(Bucket=BUCKET, Key=key, Body=data)
            digests = hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()
            reports.append(
                dq.Report(item["id"], "stored", digests[0], len(data), key, md5=digests[1])
            )
        dq.complete(conn, "dl-1", lease.id, reports, 5, utc_now())
        return [report.id for report in reports]
    finally:
        conn.close()


def ok_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 1 and one line on stderr naming `words`, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def catalog(db_url: str) -> str:
    conn = connect(db_url)
    fill_images(conn, PHOTOS)
    conn.close()
    return db_url


@pytest.fixture
def fresh_db(fresh_mariadb: LocalMariaDB) -> Iterator[str]:
    """An empty, migrated catalog on the second server: a new db-1 after its states ran."""
    name = f"ccm_fresh_{os.urandom(4).hex()}"
    fresh_mariadb.fresh_database(name)
    url = root_url(fresh_mariadb, name)
    conn = connect(url)
    migrate(conn)
    conn.close()
    yield url
    for suffix in ("", "_restore", "_before_restore"):
        fresh_mariadb.drop_database(name + suffix)


def test_a_restore_on_a_fresh_server_is_the_backup_and_the_audit_adopts_what_came_after(
    site: Site, catalog: str, fresh_db: str, sql
) -> None:
    writer = site.client("dl-1")
    before = push(catalog, writer, 10)
    made = ok_json(run_harvester("backup-catalog", "--json", env=site.env(catalog)))
    assert made["key"].startswith("catalog/") and made["key"].endswith(".sql.zst")
    assert site.backups() == [made["key"]] and made["bytes"] > 0
    at_backup = rows(catalog)

    after = push(catalog, writer, 10)  # stored after the backup: in the bucket only
    sql("UPDATE images SET title = 'changed after the backup' WHERE id = %s", before[0])
    # A stolen key overwrote one since: the restored catalog has no checksum to tell the
    # photo's bytes from the others, so that photo is fetched again, never adopted.
    overwritten = after.pop()
    photo_of = {row[0]: row[1] for row in rows(catalog)["images"]}
    key = image_path(photo_of[overwritten], "jpg")
    writer.put_object(Bucket=BUCKET, Key=key, Body=b"other bytes of the same photo")

    restored = ok_json(run_harvester("restore-catalog", "--json", env=site.env(fresh_db)))
    assert restored["key"] == made["key"] and restored["photos"] == PHOTOS
    assert rows(fresh_db) == at_backup, "the restored catalog is the backup's, row for row"

    audit = ok_json(
        run_harvester(
            "audit-storage", "--s3", "--json", "--clock-margin", "0",
            env=site.env(fresh_db, "audit"),
        )
    )  # fmt: skip
    assert audit["adopted"] == len(after) and audit["requeued"] == 0, audit
    assert audit["ok"] == len(before) and audit["orphans"] == 1, audit  # the overwritten
    conn = connect(fresh_db, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM images WHERE state = 'stored' ORDER BY id")
        assert [row[0] for row in cur.fetchall()] == sorted(before + after)
        cur.execute("SELECT image_id, LOWER(HEX(sha256)), bytes, path FROM stored_images")
        adopted = {row[0]: row[1:] for row in cur.fetchall() if row[0] in after}
    photo_of = {row[0]: row[1] for row in rows(fresh_db)["images"]}
    for image_id, (sha256, size, path) in adopted.items():
        data = content(photo_of[image_id])
        assert (sha256, size, path) == (
            hashlib.sha256(data).hexdigest(), len(data), image_path(photo_of[image_id], "jpg")
        )  # fmt: skip
    # The queue goes on from the backup: what was neither stored then nor pushed since.
    leased = dq.lease(conn, "dl-2", PHOTOS, 600, utc_now())
    leased_ids = sorted(item["id"] for item in json.loads(leased.items_json))
    conn.close()
    assert overwritten in leased_ids and not set(leased_ids) & set(before + after)
    assert len(leased_ids) == PHOTOS - len(before) - len(after)


def test_a_photo_the_audit_sent_back_for_bad_bytes_is_not_adopted_from_them(
    site: Site, catalog: str, sql
) -> None:
    """A stored photo whose only version has other bytes is requeued (corrupt); the next
    audit finds those bytes at its key again and leaves the photo pending."""
    (stored,) = push(catalog, site.client("dl-1"), 1)
    path = sql("SELECT path FROM stored_images WHERE image_id = %s", stored)[0][0]
    admin = site.client("admin")
    (version,) = admin.list_object_versions(Bucket=BUCKET, Prefix=path)["Versions"]
    admin.delete_object(
        Bucket=BUCKET, Key=path, VersionId=version["VersionId"], BypassGovernanceRetention=True
    )
    admin.put_object(Bucket=BUCKET, Key=path, Body=b"not the photo at all")
    env = site.env(catalog, "audit")
    args = ("audit-storage", "--s3", "--json", "--clock-margin", "0")
    first = ok_json(run_harvester(*args, env=env))
    assert (first["corrupt"], first["requeued"], first["adopted"]) == (1, 1, 0), first
    second = ok_json(run_harvester(*args, env=env))
    assert second["adopted"] == 0, second
    assert sql("SELECT state FROM images WHERE id = %s", stored) == [("pending",)]


def test_a_backup_of_an_older_schema_is_migrated_after_the_restore(
    site: Site, catalog: str, fresh_db: str, sql
) -> None:
    """A backup made before migration 0009 (storage_audits.adopted): the restored catalog is
    brought up to this release, so the programs and the audit after it run."""
    sql("ALTER TABLE storage_audits DROP COLUMN adopted")
    sql("DELETE FROM schema_migrations WHERE version = 9")
    ok_json(run_harvester("backup-catalog", "--json", env=site.env(catalog)))
    restored = ok_json(run_harvester("restore-catalog", "--json", env=site.env(fresh_db)))
    assert restored["migrated"] == [9]
    audit = run_harvester(
        "audit-storage", "--s3", "--json", "--clock-margin", "0", env=site.env(fresh_db, "audit")
    )
    assert ok_json(audit)["stored"] == 0


def test_the_retention_keeps_the_newest_n(site: Site, catalog: str) -> None:
    made = [
        ok_json(run_harvester("backup-catalog", "--json", "--keep", "2", env=site.env(catalog)))
        for _ in range(4)
    ]
    newest = sorted(result["key"] for result in made)[-2:]
    assert site.backups() == newest
    assert made[-1]["kept"] == newest and len(made[-1]["pruned"]) == 1
    listed = ok_json(run_harvester("catalog-backups", "--json", env=site.env(catalog)))
    assert [backup["key"] for backup in listed] == newest


def test_the_backup_key_reaches_its_prefix_only_and_a_downloader_cannot_read_backups(
    site: Site, catalog: str
) -> None:
    made = ok_json(run_harvester("backup-catalog", "--json", env=site.env(catalog)))
    photo = image_path(123456789, "jpg")
    site.client("dl-1").put_object(Bucket=BUCKET, Key=photo, Body=b"a photo")
    backup, downloader = site.client("backup"), site.client("dl-1")
    refused = [
        lambda: backup.get_object(Bucket=BUCKET, Key=photo),
        lambda: backup.put_object(Bucket=BUCKET, Key=photo, Body=b"x"),
        lambda: backup.delete_object(Bucket=BUCKET, Key=photo),
        lambda: backup.list_objects_v2(Bucket=BUCKET, Prefix="images/"),
        lambda: backup.put_object(Bucket=BUCKET, Key="manifests/x.jsonl", Body=b"x"),
        lambda: downloader.get_object(Bucket=BUCKET, Key=made["key"]),
        lambda: downloader.list_objects_v2(Bucket=BUCKET, Prefix="catalog/"),
    ]
    for number, call in enumerate(refused):
        with pytest.raises(ClientError) as error:
            call()
        assert error.value.response["Error"]["Code"] == "AccessDenied", number
    assert site.client("admin").get_object(Bucket=BUCKET, Key=photo)["Body"].read() == b"a photo"
    body = backup.get_object(Bucket=BUCKET, Key=made["key"])["Body"].read()
    assert len(body) == made["bytes"]


def test_no_backup_or_no_bucket_or_a_full_catalog_is_one_error_and_changes_nothing(
    site: Site, catalog: str, fresh_db: str
) -> None:
    empty = rows(fresh_db)
    missing = run_harvester("restore-catalog", env=site.env(fresh_db))
    one_error(missing, "no catalog backup", "catalog/")
    assert rows(fresh_db) == empty

    closed = "http://127.0.0.1:9"  # discard: nothing listens
    for command, url in (("backup-catalog", catalog), ("restore-catalog", fresh_db)):
        one_error(run_harvester(command, env=site.env(url, endpoint=closed)), "cannot list")
    assert site.backups() == [] and rows(fresh_db) == empty

    ok_json(run_harvester("backup-catalog", "--json", env=site.env(catalog)))
    # The newest backup is not zstd (damaged, or not ours): the load fails, the staging
    # database is dropped, the catalog is as it was.
    site.client("backup").put_object(
        Bucket=BUCKET, Key="catalog/ccmirror-29991231T000000000000Z.sql.zst", Body=b"no zstd"
    )
    one_error(
        run_harvester("restore-catalog", env=site.env(fresh_db)), "loading the backup", "zstd"
    )
    assert rows(fresh_db) == empty
    conn = connect(fresh_db)
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (parse_db_url(fresh_db).database + "%",))
        assert len(cur.fetchall()) == 1, "no staging database left behind"
    conn.close()

    full = fresh_db  # a catalog with photos: refused, whatever the backup holds
    conn = connect(full)
    fill_images(conn, 3)
    conn.close()
    at_refusal = rows(full)
    one_error(run_harvester("restore-catalog", env=site.env(full)), "not empty", "3 photos")
    assert rows(full) == at_refusal

    backups = site.backups()
    broken = run_harvester("backup-catalog", env=site.env(catalog.rsplit("/", 1)[0] + "/nodb"))
    one_error(broken, "mariadb-dump")
    assert site.backups() == backups, "a failed dump leaves no object"
