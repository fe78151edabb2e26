"""The mirror check against a real catalog (MariaDB, migrations applied) and a storage tree:
a mirror made the way the fleet makes one (photos leased and reported through the queue's
own code, files in the storage layout, manifests written by the downloader's journal) passes;
each way of being wrong is reported by its name, and by that name only. (The same mirror in an
S3 bucket: test_mirror_check_s3.py.)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccmirror_common.layout import image_path
from downloader.spool import Spool
from harvester.db import connect
from harvester.queue import leases
from lab.mission.mirror_check import (
    PROBLEMS,
    GroundTruth,
    MirrorMismatch,
    assert_mirror,
    check_mirror,
    error_head,
)
from lab.sims.flickr.tables import LICENSES_2025
from lab.sims.image_host.server import jpeg_bytes, png_bytes

IMAGE_SIZE = 1500
FIRST_ID = 52_000_000_000
PHOTOS = 30
# What the image host was told for some photos, and what the fetcher then reported for them.
FAULTS = {
    FIRST_ID + 3: "404",
    FIRST_ID + 4: "placeholder",
    FIRST_ID + 5: "html",
    FIRST_ID + 6: "500",
    FIRST_ID + 7: "png",
    FIRST_ID + 8: {"mode": "503", "times": 1},  # served on the next attempt
}
REPORTED = {
    FIRST_ID + 3: ("gone", "HTTP 404"),
    FIRST_ID + 4: ("gone", "photo unavailable (redirected to /photo_unavailable.png)"),
    FIRST_ID + 5: ("bad", "not an image: Content-Type text/html"),
    FIRST_ID + 6: ("retry", "HTTP 500"),
}
NOT_CC = FIRST_ID + PHOTOS  # in the catalog, withdrawn: not in the ground truth


@dataclass
class Mirror:
    db_url: str
    root: Path
    truth: GroundTruth

    def check(self):
        with connect(self.db_url, autocommit=True) as conn:
            return check_mirror(conn, self.root, self.truth)

    def sql(self, query: str, *args) -> list[tuple]:
        with connect(self.db_url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(query, args or None)
            return list(cur.fetchall())

    def file(self, photo_id: int, ext: str = "jpg") -> Path:
        return self.root / image_path(photo_id, ext)

    def manifests(self) -> list[Path]:
        return sorted((self.root / "manifests").rglob("*.jsonl"))


@pytest.fixture
def mirror(db_url: str, tmp_path: Path) -> Mirror:
    return make_mirror(db_url, tmp_path)


def make_mirror(db_url: str, tmp_path: Path) -> Mirror:
    """A complete, correct mirror of PHOTOS ground-truth photos."""
    root = tmp_path / "storage"
    fill_catalog(db_url)
    with connect(db_url) as conn:
        now = datetime.now(UTC).replace(tzinfo=None)
        lease = leases.lease(conn, "dl-1", 1000, 600, now)
        conn.commit()
        items = json.loads(lease.items_json)
        results = [fetch_result(item, root) for item in items]
        reports = [leases.Report(**report_of(result)) for result in results]
        leases.complete(conn, "dl-1", lease.id, reports, max_attempts=1, now=now)
        conn.commit()
    journal = Spool(tmp_path / "spool").begin(lease.id, now.isoformat(), items)
    journal.record(results)
    manifest = journal.write_manifest()
    (root / manifest).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(journal.files / journal.uploads()[manifest], root / manifest)
    ids = range(FIRST_ID, FIRST_ID + PHOTOS)
    return Mirror(db_url, root, GroundTruth(ids, FAULTS, image_size=IMAGE_SIZE))


def fill_catalog(db_url: str) -> None:
    licenses = [(i, name, url, i not in (0, 7, 8)) for i, name, url in LICENSES_2025]
    photos = [
        (
            pid,
            f"{pid % 7}@N0{pid % 3}",
            f"Zoë O'Brien {pid % 5}",
            f"sunset 東京 #{pid}",
            4 if pid != NOT_CC else 0,
            f"https://www.flickr.com/photos/{pid % 7}@N00/{pid}/",
            f"https://live.staticflickr.com/65535/{pid}_abc_o.jpg",
            "o",
            1_500_000_000 + pid % 1000,
            "pending" if pid != NOT_CC else "withdrawn",
        )
        for pid in range(FIRST_ID, FIRST_ID + PHOTOS + 1)
    ]
    with connect(db_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO licenses (id, name, url, is_cc) VALUES (%s,%s,%s,%s)", licenses
        )
        cur.executemany(
            "INSERT INTO images (photo_id, owner, owner_name, title, license_id, page_url,"
            " image_url, image_size, uploaded_at, sources, data_source, state)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,'timeslice','timeslice',%s)",
            photos,
        )
        conn.commit()


def fetch_result(item: dict, root: Path) -> dict:
    """What the fetcher records for one leased photo: a stored file, or its failure."""
    pid = item["photo_id"]
    if pid in REPORTED:
        result, error = REPORTED[pid]
        return {"id": item["id"], "photo_id": pid, "result": result, "error": error}
    data, ext = (png_body(pid), "png") if FAULTS.get(pid) == "png" else (jpeg(pid), "jpg")
    path = image_path(pid, ext)
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    return {
        "id": item["id"],
        "photo_id": pid,
        "result": "stored",
        "sha256": sha256,
        "bytes": len(data),
        "path": path,
        "url": item["image_url"],
    }


def report_of(result: dict) -> dict:
    keep = ("id", "result", "sha256", "bytes", "path", "error")
    return {key: result[key] for key in keep if key in result}


def jpeg(photo_id: int) -> bytes:
    return jpeg_bytes(photo_id, IMAGE_SIZE)


def png_body(photo_id: int) -> bytes:
    return png_bytes(photo_id)


def test_a_correct_mirror_passes_with_its_counts(mirror: Mirror) -> None:
    report = assert_mirror_of(mirror)
    assert report.ok, report.problem_text()
    assert report.truth_photos == PHOTOS
    assert report.states == {"stored": PHOTOS - 4, "gone": 2, "failed": 2}
    assert report.files == PHOTOS - 4
    assert report.manifest_lines == PHOTOS - 4
    assert report.stored_bytes == sum(
        len(jpeg(pid)) if FAULTS.get(pid) != "png" else len(png_body(pid))
        for pid in range(FIRST_ID, FIRST_ID + PHOTOS)
        if pid not in REPORTED
    )
    assert report.failed_by_class == {"bad: not an image": 1, "retry: HTTP 500": 1}
    assert report.gone_by_reason == {"gone: HTTP 404": 1, "gone: photo unavailable": 1}
    summary = "\n".join(report.summary_lines())
    assert "stored 26" in summary and "mirror check: OK" in summary, summary


def assert_mirror_of(mirror: Mirror):
    with connect(mirror.db_url, autocommit=True) as conn:
        return assert_mirror(conn, mirror.root, mirror.truth)


# Each wrongness: what it does to a correct mirror, and the one problem kind it must raise.
def missing_file(m: Mirror) -> None:
    m.file(FIRST_ID + 10).unlink()


def second_copy(m: Mirror) -> None:
    shutil.copy(m.file(FIRST_ID + 11), m.file(FIRST_ID + 11, "png"))


def bad_checksum(m: Mirror) -> None:
    m.file(FIRST_ID + 12).write_bytes(jpeg(FIRST_ID + 13))  # a valid JPEG, another photo's


def catalog_checksum_of_other_bytes(m: Mirror) -> None:
    """File and catalog agree, but neither is what the image host served: bad_checksum."""
    other = jpeg(FIRST_ID + 99)
    m.file(FIRST_ID + 12).write_bytes(other)
    m.sql(
        "UPDATE stored_images s JOIN images i ON i.id = s.image_id"
        " SET s.sha256 = UNHEX(%s), s.bytes = %s WHERE i.photo_id = %s",
        hashlib.sha256(other).hexdigest(),
        len(other),
        FIRST_ID + 12,
    )


def missing_manifest_line(m: Mirror) -> None:
    rewrite_manifest(m, lambda line: None if line["photo_id"] == FIRST_ID + 14 else line)


def manifest_mismatch(m: Mirror) -> None:
    def edit(line: dict) -> dict:
        return {**line, "owner_name": "someone else"} if line["photo_id"] == FIRST_ID + 15 else line

    rewrite_manifest(m, edit)


def bad_manifest_line(m: Mirror) -> None:
    with open(m.manifests()[0], "a", encoding="utf-8") as out:
        out.write('{"path": "images/no/photo/id.jpg"}\n')


def unsettled(m: Mirror) -> None:
    m.sql(
        "UPDATE images SET state = 'pending', last_error = NULL WHERE photo_id = %s", FIRST_ID + 6
    )


def not_in_catalog(m: Mirror) -> None:
    m.truth = GroundTruth([*m.truth.photo_ids, FIRST_ID + 500], FAULTS, IMAGE_SIZE)


def wrong_outcome(m: Mirror) -> None:
    """The image host served 404, the catalog says the photo failed."""
    m.sql(
        "UPDATE images SET state = 'failed', last_error = 'retry: HTTP 404' WHERE photo_id = %s",
        FIRST_ID + 3,
    )


def wrong_class(m: Mirror) -> None:
    m.sql("UPDATE images SET last_error = 'bad: HTTP 500' WHERE photo_id = %s", FIRST_ID + 6)


def unexpected_file(m: Mirror) -> None:
    path = m.file(FIRST_ID + 3)  # a gone photo's file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg(FIRST_ID + 3))


def stray_file(m: Mirror) -> None:
    """Not a photo's name at all: also unexpected."""
    (m.root / "images" / "notes.txt").write_text("hello")


def misplaced_file(m: Mirror) -> None:
    """The catalog and the file agree, but not on the layout's path."""
    pid = FIRST_ID + 16
    wrong = f"images/00/00/{pid}.jpg"
    (m.root / wrong).parent.mkdir(parents=True, exist_ok=True)
    m.file(pid).rename(m.root / wrong)
    m.sql(
        "UPDATE stored_images s JOIN images i ON i.id = s.image_id SET s.path = %s"
        " WHERE i.photo_id = %s",
        wrong,
        pid,
    )
    rewrite_manifest(m, lambda line: {**line, "path": wrong} if line["photo_id"] == pid else line)


def no_stored_record(m: Mirror) -> None:
    m.sql(
        "DELETE s FROM stored_images s JOIN images i ON i.id = s.image_id WHERE i.photo_id = %s",
        FIRST_ID + 17,
    )


def not_in_truth(m: Mirror) -> None:
    m.truth = GroundTruth(
        [pid for pid in m.truth.photo_ids if pid != FIRST_ID + 18], FAULTS, IMAGE_SIZE
    )


def rewrite_manifest(m: Mirror, edit: Callable[[dict], dict | None]) -> None:
    for path in m.manifests():
        lines = [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines()]
        kept = [edited for edited in map(edit, lines) if edited is not None]
        path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in kept))


WRONGS = {
    missing_file: {"missing_file"},
    second_copy: {"second_copy"},
    bad_checksum: {"bad_checksum"},
    catalog_checksum_of_other_bytes: {"bad_checksum"},
    missing_manifest_line: {"missing_manifest_line"},
    manifest_mismatch: {"manifest_mismatch"},
    bad_manifest_line: {"bad_manifest_line"},
    unsettled: {"unsettled"},
    not_in_catalog: {"not_in_catalog"},
    wrong_outcome: {"wrong_outcome"},
    wrong_class: {"wrong_class"},
    unexpected_file: {"unexpected_file"},
    stray_file: {"unexpected_file"},
    misplaced_file: {"misplaced_file"},
    no_stored_record: {"no_stored_record"},
    not_in_truth: {"not_in_truth"},
}


@pytest.mark.parametrize("wrong", WRONGS, ids=[wrong.__name__ for wrong in WRONGS])
def test_each_wrongness_is_reported_by_its_name(mirror: Mirror, wrong) -> None:
    wrong(mirror)
    report = mirror.check()
    found = {kind for kind, findings in report.problems.items() if findings}
    assert found == WRONGS[wrong], report.problem_text()
    assert not report.ok and "mirror check: FAILED" in report.summary_lines()
    with pytest.raises(MirrorMismatch) as raised:
        assert_mirror_of(mirror)
    for kind in WRONGS[wrong]:
        assert f"{kind} (1): {PROBLEMS[kind]}" in str(raised.value)


TAKEN_DOWN = FIRST_ID + 12  # stored, then taken down


def take_down(m: Mirror, *, move_file: bool = True) -> None:
    """What `harvester takedown add` and `apply` leave: the photo `taken_down`, its stored
    record gone, its file moved out of `images/` (in a bucket, to `takedown/`)."""
    m.sql("UPDATE images SET state = 'taken_down' WHERE photo_id = %s", TAKEN_DOWN)
    m.sql(
        "DELETE s FROM stored_images s JOIN images i ON i.id = s.image_id WHERE i.photo_id = %s",
        TAKEN_DOWN,
    )
    if move_file:
        m.file(TAKEN_DOWN).unlink()


def with_takedown(m: Mirror) -> Mirror:
    truth = m.truth
    taken = GroundTruth(truth.photo_ids, truth.faults, truth.image_size, taken_down={TAKEN_DOWN})
    return replace(m, truth=taken)


def test_a_photo_taken_down_as_the_truth_says_passes(mirror: Mirror) -> None:
    take_down(mirror)
    report = with_takedown(mirror).check()
    assert report.ok, report.problem_text()
    assert report.states["taken_down"] == 1 and report.states["stored"] == PHOTOS - 5


def test_a_takedown_the_truth_lacks_or_one_whose_file_stayed_is_a_problem(mirror: Mirror) -> None:
    take_down(mirror, move_file=False)
    unknown = mirror.check()  # the truth expects it stored
    assert {kind for kind, found in unknown.problems.items() if found} == {
        "wrong_outcome", "unexpected_file",
    }, unknown.problem_text()  # fmt: skip
    left = with_takedown(mirror).check()
    assert {kind for kind, found in left.problems.items() if found} == {"unexpected_file"}


def test_partial_transfers_are_noted_not_failed(mirror: Mirror) -> None:
    partial = mirror.root / "images" / ".~tmp~" / f"{FIRST_ID}.jpg"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\xff\xd8\xff half")
    report = mirror.check()
    assert report.ok, report.problem_text()
    assert report.notes == ["1 partial transfers left in .~tmp~ directories"]


def test_unknown_fault_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="does not know: teapot"):
        GroundTruth([1], {1: "teapot"})


def test_error_heads_group_alike_failures() -> None:
    assert error_head("retry: timeout (total 2s, read 1s)") == "retry: timeout"
    assert error_head("bad: not an image: starts with 3c21") == "bad: not an image"
    assert error_head(None) == "(no reason)"
