"""What a directory of an old layout holds: which photo each file claims to be, and whether its
bytes are a whole image.

Two layouts are read, in any mix, at any depth below the directory given:

    .../<photo_id>_<secret>[_<size>].<ext>   the old system's rsync target: its droplets kept
                                             the name of the Flickr URL they fetched
                                             (farm{f}.staticflickr.com/{server}/
                                             {id}_{secret}_o.{ext}), so the secret, size and
                                             format must be those of a URL the catalog holds
                                             for the photo (job.py matches them)
    .../<aa>/<bb>/<photo_id>.<ext>           this project's rsync storage (images/ below its
                                             root, ccmirror_common/layout.py): aa/bb must be
                                             the photo id's own

Anything else (a manifest, a stray, a photo's name in another photo's directory, a symlink)
claims no photo: the job lists it, never uploads it.

A file is a whole image when its magic bytes say JPEG, PNG, GIF or WebP, its name's format is
that one, and it ends as that format ends (JPEG's EOI marker, PNG's IEND chunk, GIF's
trailer, WebP's RIFF length): a copy cut short by a full disk or a killed rsync is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ccmirror_common.layout import IMAGE_EXTENSIONS, image_path
from downloader.verify import MAGIC_BYTES_NEEDED, sniff_ext

# Flickr's file names: <id>_<secret>[_<size letter(s)>].<ext> (no size: the 500 px default).
FLICKR_NAME = re.compile(r"^(\d{1,20})_([0-9a-f]{1,40})(?:_([a-z0-9]{1,3}))?\.([A-Za-z]{3,4})$")
CCMIRROR_NAME = re.compile(r"^(\d{1,20})\.([a-z]{3,4})$")
MAX_PHOTO_ID = 2**64 - 1  # images.photo_id is BIGINT UNSIGNED
EXTENSION_ALIASES = {"jpeg": "jpg"}
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and its (fixed) CRC


class TreeError(RuntimeError):
    """The directory cannot be imported at all (missing, not a directory, unreadable)."""


@dataclass(frozen=True)
class Claim:
    """A file whose place and name say which photo it is."""

    relative: str  # below the tree's root, with /
    photo_id: int
    ext: str  # its name's format, lower case, jpeg as jpg
    layout: str  # "flickr" (the old system's names) or "ccmirror" (images/<aa>/<bb>/)
    secret: str | None = None  # the old system's names only
    size: str | None = None  # Flickr's size suffix ("o", "b", ...); None: the default size


@dataclass(frozen=True)
class FlickrName:
    """What a Flickr image URL's file name says: the photo's secret, size and format."""

    photo_id: int
    secret: str
    size: str | None
    ext: str


@dataclass(frozen=True)
class Content:
    """A file's bytes, judged."""

    size: int
    sha256: str = ""
    md5: str = ""
    problem: str | None = None  # why it is not a whole image of its name's format


def checked_root(directory: str | Path) -> Path:
    """The tree's root, resolved; TreeError when it cannot be walked."""
    root = Path(directory)
    if not root.exists():
        raise TreeError(f"no such directory: {directory}")
    if not root.is_dir():
        raise TreeError(f"not a directory: {directory}")
    try:
        with os.scandir(root) as entries:
            next(entries, None)
    except OSError as exc:
        raise TreeError(f"cannot read {directory}: {exc.strerror or exc}") from None
    return root.resolve()


def walk(root: Path, on_error: Callable[[str, str], None]) -> Iterator[str]:
    """Every regular file below `root`, relative, in a stable order (names sorted); symlinks
    and special files are told to `on_error` with why, as are directories that cannot be
    read (their files are not seen)."""

    def unreadable(error: OSError) -> None:
        where = Path(error.filename or root)
        relative = where.relative_to(root).as_posix() if where != root else "."
        on_error(relative, f"unreadable directory: {error.strerror or error}")

    for directory, subdirectories, files in os.walk(root, onerror=unreadable):
        subdirectories.sort()
        base = Path(directory)
        for name in sorted(files):
            path = base / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                on_error(relative, "a symlink (only regular files are imported)")
            elif not path.is_file():
                on_error(relative, "not a regular file")
            else:
                yield relative


def claim(relative: str) -> Claim | None:
    """The photo a file's place and name claim it is; None when they fit neither layout."""
    parts = relative.split("/")
    name = parts[-1]
    found = CCMIRROR_NAME.match(name)
    if found and int(found[1]) <= MAX_PHOTO_ID and found[2] in IMAGE_EXTENSIONS:
        photo_id, ext = int(found[1]), found[2]
        if image_path(photo_id, ext).split("/")[1:] == parts[-3:]:
            return Claim(relative, photo_id, ext, "ccmirror")
        return None
    flickr = flickr_name(name)
    if flickr is None:
        return None
    return Claim(relative, flickr.photo_id, flickr.ext, "flickr", flickr.secret, flickr.size)


def flickr_name(name: str) -> FlickrName | None:
    """A Flickr image file name (or URL: its last part) read; None when it is not one."""
    found = FLICKR_NAME.match(name.rsplit("/", 1)[-1].split("?", 1)[0])
    if not found or int(found[1]) > MAX_PHOTO_ID:
        return None
    ext = EXTENSION_ALIASES.get(found[4].lower(), found[4].lower())
    if ext not in IMAGE_EXTENSIONS:
        return None
    return FlickrName(int(found[1]), found[2], found[3], ext)


def examine(path: Path, ext: str, max_bytes: int) -> Content:
    """`path`'s size, digests and, when it is not a whole image of format `ext`, why.
    OSError when it cannot be read."""
    size = path.stat().st_size
    if size > max_bytes:
        return Content(size, problem=f"{size:,} bytes, over the {max_bytes:,} an image may have")
    data = path.read_bytes()
    content = Content(
        len(data),
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
    )
    problem = image_problem(data, ext)
    if problem:
        return Content(content.size, content.sha256, content.md5, problem)
    return content


def image_problem(data: bytes, ext: str) -> str | None:
    """Why `data` is not a whole image of format `ext`; None when it is."""
    found = sniff_ext(data[:MAGIC_BYTES_NEEDED])
    if found is None:
        return "not an image (no JPEG, PNG, GIF or WebP signature)"
    if found != ext:
        return f"a {found} image named .{ext}"
    if not _ends_whole(data, found):
        return f"truncated: the {found} does not end as one does"
    return None


def _ends_whole(data: bytes, ext: str) -> bool:
    if ext == "jpg":
        return data.rstrip(b"\x00").endswith(b"\xff\xd9")  # some cameras pad after EOI
    if ext == "png":
        return data.endswith(PNG_END)
    if ext == "gif":
        return data.endswith(b";")
    # WebP: RIFF's little-endian length counts what follows its first 8 bytes.
    return len(data) >= 12 and int.from_bytes(data[4:8], "little") + 8 <= len(data)
