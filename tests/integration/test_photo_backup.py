"""The backup target (#20) with real parts: two SeaweedFS clusters (main, and the backup
cluster with a bucket made as the images bucket is), `weed filer.backup` between them with the
template Salt renders (lab/processes/seaweedfs_backup.py), a real MariaDB, and `harvester
backup-lag` / `restore-photos` run as processes.

Photos are put into main with a downloader's write-only key and reported stored through the
queue code; the sink writes with a Write-only key on the backup; the harvester reads the
backup with a reader's key (Read, List) and main with the audit's (Read, List, Write)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from ccmirror_common.layout import IMAGE_PATH, image_path
from harvester.backup import target
from harvester.config import BackupTargetSettings
from harvester.db import connect
from harvester.queue import leases as dq
from lab.mission.catalog_images import fill_images
from lab.processes import seaweedfs_s3 as s3
from lab.processes.seaweedfs import Cluster
from lab.processes.seaweedfs_backup import start_backup
from lab.processes.seaweedfs_process import WeedProcess
from tests.conftest import harvester_env, run_harvester, wait_for

BACKUP_BUCKET = "backup"
CATCH_UP = 60.0  # seconds the backup may take to copy a handful of photos here


@dataclass
class Site:
    main: Cluster
    backup: Cluster
    process: WeedProcess
    writer: s3.S3Key  # a downloader's, on main
    auditor: s3.S3Key  # the audit's, on main
    reader: s3.S3Key  # the harvester's, on the backup
    sink: s3.S3Key  # filer.backup's, on the backup: Write only
    db_url: str
    sql: object

    def env(self, **override: str) -> dict[str, str]:
        target = {
            "ENDPOINT": self.backup.s3_url, "BUCKET": BACKUP_BUCKET,
            "ACCESS_KEY": self.reader.access_key, "SECRET_KEY": self.reader.secret_key,
            "FILER": self.backup.filer_url,
        } | override  # fmt: skip
        return harvester_env(
            self.db_url,
            CCMIRROR_STORAGE_ENDPOINT=self.main.s3_url,
            CCMIRROR_STORAGE_BUCKET=s3.IMAGES_BUCKET,
            CCMIRROR_STORAGE_ACCESS_KEY=self.auditor.access_key,
            CCMIRROR_STORAGE_SECRET_KEY=self.auditor.secret_key,
            **{f"CCMIRROR_BACKUP_TARGET_{k}": v for k, v in target.items() if v is not None},
        )

    def harvester(self, *args: str, **override: str) -> subprocess.CompletedProcess:
        return run_harvester(*args, env=self.env(**override), timeout=120)

    def store(self, count: int, new: bool = True) -> dict[str, bytes]:
        """`count` catalog photos (`new` ones, else pending ones), put with the writer's key
        (each PUT with its SHA-256, as the downloader's push sends it) and reported stored.
        Returns key -> bytes."""
        conn = connect(self.db_url)
        try:
            if new:
                fill_images(conn, count)
            lease = dq.lease(conn, "dl-1", count, 600, utc_now())
            writer, reports, stored = s3.client(self.main.s3_url, self.writer), [], {}
            for item in json.loads(lease.items_json):
                key = image_path(item["photo_id"], "jpg")
                data = photo_bytes(item["photo_id"])
                put(writer, key, data)
                sha = hashlib.sha256(data).hexdigest()
                md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - the ETag's
                reports.append(dq.Report(item["id"], "stored", sha, len(data), key, md5=md5))
                stored[key] = data
            dq.complete(conn, "dl-1", lease.id, reports, 5, utc_now())
        finally:
            conn.close()
        return stored

    def main_admin(self):
        return s3.admin_client(self.main)

    def latest(self, key: str) -> bytes | None:
        try:
            body = self.main_admin().get_object(Bucket=s3.IMAGES_BUCKET, Key=key)["Body"]
        except ClientError:
            return None
        return body.read()

    def versions(self) -> list[tuple]:
        listing = self.main_admin().list_object_versions(Bucket=s3.IMAGES_BUCKET)
        rows = (listing.get("Versions") or []) + (listing.get("DeleteMarkers") or [])
        return sorted((v["Key"], v["VersionId"], v.get("ETag")) for v in rows)

    def lag(self) -> dict:
        return ok_json(self.harvester("backup-lag", "--json"))


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def photo_bytes(photo_id: int, generation: int = 0) -> bytes:
    return f"jpeg of {photo_id} #{generation} ".encode() * 40


def put(client, key: str, data: bytes) -> str:
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    answer = client.put_object(Bucket=s3.IMAGES_BUCKET, Key=key, Body=data, ChecksumSHA256=checksum)
    return answer["VersionId"]


def ok_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def site(seaweedfs_factory, db_url, sql, tmp_path: Path):
    main = seaweedfs_factory(volume_servers=1, replication="000")
    made = start_site(main, seaweedfs_factory, db_url, sql, tmp_path)
    yield made
    made.process.stop(10)


def start_site(main: Cluster, seaweedfs_factory, db_url: str, sql, tmp_path: Path) -> Site:
    """The backup cluster beside `main`, the four keys, and `weed filer.backup` between them
    (the caller stops it: `site.process.stop`)."""
    # bk-1's filer takes writes only with its own node's key (salt/storage/seaweedfs/config.sls)
    backup = seaweedfs_factory(volume_servers=1, replication="000",
                               filer_write_key=secrets.token_hex(32))  # fmt: skip
    s3.create_images_bucket(s3.admin_client(backup), BACKUP_BUCKET)  # as the lead's Salt does
    keys = {name: s3.new_key() for name in ("writer", "auditor", "sink", "reader")}
    s3.add_identity(main, "writer", keys["writer"])
    s3.add_identity(main, "auditor", keys["auditor"], actions=s3.AUDITOR_ACTIONS)
    s3.add_identity(backup, "sink", keys["sink"], BACKUP_BUCKET)  # Write only
    s3.add_identity(backup, "reader", keys["reader"], BACKUP_BUCKET, ("Read", "List"))
    for cluster, name, bucket in ((main, "writer", s3.IMAGES_BUCKET),
                                  (main, "auditor", s3.IMAGES_BUCKET),
                                  (backup, "sink", BACKUP_BUCKET),
                                  (backup, "reader", BACKUP_BUCKET)):  # fmt: skip
        s3.wait_known(cluster, keys[name], bucket)
    target = s3.storage_setting(backup, keys["sink"], BACKUP_BUCKET)
    process = start_backup(tmp_path / "filer-backup", main, target)
    return Site(main, backup, process, keys["writer"], keys["auditor"], keys["reader"],
                keys["sink"], db_url, sql)  # fmt: skip


def caught_up(site: Site):
    lag = site.lag()
    return lag if lag["behind"] == 0 else None


def test_stored_photos_reach_the_backup_and_the_lag_says_how_far_behind(site):
    site.store(8)
    wait_for(lambda: caught_up(site), CATCH_UP, "the backup to catch up", interval=0.5)

    site.process.stop(10)  # the backup droplet is down: photos stored meanwhile are behind
    later = site.store(5)
    lag = site.lag()
    assert lag["behind"] == 5, lag
    assert lag["seconds"] > 0, lag

    site.process.start()  # resumes from the checkpoint the main filer kept
    lag = wait_for(lambda: caught_up(site), CATCH_UP, "the backup to catch up", interval=0.5)
    assert lag["seconds"] == 0
    reader = s3.client(site.backup.s3_url, site.reader)
    for key, data in later.items():
        version = site.main_admin().head_object(Bucket=s3.IMAGES_BUCKET, Key=key)["VersionId"]
        copy = f"{key}.versions/v_{version}"
        assert reader.get_object(Bucket=BACKUP_BUCKET, Key=copy)["Body"].read() == data


def test_backup_check_finds_what_filer_backup_left_out_and_copies_it_from_main(site, tmp_path):
    """A hole behind the backup's front: photos whose events filer.backup never wrote (here
    its checkpoint moved past them with its own -timeAgo, as a skipped 404 or a lost event
    does). backup-lag sees the front, at 0; backup-check sees the hole and fills it."""
    site.store(4)
    wait_for(lambda: caught_up(site), CATCH_UP, "the backup to catch up", interval=0.5)
    site.process.stop(10)
    hole = site.store(3)
    manifest = "manifests/2026/12/06/77.jsonl"
    hole[manifest] = b'{"photo_id": 1}\n'
    put(s3.client(site.main.s3_url, site.writer), manifest, hole[manifest])
    time.sleep(3)  # -timeAgo=2s below: the new filer.backup starts after them
    sink = s3.storage_setting(site.backup, site.sink, BACKUP_BUCKET)
    site.process = start_backup(tmp_path / "resumed", site.main, sink, extra_args=("-timeAgo=2s",))
    after = site.store(2)
    wait_for(lambda: caught_up(site), CATCH_UP, "the backup's front to pass the hole", 0.5)
    assert all(backed_up(site, key, version) for key, version in main_versions(site, after))
    assert not any(backed_up(site, key, version) for key, version in main_versions(site, hole))

    check = ("backup-check", "--margin-minutes", "0", "--json")
    dry = ok_json(site.harvester(*check, "--dry-run"))
    assert (dry["checked"], dry["missing"], dry["filled"], dry["whole"]) == (9, 3, 0, False), dry
    assert (dry["manifests_checked"], dry["manifests_missing"]) == (1, 1), dry
    assert dry["behind_seconds"] >= 3 and dry["oldest_missing"], dry  # slept 3 s above
    assert sorted(dry["samples"]["missing photos"]) == sorted(hole)[:3], dry  # images/ first
    assert dry["samples"]["missing manifests"] == [manifest], dry
    refused = site.harvester(*check)  # no sink key: nothing to copy with
    assert refused.returncode == 1 and "sink_access_key is not set" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not any(backed_up(site, key, version) for key, version in main_versions(site, hole))

    textfiles = tmp_path / "textfiles"  # node exporter's: CcmirrorBackupCheckNotRun's series
    textfiles.mkdir()
    sink_key = {"SINK_ACCESS_KEY": site.sink.access_key, "SINK_SECRET_KEY": site.sink.secret_key}
    env = site.env(**sink_key) | {"CCMIRROR_METRICS_TEXTFILE_DIR": str(textfiles)}
    assert ok_json(run_harvester(*check, "--dry-run", env=env, timeout=120))["filled"] == 0
    assert not list(textfiles.iterdir()), "a dry run is no audit of the backup"
    filled = ok_json(run_harvester(*check, env=env, timeout=120))
    assert (filled["missing"], filled["filled"], filled["whole"]) == (3, 4, True), filled
    assert (
        "ccmirror_job_last_success_timestamp_seconds"
        in (textfiles / "ccmirror_backup_check.prom").read_text()
    )
    reader = s3.client(site.backup.s3_url, site.reader)
    for key, version in main_versions(site, hole):
        copy = reader.get_object(Bucket=BACKUP_BUCKET, Key=f"{key}.versions/v_{version}")
        assert copy["Body"].read() == hole[key], key
    again = ok_json(site.harvester(*check, "--dry-run"))
    assert (again["checked"], again["missing"], again["whole"]) == (9, 0, True), again
    assert (again["behind_seconds"], again["oldest_missing"]) == (0, ""), again


def main_versions(site: Site, stored: dict[str, bytes]) -> list[tuple[str, str]]:
    admin = site.main_admin()
    return [(key, admin.head_object(Bucket=s3.IMAGES_BUCKET, Key=key)["VersionId"])
            for key in sorted(stored)]  # fmt: skip


def test_restore_brings_back_deleted_and_overwritten_photos_from_the_backup(site):
    stored = site.store(6)
    keys = sorted(stored)
    overwritten, deleted, marked = keys[:3]
    wait_for(lambda: caught_up(site), CATCH_UP, "the backup to catch up", interval=0.5)
    admin, writer = site.main_admin(), s3.client(site.main.s3_url, site.writer)
    # A stolen downloader key: another version on top, and a delete marker.
    put(writer, overwritten, b"not the photo " * 40)
    writer.delete_object(Bucket=s3.IMAGES_BUCKET, Key=marked)
    # The admin key's mistake: the only version removed for good, bypassing the retention.
    only = admin.head_object(Bucket=s3.IMAGES_BUCKET, Key=deleted)["VersionId"]
    admin.delete_object(Bucket=s3.IMAGES_BUCKET, Key=deleted, VersionId=only,
                        BypassGovernanceRetention=True)  # fmt: skip
    assert site.latest(deleted) is None
    # The backup still has the removed version: deletes are never sent.
    reader = s3.client(site.backup.s3_url, site.reader)
    copy_key = f"{deleted}.versions/v_{only}"
    copy = reader.get_object(Bucket=BACKUP_BUCKET, Key=copy_key)
    assert copy["Body"].read() == stored[deleted]
    # A stolen sink key on the backup: its delete is a marker, its delete of the version is
    # refused (the backup bucket's retention), and restore still finds the copy.
    sink = s3.client(site.backup.s3_url, site.sink, retries=1)
    with pytest.raises(ClientError):
        sink.delete_object(Bucket=BACKUP_BUCKET, Key=copy_key, VersionId=copy["VersionId"])
    sink.delete_object(Bucket=BACKUP_BUCKET, Key=copy_key)
    with pytest.raises(ClientError):
        reader.get_object(Bucket=BACKUP_BUCKET, Key=copy_key)

    before = site.versions()
    dry = ok_json(site.harvester("restore-photos", "--from", "backup", "--dry-run", "--json"))
    assert (dry["restored"], dry["fine"], dry["not_on_backup"]) == (3, 3, 0), dry
    assert site.versions() == before, "a dry run changes nothing"

    first = ok_json(site.harvester("restore-photos", "--from", "backup", "--json"))
    assert (first["restored"], first["fine"], first["not_on_backup"]) == (3, 3, 0), first
    assert sorted(first["samples"]["restored"]) == sorted([overwritten, deleted, marked])
    for key, data in stored.items():
        assert hashlib.sha256(site.latest(key) or b"").digest() == hashlib.sha256(data).digest()

    after = site.versions()
    second = ok_json(site.harvester("restore-photos", "--from", "backup", "--json"))
    assert (second["restored"], second["fine"]) == (0, 6), second
    assert site.versions() == after, "a second run changes nothing"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"ENDPOINT": "http://127.0.0.1:9"}, "cannot reach the backup target"),
        ({"SECRET_KEY": "wrong-secret-key"}, "cannot reach the backup target"),
        ({"ENDPOINT": ""}, "backup_target.endpoint is not set"),
    ],
    ids=["unreachable", "wrong-key", "unset"],
)
def test_a_bad_backup_target_is_one_clear_error_and_changes_nothing(site, override, message):
    stored = site.store(3)
    victim = sorted(stored)[0]
    s3.client(site.main.s3_url, site.writer).delete_object(Bucket=s3.IMAGES_BUCKET, Key=victim)
    before = site.versions()
    for command in (("restore-photos", "--from", "backup"), ("backup-lag",), ("backup-check",)):
        result = site.harvester(*command, **override)
        assert result.returncode != 0
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert site.versions() == before


def test_db_1_lists_the_backup_through_its_filer_but_cannot_write_or_delete_there(site):
    """db-1 reaches bk-1's filer to list the copies (backup-check, restores). Without bk-1's
    own key a write or delete there is refused: a compromised db-1 cannot remove the copies
    past the bucket's object lock. The gateway, which signs with that key, still writes."""
    stored = site.store(2)
    wait_for(lambda: caught_up(site), CATCH_UP, "the backup to catch up", interval=0.5)
    key = sorted(stored)[0]
    version = site.main_admin().head_object(Bucket=s3.IMAGES_BUCKET, Key=key)["VersionId"]
    folder = f"{site.backup.filer_url}/buckets/{BACKUP_BUCKET}/{key}.versions"
    listed = requests.get(f"{folder}/", headers={"Accept": "application/json"}, timeout=30)
    assert listed.status_code == 200, listed.text
    (name,) = [entry["FullPath"].rsplit("/", 1)[-1] for entry in listed.json()["Entries"]]
    assert name.startswith(f"v_{version}")  # the copy (in a versioned bucket: its folder)
    for refused in (
        requests.delete(f"{folder}/{name}?recursive=true", timeout=30),
        requests.delete(f"{site.backup.filer_url}/buckets/{BACKUP_BUCKET}?recursive=true",
                        timeout=30),
        requests.post(f"{folder}/planted", files={"file": ("planted", b"x")}, timeout=30),
    ):  # fmt: skip
        assert refused.status_code == 401, (refused.request.method, refused.status_code)
    reader = s3.client(site.backup.s3_url, site.reader)
    copy = reader.get_object(Bucket=BACKUP_BUCKET, Key=f"{key}.versions/v_{version}")
    assert copy["Body"].read() == stored[key]
    probe = ok_json(site.harvester("backup-lag", "--probe-sink", "--json",
                                   SINK_ACCESS_KEY=site.sink.access_key,
                                   SINK_SECRET_KEY=site.sink.secret_key))  # fmt: skip
    assert probe["sink_probe"].endswith("/sink.txt")  # through the gateway: signed, taken


def test_backup_lag_probes_the_sink_key_that_backup_check_copies_with(site):
    """What `orch.rotate` checks after switching and retiring the backup keys: db-1's reader
    key reads the backup and its sink key still writes there."""
    lag = ["backup-lag", "--probe-sink", "--json"]
    refused = site.harvester(*lag)  # no sink key in the settings
    assert refused.returncode == 1 and "sink_access_key is not set" in refused.stderr
    sink = {"SINK_ACCESS_KEY": site.sink.access_key, "SINK_SECRET_KEY": site.sink.secret_key}
    wrong = site.harvester(*lag, **sink | {"SINK_SECRET_KEY": "a-retired-secret-key"})
    assert wrong.returncode == 1, wrong.stderr
    assert "the sink's key cannot write to the backup target" in wrong.stderr, wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1 and "Traceback" not in wrong.stderr

    state = ok_json(site.harvester(*lag, **sink))
    probe = f"probes/{socket.gethostname()}/sink.txt"
    assert state["sink_probe"] == probe and state["behind"] == 0, state
    reader = s3.client(site.backup.s3_url, site.reader)
    body = reader.get_object(Bucket=BACKUP_BUCKET, Key=probe)["Body"].read()
    assert body == f"sink key probe from {socket.gethostname()}\n".encode()
    assert "sink_probe" not in site.lag(), "without --probe-sink nothing is written"


def backed_up(site: Site, key: str, version_id: str) -> bool:
    reader = s3.client(site.backup.s3_url, site.reader)
    try:
        reader.head_object(Bucket=BACKUP_BUCKET, Key=f"{key}.versions/v_{version_id}")
    except ClientError:
        return False
    return True


def photo_id_of(key: str) -> int:
    return int(IMAGE_PATH.match(key).group(1))


def lose_names(site: Site, key: str) -> None:
    """What the main filer store restored to the catalog backup's moment does to a key pushed
    after it: every version and marker gone (removed here with the admin key)."""
    admin = site.main_admin()
    listing = admin.list_object_versions(Bucket=s3.IMAGES_BUCKET, Prefix=key)
    for version in (listing.get("Versions") or []) + (listing.get("DeleteMarkers") or []):
        admin.delete_object(Bucket=s3.IMAGES_BUCKET, Key=key, VersionId=version["VersionId"],
                            BypassGovernanceRetention=True)  # fmt: skip
    assert site.latest(key) is None


def catalog(site: Site) -> tuple:
    return (
        site.sql("SELECT photo_id, state FROM images ORDER BY id"),
        site.sql("SELECT image_id, HEX(sha256), bytes, path, worker FROM stored_images"
                 " ORDER BY image_id"),
    )  # fmt: skip


def restore(site: Site, *extra: str) -> dict:
    return ok_json(site.harvester("restore-photos", "--from", "backup", "--json", *extra))


def test_photos_stored_after_the_catalog_backup_come_back_for_the_audit_to_adopt(site, monkeypatch):
    stored = site.store(9)
    keys = sorted(stored)
    overwritten, lost, on_main, kept, marked = keys[0], keys[1:5], keys[5], keys[6:8], keys[8]
    # A stolen downloader key, before the loss, overwrote one photo (two differing copies on
    # the backup) and deleted another (its delete marker's copy: 0 bytes).
    writer = s3.client(site.main.s3_url, site.writer)
    version = put(writer, overwritten, b"not the photo " * 40)
    marker = writer.delete_object(Bucket=s3.IMAGES_BUCKET, Key=marked)["VersionId"]
    wait_for(lambda: caught_up(site), CATCH_UP, "the backup to catch up", interval=0.5)
    for key, version_id in ((overwritten, version), (marked, marker)):
        copied = lambda k=key, v=version_id: backed_up(site, k, v)  # noqa: E731
        wait_for(copied, CATCH_UP, "the stolen key's copies", interval=0.5)
    conn = connect(site.db_url)
    try:
        fill_images(conn, 1)  # pending, never stored: nothing of it on the backup
    finally:
        conn.close()

    # The catalog restored to a backup taken before these photos were stored: their rows
    # pending, leased or failed, their stored_images rows gone; main's names of them lost.
    states = dict(zip([overwritten, *lost, on_main, marked],
                      ["pending", "pending", "leased", "failed", "pending", "leased", "pending"],
                      strict=True))  # fmt: skip
    for key, state in states.items():
        photo_id = photo_id_of(key)
        site.sql("DELETE s FROM stored_images s JOIN images i ON i.id = s.image_id"
                 " WHERE i.photo_id = %s", photo_id)  # fmt: skip
        site.sql("UPDATE images SET state = %s, last_error = IF(%s = 'failed', 'http 500', NULL)"
                 " WHERE photo_id = %s", state, state, photo_id)  # fmt: skip
    for key in [overwritten, *lost, marked]:
        lose_names(site, key)  # on_main keeps its object: the audit adopts it as it is

    before, versions = catalog(site), site.versions()
    dry = restore(site, "--dry-run")
    assert (dry["restored"], dry["fine"], dry["not_on_backup"]) == (0, 2, 0), dry
    assert (dry["unstored_walked"], dry["unstored_checked"], dry["unstored_restored"]) == (
        9, 7, 4), dry  # fmt: skip
    assert dry["unstored_skipped"] == {"on_main": 1, "differ": 1, "deleted": 1,
                                       "unreadable": 0}, dry  # fmt: skip
    assert (catalog(site), site.versions()) == (before, versions), "a dry run changes nothing"

    first = restore(site)
    assert (first["unstored_restored"], first["unstored_skipped"]["differ"]) == (4, 1), first
    assert sorted(first["samples"]["unstored_restored"]) == lost
    assert first["samples"]["unstored_differ"] == [overwritten]
    assert first["samples"]["unstored_on_main"] == [on_main]
    assert first["samples"]["unstored_deleted"] == [marked]
    for key in lost:
        assert site.latest(key) == stored[key]
    assert site.latest(overwritten) is None and site.versions() == sorted(
        versions + [v for v in site.versions() if v[0] in lost]
    ), "only the lost photos' keys got a version"
    assert catalog(site) == before, "restore-photos marks nothing: the audit's adoption does"

    env = site.env(CCMIRROR_STORAGE_ACCESS_KEY=site.auditor.access_key)
    audit = ok_json(run_harvester("audit-storage", "--s3", "--json", "--clock-margin", "0",
                                  env=env, timeout=120))  # fmt: skip
    assert audit["adopted"] == 5, audit
    rows, stored_rows = catalog(site)
    state_of = {photo_id: state for photo_id, state in rows}
    by_path = {row[3]: row for row in stored_rows}
    for key in [*lost, on_main, *kept]:
        photo_id = photo_id_of(key)
        assert state_of[photo_id] == "stored", key
        assert by_path[key][1].lower() == hashlib.sha256(stored[key]).hexdigest(), key
    for key in [*lost, on_main]:
        assert by_path[key][4] == "storage-audit", key
    for key in (overwritten, marked):  # left to be fetched again
        assert state_of[photo_id_of(key)] == "pending" and key not in by_path, key
    assert rows[-1][1] == "pending", "the photo never stored is left to be fetched"
    assert [r for r in stored_rows if r[3] in kept] == [r for r in before[1] if r[3] in kept]

    # The walk pages every folder (`lastFileName` on): with 3 names a page, still each key once.
    monkeypatch.setattr(target, "PAGE", 3)
    settings = BackupTargetSettings(endpoint=site.backup.s3_url, bucket=BACKUP_BUCKET,
                                    access_key=site.reader.access_key,
                                    secret_key=site.reader.secret_key,
                                    filer=site.backup.filer_url)  # fmt: skip
    pages = list(target.walk_keys(target.target_client(settings), settings))
    assert len(pages) > 1 and sorted(key for page in pages for key in page) == keys, pages

    after, versions = catalog(site), site.versions()
    second = restore(site)
    assert second["unstored_restored"] == 0, second
    assert (second["unstored_skipped"]["differ"], second["unstored_skipped"]["deleted"]) == (
        1, 1), second  # fmt: skip
    assert (catalog(site), site.versions()) == (after, versions), "a re-run changes nothing"
