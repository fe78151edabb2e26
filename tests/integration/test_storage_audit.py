"""The storage audit end to end on this machine: photos stored through the real queue code
into a real storage tree, an inventory written by the execution module's own walk
(`_modules/ccmirror_audit.py`, loaded by path: it is standard library only), and
`harvester audit-storage` run as a process against MariaDB. Files deleted and corrupted on
storage send their photos back to the queue, where the queue leases them again; a file the
catalog does not know is reported and left alone; a dry run and a bad inventory change
nothing."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from ccmirror_common.layout import image_path
from harvester.db import connect
from harvester.queue import leases as dq
from lab.mission.catalog_images import fill_images
from tests.conftest import ROOT, harvester_env, run_harvester

PHOTOS = 8


def load_audit_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "ccmirror_audit", ROOT / "_modules" / "ccmirror_audit.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


audit_module = load_audit_module()


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Mirror:
    """A catalog and the storage tree its stored photos are on."""

    def __init__(self, db_url: str, sql, root: Path, work: Path) -> None:
        self.db_url, self.sql, self.root, self.work = db_url, sql, root, work
        (root / "images").mkdir(parents=True)
        (root / "manifests").mkdir()

    def content(self, photo_id: int, generation: int = 0) -> bytes:
        return f"jpeg of {photo_id} #{generation} ".encode() * 40

    def store(self, ids: list[int] | None = None, *, write_files: bool = True) -> list[int]:
        """Lease pending photos (all, or `ids` among them) through the queue code, put their
        files on storage, report them stored. Returns their catalog ids."""
        conn = connect(self.db_url)
        try:
            lease = dq.lease(conn, "dl-1", 1000, 600, utc_now())
            assert lease is not None
            items = {item["id"]: item for item in json.loads(lease.items_json)}
            wanted = set(items) if ids is None else set(ids)
            reports = []
            for image_id in sorted(wanted):
                photo_id = items[image_id]["photo_id"]
                rel = image_path(photo_id, "jpg")
                data = self.content(photo_id)
                if write_files:
                    path = self.root / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                sha = hashlib.sha256(data).hexdigest()
                reports.append(dq.Report(image_id, "stored", sha, len(data), rel))
            dq.complete(conn, "dl-1", lease.id, reports, 5, utc_now())
            dq.release(conn, "dl-1", lease.id, sorted(set(items) - wanted), utc_now())
        finally:
            conn.close()
        return sorted(wanted)

    def path_of(self, image_id: int) -> Path:
        return (
            self.root
            / self.sql("SELECT path FROM stored_images WHERE image_id = %s", image_id)[0][0]
        )

    def inventory(self, full: bool = True) -> Path:
        out = self.work / "inventory.tsv.gz"
        audit_module.write_inventory(str(self.root), str(out), full, "st-1")
        return out

    def audit(self, inventory: Path, *extra: str, check: bool = True):
        # The walk follows the stores at once on one clock here: no skew to allow for.
        result = run_harvester(
            "audit-storage", "--inventory", str(inventory), "--json", "--clock-margin", "0",
            *extra,
            env=harvester_env(self.db_url), timeout=60,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)
        return result

    def snapshot(self) -> tuple:
        return (
            self.sql(
                "SELECT id, state, lease_id, attempts, last_error, updated_at FROM images"
                " ORDER BY id"
            ),
            self.sql("SELECT * FROM stored_images ORDER BY image_id"),
            self.sql("SELECT COUNT(*) FROM storage_audits"),
        )


@pytest.fixture
def mirror(db_url, sql, tmp_path) -> Mirror:
    conn = connect(db_url)
    fill_images(conn, PHOTOS)
    conn.close()
    return Mirror(db_url, sql, tmp_path / "storage", tmp_path)


def test_missing_and_corrupt_files_go_back_to_the_queue_and_orphans_are_reported(mirror, sql):
    stored = mirror.store(list(range(1, PHOTOS)))  # the last photo stays pending
    gone, corrupt = stored[1], stored[4]
    mirror.path_of(gone).unlink()
    damaged = mirror.path_of(corrupt)
    damaged.write_bytes(bytes(len(damaged.read_bytes())))  # same size, other bytes
    orphan = mirror.root / image_path(7_000_000_001, "jpg")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"a file nobody reported")
    # rsync's work in progress is not a file of storage yet
    partial = mirror.path_of(stored[0]).parent / ".~tmp~"
    partial.mkdir()
    (partial / "half.jpg").write_bytes(b"half")
    untouched = {r[0]: r for r in mirror.snapshot()[0] if r[0] not in (gone, corrupt)}

    inventory = mirror.inventory()
    # Stored after the walk began, with no file: judged by the next audit, not this one.
    late = mirror.store([PHOTOS], write_files=False)[0]

    result = mirror.audit(inventory)
    assert {k: result[k] for k in ("files", "ok", "missing", "corrupt", "orphans")} == {
        "files": PHOTOS - 2 + 1,
        "ok": PHOTOS - 3,
        "missing": 1,
        "corrupt": 1,
        "orphans": 1,
    }
    assert (result["requeued"], result["unchecked"], result["stored"]) == (2, 1, PHOTOS)
    assert result["samples"]["orphans"] == [str(orphan.relative_to(mirror.root))]
    assert result["samples"]["missing"] == [image_path_of(sql, gone)]
    assert result["samples"]["corrupt"] == [image_path_of(sql, corrupt)]
    assert "1 missing, 1 corrupt, 1 orphans; 2 requeued" in result["summary"]

    rows = {r[0]: r for r in mirror.snapshot()[0]}
    assert rows[gone][1:5] == ("pending", 0, 0, "storage audit: file missing")
    assert rows[corrupt][1:5] == ("pending", 0, 0, "storage audit: file corrupt")
    assert sql("SELECT image_id FROM stored_images WHERE image_id IN (%s, %s)", gone, corrupt) == []
    for image_id, row in untouched.items():
        if image_id != late:
            assert rows[image_id] == row, image_id  # not even updated_at moved
    assert orphan.exists()

    # Requeued photos are leased again by the queue, and stored again they are fine.
    assert mirror.store() == [gone, corrupt]
    mirror.path_of(late).parent.mkdir(parents=True, exist_ok=True)
    mirror.path_of(late).write_bytes(mirror.content(photo_id_of(sql, late)))
    second = mirror.audit(mirror.inventory())
    assert {k: second[k] for k in ("ok", "missing", "corrupt", "orphans", "requeued")} == {
        "ok": PHOTOS,
        "missing": 0,
        "corrupt": 0,
        "orphans": 1,
        "requeued": 0,
    }
    assert sql("SELECT COUNT(*) FROM storage_audits") == [(2,)]

    status = run_harvester("status", "--json", env=harvester_env(mirror.db_url))
    last = json.loads(status.stdout)["storage_audit"]
    assert (last["storage"], last["ok"], last["orphans"], last["requeued"]) == (
        "st-1",
        PHOTOS,
        1,
        0,
    )
    assert last["samples"]["orphans"] == [str(orphan.relative_to(mirror.root))]
    text = run_harvester("status", env=harvester_env(mirror.db_url)).stdout
    assert f"storage audit: {last['summary']}" in text


def image_path_of(sql, image_id: int) -> str:
    return image_path(photo_id_of(sql, image_id), "jpg")


def photo_id_of(sql, image_id: int) -> int:
    return sql("SELECT photo_id FROM images WHERE id = %s", image_id)[0][0]


def test_a_quick_audit_reuses_hashes_and_a_full_one_finds_silent_corruption(mirror, sql):
    stored = mirror.store()
    mirror.inventory()
    damaged = mirror.path_of(stored[2])
    stat = damaged.stat()
    damaged.write_bytes(bytes(stat.st_size))
    os.utime(damaged, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and mtime kept

    quick = mirror.audit(mirror.inventory(full=False), "--dry-run")
    assert (quick["corrupt"], quick["ok"]) == (0, PHOTOS)  # the old hash was reused
    full = mirror.audit(mirror.inventory(full=True))
    assert (full["corrupt"], full["requeued"]) == (1, 1)
    assert sql("SELECT state FROM images WHERE id = %s", stored[2]) == [("pending",)]


def test_a_dry_run_changes_nothing(mirror):
    stored = mirror.store()
    mirror.path_of(stored[0]).unlink()
    before = mirror.snapshot()
    result = mirror.audit(mirror.inventory(), "--dry-run")
    assert (result["missing"], result["requeued"], result["dry_run"]) == (1, 0, True)
    assert "dry run: 1 would be requeued" in result["summary"]
    assert mirror.snapshot() == before


def write_gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)
    return path


def test_a_bad_inventory_is_one_clear_error_and_changes_nothing(mirror, tmp_path):
    stored = mirror.store()
    mirror.path_of(stored[0]).unlink()
    good = mirror.inventory().read_bytes()
    text = gzip.decompress(good).decode()
    lines = text.splitlines(keepends=True)
    before = mirror.snapshot()
    bad = {
        "missing": (tmp_path / "nope.tsv.gz", "no inventory at"),
        "malformed": (
            write_gz(tmp_path / "bad.gz", "".join(lines[:3] + ["images/x.jpg\tten\t1\t-\n"])),
            "bad.gz:4: not path",
        ),
        "cut": (write_gz(tmp_path / "cut.gz", "".join(lines[:-1])), "ends early"),
        "truncated gzip": (tmp_path / "trunc.gz", "cannot read the inventory"),
        "not an inventory": (write_gz(tmp_path / "other.gz", "hello\n"), "not a storage inventory"),
        "counts differ": (
            write_gz(tmp_path / "count.gz", "".join(lines[:2] + lines[3:])),
            "the end line counts",
        ),
    }
    (tmp_path / "trunc.gz").write_bytes(good[: len(good) // 2])
    for name, (path, message) in bad.items():
        result = mirror.audit(path, check=False)
        assert result.returncode == 1, name
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            name,
            result.stderr,
        )
        assert "Traceback" not in result.stderr
    assert mirror.snapshot() == before


def test_odd_names_are_orphans_and_a_quick_walk_reuses_every_hash_in_walk_order(mirror):
    mirror.store()
    names = {  # on disk -> as reported (a name that is not UTF-8 shows U+FFFD)
        b"a/x.jpg": "images/a/x.jpg",
        b"a.b/y.jpg": "images/a.b/y.jpg",  # walked after a/, though "a.b" < "a/x" as text
        b"a.jpg": "images/a.jpg",
        b"odd\tname\\\xff.jpg": "images/odd\tname\\\ufffd.jpg",
        b"line\nbreak.jpg": "images/line\nbreak.jpg",
    }
    for name in names:
        path = os.path.join(os.fsencode(mirror.root / "images"), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"stray")
    mirror.inventory()
    quick = audit_module.write_inventory(
        str(mirror.root), str(mirror.work / "inventory.tsv.gz"), False, "st-1"
    )
    assert (quick["reused"], quick["hashed"]) == (PHOTOS + len(names), 0)
    result = mirror.audit(mirror.work / "inventory.tsv.gz")
    assert (result["ok"], result["orphans"], result["requeued"]) == (PHOTOS, len(names), 0)
    assert sorted(result["samples"]["orphans"]) == sorted(names.values())
