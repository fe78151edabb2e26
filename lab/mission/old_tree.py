"""A directory of the old layouts for `harvester import-tree` (tests and bench/import_tree.py):
tiny valid JPEGs of catalog photos filled by `lab.mission.catalog_images.fill_images` (image
URL `<photo_id>_def_o.jpg`, fallback `<photo_id>_def_b.jpg`), in both layouts, with the
faults an operator's real tree has: files that are not images, truncated copies, a PNG named
.jpg, a secret the catalog does not know, ids the catalog does not have, and strays."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ccmirror_common.layout import image_path
from lab.mission.catalog_images import FIRST_PHOTO_ID
from lab.sims.image_host.server import jpeg_bytes, placeholder_png

SECRET = "def"  # fill_images's URLs
PHOTO_BYTES = 200  # tiny: the import's cost is per file, not per byte


@dataclass
class OldTree:
    """What was written, by the catalog id (seq of fill_images) of each photo."""

    root: Path
    good: dict[int, Path] = field(default_factory=dict)  # seq -> the file that must be stored
    files: int = 0

    def write(self, relative: str, data: bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files += 1
        return path


def photo_id(seq: int) -> int:
    return FIRST_PHOTO_ID + seq


def photo_bytes(seq: int) -> bytes:
    return jpeg_bytes(photo_id(seq), PHOTO_BYTES)


def old_system_name(seq: int, size: str = "o", secret: str = SECRET, pid: int = 0) -> str:
    """As the old system's droplets kept a Flickr URL's file: farm/server directories."""
    pid = pid or photo_id(seq)
    return f"old/farm{pid % 9 + 1}/{pid % 997}/{pid}_{secret}_{size}.jpg"


def rsync_name(seq: int, pid: int = 0) -> str:
    """This project's rsync storage: images/<aa>/<bb>/<photo_id>.jpg below its root."""
    return image_path(pid or photo_id(seq), "jpg")


def write_good(tree: OldTree, seqs: Iterable[int], layout: str, size: str = "o") -> None:
    for seq in seqs:
        name = old_system_name(seq, size) if layout == "old" else rsync_name(seq)
        tree.good[seq] = tree.write(name, photo_bytes(seq))


def write_faults(tree: OldTree, seqs: Iterable[int], fault: str) -> None:
    """Files of catalog photos that must not be stored: `text` (not an image), `truncated`
    (a JPEG cut short), `png` (a PNG named .jpg), `secret` (a secret the catalog lacks)."""
    for seq in seqs:
        if fault == "text":
            tree.write(rsync_name(seq), b"<html>not found</html>" * 5)
        elif fault == "truncated":
            tree.write(old_system_name(seq), photo_bytes(seq)[:-40])
        elif fault == "png":
            tree.write(rsync_name(seq), placeholder_png())
        elif fault == "secret":
            tree.write(old_system_name(seq, secret="abc"), photo_bytes(seq))
        else:
            raise ValueError(f"unknown fault {fault!r}")


def write_unknown(tree: OldTree, count: int, first_unknown: int) -> None:
    """`count` images of ids the catalog does not have (half each layout), then strays."""
    for n in range(count):
        pid = first_unknown + n
        name = old_system_name(0, pid=pid) if n % 2 else rsync_name(0, pid=pid)
        tree.write(name, jpeg_bytes(pid, PHOTO_BYTES))


def write_strays(tree: OldTree, count: int) -> None:
    for n in range(count):
        if n % 2:
            tree.write(f"manifests/2016/03/{n % 28 + 1:02d}/{n}.jsonl", b'{"id": 1}\n')
        else:
            tree.write(f"notes/readme-{n}.txt", b"kept by hand")
