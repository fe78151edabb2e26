"""The spool's own layout: flat, whatever the storage layout. A lease of many photos makes two
directories in the spool (the storage layout would make one per photo), and a lease that an
older version journaled in the storage layout (a daemon upgraded mid-lease) is still pushed
to its keys, by rsync and by S3."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ccmirror_common.layout import image_path, manifest_path
from downloader.config import Settings
from downloader.spool import Spool
from downloader.stages import lease_pusher
from lab.processes.child import free_port
from lab.processes.seaweedfs_s3 import WritableBucket
from lab.processes.storage import RunningStorage
from lab.sims.image_host import server as image_host
from tests.conftest import make_storage, remove_storage, wait_for
from tests.integration.test_downloader import Fleet, make_fleet
from tests.integration.test_s3_push import read_back, target_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sshd and useradd need root")
PHOTOS = 300


@pytest.fixture
def storage() -> Iterator[RunningStorage]:
    running = make_storage()
    yield running
    remove_storage(running)


@pytest.fixture
def many_photos(db_url, sql, tmp_path, storage) -> Iterator[Fleet]:
    host = image_host.spawn()
    try:
        yield from make_fleet(db_url, sql, tmp_path, storage, host, PHOTOS)
    finally:
        host.stop()


def test_a_lease_of_many_photos_makes_two_directories_in_the_spool(many_photos: Fleet):
    """300 photos of consecutive ids in one lease: the storage layout spreads them over 300
    directories and more; the spool holds the lease's directory and its files/, no other."""
    fleet = many_photos
    # S3 storage where nothing listens: the daemon fetches everything, then waits to push.
    nowhere = {
        "CCMIRROR_STORAGE_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "CCMIRROR_STORAGE_BUCKET": "images",
        "CCMIRROR_STORAGE_REGION": "us-east-1",
        "CCMIRROR_STORAGE_ACCESS_KEY": "nobody",
        "CCMIRROR_STORAGE_SECRET_KEY": "nothing",
    }
    proc = fleet.start("--once", CCMIRROR_BATCH_SIZE=str(PHOTOS), **nowhere)
    try:
        wait_for(lambda: fleet.phase() == "fetched", 120, "the whole lease fetched")
        directories = sorted(
            p.relative_to(fleet.spool).as_posix() for p in fleet.spool.rglob("*") if p.is_dir()
        )
        files = [p.name for p in (fleet.spool / "lease" / "files").iterdir()]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert directories == ["lease", "lease/files"]
    assert len(files) == PHOTOS + 1 and "manifest.jsonl" in files  # every photo and manifest


def upgraded_lease(spool: Path, lease_id: int) -> dict[str, bytes]:
    """A lease as a daemon upgraded mid-lease leaves it: the photos the old version fetched
    at their storage keys under files/ (their result lines name no file), those the new one
    fetched flat (named), the manifest the old version wrote at its key (lease.json names
    no file), fetched and not pushed. Storage key -> the bytes that belong there."""
    directory = spool / "lease"
    wanted: dict[str, bytes] = {}
    results = []
    for n in range(8):
        photo_id = 9_100_000 + lease_id * 1000 + n
        key = image_path(photo_id, "jpg")
        body = hashlib.sha256(str(photo_id).encode()).digest() * (100 + n)
        local = key if n < 4 else f"{photo_id}.jpg"
        (directory / "files" / local).parent.mkdir(parents=True, exist_ok=True)
        (directory / "files" / local).write_bytes(body)
        result = {"id": n + 1, "result": "stored", "path": key, "bytes": len(body)}
        result |= {"sha256": hashlib.sha256(body).hexdigest()}
        results.append(result | ({} if n < 4 else {"file": local}))
        wanted[key] = body
    manifest = manifest_path(lease_id, date(2026, 12, 5))
    text = "".join(json.dumps({"photo_id": n + 1, "path": key}) + "\n" for key in wanted)
    (directory / "files" / manifest).parent.mkdir(parents=True)
    (directory / "files" / manifest).write_text(text)
    wanted[manifest] = text.encode()
    # lease.json and results.jsonl as the older version wrote them.
    state = {"lease_id": lease_id, "expires_at": "2999-01-01T00:00:00Z", "phase": "fetched"}
    state |= {"leased_at": "", "manifest": manifest, "items": [{"id": r["id"]} for r in results]}
    (directory / "lease.json").write_text(json.dumps(state))
    (directory / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    return wanted


def push_resumed(spool: Path, settings: Settings) -> None:
    journal = Spool(spool).current()
    assert journal is not None and journal.phase == "fetched"
    lease_pusher(settings)(journal, threading.Event(), print)


def test_an_old_layout_lease_is_pushed_to_its_keys_by_rsync(storage: RunningStorage, tmp_path):
    wanted = upgraded_lease(tmp_path / "spool", 41)
    settings = Settings(
        storage=f"{storage.user}@{storage.host}",
        storage_port=storage.port,
        ssh_key=str(storage.key_path),
        known_hosts=str(storage.known_hosts_path),
    )
    push_resumed(tmp_path / "spool", settings)
    stored = {
        p.relative_to(storage.root).as_posix(): p.read_bytes()
        for p in storage.root.rglob("*")
        if p.is_file()
    }
    assert stored == wanted


def test_an_old_layout_lease_is_pushed_to_its_keys_by_s3(s3_bucket: WritableBucket, tmp_path):
    wanted = upgraded_lease(tmp_path / "spool", 42)
    push_resumed(tmp_path / "spool", Settings(storage=target_of(s3_bucket)))
    assert {key: read_back(s3_bucket, key) for key in wanted} == wanted
    assert Spool(tmp_path / "spool").current().put_keys() == set(wanted)
