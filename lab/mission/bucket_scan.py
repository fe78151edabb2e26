"""The mirror check's S3 reader: the images bucket, read with a key that may list and read it
(the lab's admin identity; lab/mission/mirror_check.py `lab_storage`).

    reader = Bucket(client, "images", label="s3://images at http://10.213.0.12:8333")
    scan = reader.scan()

One paged ListObjectVersions walk of the whole bucket gives every key's versions (newest first,
as S3 lists them) and delete markers. A key whose latest entry is a version is an object:

- `images/...`: a photo's object, by photo id (or unexpected, as on a file tree). One with
  more than one version is `overwritten` when its current bytes are not its first version's
  (size and the ETag, the MD5 of a single PUT; both versions read when an ETag is no MD5). The
  same bytes pushed twice, or an overwrite the audit restored (the first version copied over
  the key), are not.
- `manifests/....jsonl`: a lease's manifest, read (its current version);
- `probes/...`: `downloader check-storage`'s probe objects: counted, nothing else;
- `catalog/...`: db-1's catalog backups (harvester/backup/store.py's prefix): counted, nothing
  else;
- `takedown/<key>`: a taken-down photo's object, moved out of `images/` (`harvester takedown
  apply`): `taken_down`, by its photo key; `takedown/requests/...`, the requests' records
  (harvester/takedown/ledger.py): skipped;
- anything else is unexpected.

A key whose latest entry is a delete marker is no object: a photo's is `deleted` (the check
names it a missing file). Objects are read with a pool of threads (a boto3 client is
thread-safe; its connection pool should be as large as `workers`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from botocore.client import BaseClient

from ccmirror_common.s3_errors import s3_errors
from lab.mission.storage_scan import Digest, StorageScan, digest_of

PAGE_KEYS = 1000  # S3's most per ListObjectVersions page
WORKERS = 16
CATALOG_BACKUPS = "catalog/"  # harvester/backup/store.py PREFIX: db-1's catalog backups
TAKEN_DOWN = "takedown/"  # harvester/takedown/storage.py: taken-down photos' objects, moved
TAKEDOWN_REQUESTS = "takedown/requests/"  # harvester/takedown/ledger.py: the requests' records
T = TypeVar("T")
MD5_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')


class BucketUnreadable(RuntimeError):
    """The bucket could not be listed or an object not read: which, and S3's reason."""


@dataclass
class KeyHistory:
    """One key's versions, newest first, and what its latest entry is."""

    versions: list[dict] = field(default_factory=list)  # ListObjectVersions' Versions entries
    current: dict | None = None  # the latest entry when it is a version
    markers: int = 0


@dataclass(frozen=True)
class Bucket:
    client: BaseClient
    name: str
    label: str = ""
    page_keys: int = PAGE_KEYS
    workers: int = WORKERS

    def scan(self) -> StorageScan:
        scan = StorageScan(self.label or f"s3://{self.name}")
        histories = self.histories()
        manifests = []
        for key, history in sorted(histories.items()):
            scan.versions += len(history.versions)
            scan.delete_markers += history.markers
            if history.current is None:
                if key.startswith("images/"):
                    scan.deleted.add(key)
                continue
            scan.objects += 1
            scan.bytes += int(history.current.get("Size") or 0)
            if key.startswith("images/"):
                scan.add_object(key)
                self.check_history(key, history, scan)
            elif key.startswith("manifests/") and key.endswith(".jsonl"):
                manifests.append(key)
            elif key.startswith(TAKEDOWN_REQUESTS):
                continue  # records of requests, not photos
            elif key.startswith(TAKEN_DOWN):
                scan.taken_down.add(key.removeprefix(TAKEN_DOWN))
            elif not key.startswith(("probes/", CATALOG_BACKUPS)):
                scan.unexpected.append(key)
        for key, data in zip(manifests, self.each(manifests, self.read), strict=True):
            scan.add_manifest(key, data.decode("utf-8", errors="replace"))
        return scan

    def digests(self, paths: Iterable[str]) -> dict[str, Digest]:
        """The current bytes' sha256 and size of each path, hashed as read: only the digests
        are kept."""
        paths = list(paths)
        return dict(zip(paths, self.each(paths, self.digest), strict=True))

    def digest(self, key: str) -> Digest:
        return digest_of(self.read(key))

    # ------------------------------------------------------------------------ the walk
    def histories(self) -> dict[str, KeyHistory]:
        """Every key's versions and delete markers, from a paged walk of the whole bucket."""
        histories: dict[str, KeyHistory] = {}
        pages = self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.name, PaginationConfig={"PageSize": self.page_keys}
        )
        with s3_errors(f"cannot list {self.label or self.name}", BucketUnreadable):
            for page in pages:
                for version in page.get("Versions") or ():
                    history = histories.setdefault(version["Key"], KeyHistory())
                    history.versions.append(version)
                    if version.get("IsLatest"):
                        history.current = version
                for marker in page.get("DeleteMarkers") or ():
                    histories.setdefault(marker["Key"], KeyHistory()).markers += 1
        return histories

    def check_history(self, key: str, history: KeyHistory, scan: StorageScan) -> None:
        """`overwritten` when the current version's bytes are not the first version's."""
        first, current = history.versions[-1], history.current
        if len(history.versions) < 2 or first is current or self.same_bytes(key, first, current):
            return
        scan.overwritten[key] = (
            f"{len(history.versions)} versions; first {describe(first)},"
            f" current {describe(current)}"
        )

    def same_bytes(self, key: str, first: dict, current: dict) -> bool:
        if int(first.get("Size") or 0) != int(current.get("Size") or 0):
            return False
        first_md5, current_md5 = md5_of(first), md5_of(current)
        if first_md5 and current_md5:
            return first_md5 == current_md5
        # A multipart upload's ETag is no MD5: read both versions.
        first_data, current_data = (self.read(key, v["VersionId"]) for v in (first, current))
        return digest_of(first_data) == digest_of(current_data)

    # ------------------------------------------------------------------------ reading
    def each(self, keys: list[str], read: Callable[[str], T]) -> list[T]:
        """`read` of each key, in order, `workers` at a time."""
        if not keys:
            return []
        with ThreadPoolExecutor(min(self.workers, len(keys))) as pool:
            return list(pool.map(read, keys))

    def read(self, key: str, version_id: str | None = None) -> bytes:
        extra = {"VersionId": version_id} if version_id else {}
        with s3_errors(f"cannot read s3://{self.name}/{key}", BucketUnreadable):
            return self.client.get_object(Bucket=self.name, Key=key, **extra)["Body"].read()


def md5_of(version: dict) -> str | None:
    match = MD5_ETAG.match(version.get("ETag") or "")
    return match.group(1).lower() if match else None


def describe(version: dict) -> str:
    etag = md5_of(version) or str(version.get("ETag") or "?").strip('"')
    return f"{int(version.get('Size') or 0):,} B etag {etag[:12]}.."
