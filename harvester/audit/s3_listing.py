"""The bucket's side of `harvester audit-storage --s3`: one paged ListObjectVersions walk of
`images/`, written as LOAD DATA rows, and the copies that make a stored version latest again.

A listing gives each version's key, size, ETag (the hex MD5 of its bytes for a single PUT),
version id and whether it is the latest, and each delete marker; no SHA-256 (that takes a HEAD
per object). Versions of a key come newest first, so a row's place in the walk orders them:
the key's highest row number among its versions is its oldest version. An ETag that is not
32 hex digits (a multipart upload's "<md5>-<parts>") is written as unknown: the size decides.

The identity needs List and Read (the walk) and Write (the restoring copy) on the bucket; Write
only adds versions, as the bucket is versioned with object lock.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from ccmirror_common.layout import IMAGE_PATH
from ccmirror_common.progress import ProgressLine
from ccmirror_common.s3_errors import s3_errors

if TYPE_CHECKING:
    from harvester.config import StorageSettings

PREFIX = "images/"
PAGE_KEYS = 1000  # S3's most per ListObjectVersions page
MAX_PHOTO_ID = 2**64 - 1
KEY_CHARS = 1024  # audit_objects.object_key; longer keys are only strays: named, never matched
MD5_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')
NULL = "\\N"  # LOAD DATA's NULL
# Backslash, tab and newline as LOAD DATA's default ESCAPED BY '\\' reads them back.
ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n"})


class StorageAuditError(RuntimeError):
    """The bucket could not be walked or a photo not restored; the message says which and why
    (never a secret). Nothing was written to the catalog."""


@dataclass
class Listing:
    """What the walk found: every version and delete marker under `images/`."""

    rows: int = 0  # versions + delete markers, in walk order
    versions: int = 0
    markers: int = 0
    objects: int = 0  # keys whose latest is a version (not a delete marker)
    bytes: int = 0  # of those latest versions


def client_for(storage: StorageSettings):
    """A boto3 S3 client for the settings; StorageAuditError naming the first missing one."""
    for name in ("endpoint", "bucket", "access_key", "secret_key"):
        if not getattr(storage, name):
            raise StorageAuditError(
                f"storage.{name} is not set (harvester.yaml, or"
                f" CCMIRROR_STORAGE_{name.upper()}): the S3 audit needs the bucket and a key"
            )
    import boto3  # only the S3 audit needs it: `harvester` without the extra still runs
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=storage.endpoint,
        region_name=storage.region or "us-east-1",
        aws_access_key_id=storage.access_key,
        aws_secret_access_key=storage.secret_key,
        config=Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"},  # SeaweedFS and Spaces both take path style
            # Threads share the client (restore-photos: 16, the adoption's readers: 8); at
            # botocore's default of 10 every extra one's connection is dropped with a warning.
            max_pool_connections=32,
        ),
    )


def walk_versions(
    client, storage: StorageSettings, out: TextIO, progress: ProgressLine | None = None
) -> Listing:
    """Write one LOAD DATA row per version and delete marker under `images/` to `out`:
    photo id or \\N, key, version id, is latest, is marker, bytes or \\N, md5 hex or \\N."""
    listing = Listing()
    started = time.monotonic()
    pages = client.get_paginator("list_object_versions").paginate(
        Bucket=storage.bucket, Prefix=PREFIX, PaginationConfig={"PageSize": PAGE_KEYS}
    )
    with s3_errors(f"cannot list s3://{storage.bucket} at {storage.endpoint}", StorageAuditError):
        for page in pages:
            for version in page.get("Versions") or ():
                out.write(_row(version, listing, marker=False))
            for marker in page.get("DeleteMarkers") or ():
                out.write(_row(marker, listing, marker=True))
            if progress is not None and progress.due():
                rate = listing.rows / max(time.monotonic() - started, 1e-6)
                progress.show(
                    f"listing s3://{storage.bucket}/{PREFIX}: {listing.versions:,} versions,"
                    f" {listing.markers:,} delete markers, {listing.objects:,} objects"
                    f" ({rate:,.0f}/s)"
                )
    return listing


def _row(entry: dict, listing: Listing, marker: bool) -> str:
    key = entry["Key"]
    latest = bool(entry.get("IsLatest"))
    listing.rows += 1
    if marker:
        listing.markers += 1
        size = md5 = NULL
    else:
        listing.versions += 1
        size = str(int(entry.get("Size") or 0))
        etag = MD5_ETAG.match(entry.get("ETag") or "")
        md5 = etag[1].lower() if etag else NULL
        if latest:
            listing.objects += 1
            listing.bytes += int(size)
    layout = IMAGE_PATH.match(key)  # else only an orphan
    photo_id = int(layout[1]) if layout and int(layout[1]) <= MAX_PHOTO_ID else None
    version_id = str(entry.get("VersionId") or "null")  # "null": written before versioning
    return (
        f"{NULL if photo_id is None else photo_id}\t{_field(key)}\t{_field(version_id)}"
        f"\t{int(latest)}\t{int(marker)}\t{size}\t{md5}\n"
    )


def _field(text: str) -> str:
    return text[:KEY_CHARS].translate(ESCAPES)


def restore_version(client, storage: StorageSettings, key: str, version_id: str) -> None:
    """Copy a version of `key` onto itself, so that it is the latest again (a new version
    with its bytes; the later versions and delete markers stay, as object lock wants)."""
    source = {"Bucket": storage.bucket, "Key": key, "VersionId": version_id}
    with s3_errors(
        f"cannot restore s3://{storage.bucket}/{key} (version {version_id})", StorageAuditError
    ):
        client.copy_object(Bucket=storage.bucket, Key=key, CopySource=source)
