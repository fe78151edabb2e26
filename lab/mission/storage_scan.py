"""What the mirror check reads from storage, whichever storage it is: the objects under
`images/` by photo id, the manifest lines under `manifests/`, and the bytes of a photo.

    reader = FileTree(root)            # a storage root on disk (the rsync target's)
    reader = Bucket(client, "images")  # an S3 bucket (lab/mission/bucket_scan.py)
    scan = reader.scan()
    digests = reader.digests(["images/34/12/52000001234.jpg", ...])  # path -> (sha256, size)

A reader gives one StorageScan (what is there, and what is wrong with the shape of it) and,
for the paths the check asks, the sha256 and size of the current bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ccmirror_common.layout import IMAGE_EXTENSIONS

PROBE_DIR = "manifests/probe"  # `downloader check-storage` writes here over rsync; no photo's
IMAGE_NAME = re.compile(r"^(\d+)\.(" + "|".join(IMAGE_EXTENSIONS) + r")$")


@dataclass
class StorageScan:
    label: str  # where storage was read: a directory, or s3://bucket at an endpoint
    files: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[str] = field(default_factory=list)  # no photo's name, or outside the layout
    partials: list[str] = field(default_factory=list)  # rsync's leftovers of a cut transfer
    manifest_lines: dict[int, list[dict]] = field(default_factory=lambda: defaultdict(list))
    bad_manifest_lines: list[str] = field(default_factory=list)
    manifest_count: int = 0
    # A bucket's history, per photo key: "<key>: <why>" when the current version's bytes are
    # not the first version's; keys whose latest version is a delete marker.
    overwritten: dict[str, str] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    # Photo keys a takedown moved to `takedown/<key>` (harvester/takedown/storage.py).
    taken_down: set[str] = field(default_factory=set)
    objects: int = 0  # current objects (files) read, partials aside
    bytes: int = 0  # of those objects
    versions: int = 0  # object versions, current or not (a file tree: one per file)
    delete_markers: int = 0

    def add_object(self, key: str) -> None:
        """A current image object at `key` (relative to the root): by photo id, or unexpected."""
        match = IMAGE_NAME.match(key.rsplit("/", 1)[-1])
        if match:
            self.files[int(match.group(1))].append(key)
        else:
            self.unexpected.append(key)

    def add_manifest(self, key: str, text: str) -> None:
        """The lines of one manifest (JSONL): by photo id, or bad."""
        for number, line_text in enumerate(text.splitlines(), 1):
            if not line_text.strip():
                continue
            try:
                line = json.loads(line_text)
                pid = int(line["photo_id"])
            except (ValueError, KeyError, TypeError):
                self.bad_manifest_lines.append(f"{key}:{number}: {line_text[:120]}")
                continue
            self.manifest_lines[pid].append(line)
            self.manifest_count += 1


Digest = tuple[str, int]  # sha256 hex, size in bytes


class StorageReader(Protocol):
    def scan(self) -> StorageScan: ...

    def digests(self, paths: Iterable[str]) -> dict[str, Digest]:
        """The sha256 and size of each path's current bytes."""
        ...


def digest_of(data: bytes) -> Digest:
    return hashlib.sha256(data).hexdigest(), len(data)


@dataclass(frozen=True)
class FileTree:
    """A storage root on disk, as the rsync target writes it."""

    root: Path

    def scan(self) -> StorageScan:
        """Every file under `images/` by photo id, and every manifest line under `manifests/`."""
        scan = StorageScan(str(self.root))
        for rel, is_partial in walk_files(self.root, "images"):
            if is_partial:
                scan.partials.append(rel)
                continue
            self._count(scan, rel)
            scan.add_object(rel)
        for rel, is_partial in walk_files(self.root, "manifests"):
            if is_partial or rel.startswith(PROBE_DIR + "/") or not rel.endswith(".jsonl"):
                continue
            self._count(scan, rel)
            scan.add_manifest(rel, (self.root / rel).read_text(encoding="utf-8"))
        return scan

    def digests(self, paths: Iterable[str]) -> dict[str, Digest]:
        return {path: digest_of((self.root / path).read_bytes()) for path in paths}

    def _count(self, scan: StorageScan, rel: str) -> None:
        scan.objects += 1
        scan.versions += 1
        scan.bytes += (self.root / rel).lstat().st_size


def walk_files(root: Path, top: str) -> Iterator[tuple[str, bool]]:
    """(path relative to `root`, whether it is rsync's partial data) of every file below
    `root/top`, without following links. rsync's `--delay-updates` keeps a cut transfer's
    data in `.~tmp~/`, and a transfer in progress writes a dot-file beside the target."""
    base = root / top
    for directory, dirnames, filenames in os.walk(base):
        rel_dir = Path(directory).relative_to(root).as_posix()
        partial_dir = "/.~tmp~" in f"/{rel_dir}"
        for name in filenames + [d for d in dirnames if (Path(directory) / d).is_symlink()]:
            yield f"{rel_dir}/{name}", partial_dir or name.startswith(".")
