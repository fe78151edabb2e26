"""Adopting an existing tree (#20) in the e2e's lab: after the harvest and before the download,
a directory of 10,000 files of the old layouts on db-1 (lab/mission/old_tree.py's names):
photos of the ground truth with the image host's own bytes, in the old system's layout (the
Flickr file name of the catalog's URL) and this project's rsync layout; truncated copies of
others; and images of ids the catalog does not have. `salt-run storage.import` stores exactly
the good, known ones, a second run changes nothing, and the download then fetches none of
them (the truncated ones it fetches); the mirror check finds them with their manifest lines."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ccmirror_common.layout import image_path
from lab.mission import stages as mission
from lab.sims.image_host import service as image_service
from lab.sims.image_host.server import jpeg_bytes

TREE = "/srv/old-mirror"  # on db-1, where the database minion's import reads it
FILES = 10_000
GOOD, TRUNCATED = 400, 40
FIRST_UNKNOWN = 9_000_000_000


def write_tree(m: mission.Mission) -> dict[str, list[int]]:
    """The tree under db-1's TREE; the photo ids of each kind."""
    with m.catalog() as conn, conn.cursor() as cur:
        cur.execute("SELECT photo_id, image_url FROM images WHERE state = 'pending' ORDER BY id")
        pending = [(int(pid), url) for pid, url in cur.fetchall()]
    plain = [(pid, url) for pid, url in pending
             if pid not in m.faults and url.endswith(".jpg")]  # fmt: skip
    good, truncated = plain[:GOOD], plain[GOOD : GOOD + TRUNCATED]
    root = Path(f"/proc/{m.state().droplets['db-1'].pid}/root{TREE}")
    for n, (pid, url) in enumerate(good):
        name = PurePosixPath(urlsplit(url).path).name  # <id>_<secret>_<size>.jpg
        relative = f"old/farm{pid % 9 + 1}/{pid % 997}/{name}" if n % 2 else image_path(pid, "jpg")
        write(root / relative, jpeg_bytes(pid, image_service.IMAGE_SIZE))
    for pid, _ in truncated:
        write(root / image_path(pid, "jpg"), jpeg_bytes(pid, image_service.IMAGE_SIZE)[:-40])
    for n in range(FILES - len(good) - len(truncated)):
        write(root / image_path(FIRST_UNKNOWN + n, "jpg"), jpeg_bytes(FIRST_UNKNOWN + n, 200))
    return {"good": [pid for pid, _ in good], "truncated": [pid for pid, _ in truncated]}


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def import_old_tree(m: mission.Mission) -> dict:
    """The tree written, imported, imported again; the image host's counts before the
    download (every photo of the tree is judged against them after it)."""
    m.show(f"    storage.import of an old tree of {FILES:,} files on db-1")
    ids = write_tree(m)
    first = m.salt_run("storage.import", f"path={TREE}")
    again = m.salt_run("storage.import", f"path={TREE}")
    return {**ids, "first": first, "again": again,
            "requests before": image_service.stats(m.config)["requests"]}  # fmt: skip


def fetched_since(m: mission.Mission, imported: dict, photos: list[int]) -> list[int]:
    """Which of `photos` the image host served since the import."""
    now, before = image_service.stats(m.config)["requests"], imported["requests before"]
    return [pid for pid in photos if now.get(str(pid), 0) > before.get(str(pid), 0)]
