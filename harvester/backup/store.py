"""The bucket's side of catalog backups: the backups under their prefix (newest last), a
stream uploaded as one object (S3 multipart, never a temporary file the catalog's size),
one downloaded as a stream, and the retention.

The backup key may read, list and write the prefix and nothing else (salt/storage/defaults.yaml,
`backup`). In the images bucket, versioned with object lock, the retention's delete is a
delete marker: the N newest backups stay listed, older ones are hidden, and their bytes stay
until the admin key removes those versions (a stolen db-1 key cannot destroy a backup).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING

from ccmirror_common.s3_errors import s3_errors
from harvester.audit.s3_listing import StorageAuditError, client_for

if TYPE_CHECKING:
    from harvester.config import StorageSettings

PREFIX = "catalog/"
# The databases dumped with the catalog (`also`: the filer store's), each beside it under
# <prefix>also/ with the catalog's stamp: the catalog's own listing stays the catalog's.
COMPANIONS = "also/"
SUFFIX = ".sql.zst"
# <prefix><database>-<UTC stamp to the microsecond>.sql.zst: the stamp sorts as the time does.
NAME = re.compile(r"^([A-Za-z0-9_]{1,64})-(\d{8}T\d{12}Z)\.sql\.zst$")
PREFIX_FORM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,200}/$")
PART_BYTES = 64 << 20  # multipart part size: 10,000 parts hold 640 GB


class BackupError(RuntimeError):
    """A backup or a restore that cannot be done; the message says why (never a secret).
    Raised before anything is changed, or after what was changed is undone."""


@dataclass(frozen=True)
class Backup:
    key: str
    bytes: int
    stamp: str  # the backup's UTC start, YYYYmmddTHHMMSSffffffZ
    database: str  # whose dump: the catalog's, or one dumped with it (the filer's)

    def as_dict(self) -> dict:
        return {"key": self.key, "bytes": self.bytes, "stamp": self.stamp,
                "database": self.database}  # fmt: skip


def parse_name(key: str, prefix: str, size: int) -> Backup | None:
    """The backup a key under `prefix` names, or None for another key."""
    name = NAME.match(key[len(prefix) :]) if key.startswith(prefix) else None
    return Backup(key, size, name[2], name[1]) if name else None


def oldest_first(backups: list[Backup]) -> list[Backup]:
    return sorted(backups, key=lambda backup: (backup.stamp, backup.key))


def backup_key(prefix: str, database: str, started: datetime) -> str:
    return f"{prefix}{database}-{started:%Y%m%dT%H%M%S%fZ}{SUFFIX}"


def check_prefix(prefix: str) -> str:
    if not PREFIX_FORM.match(prefix or ""):
        raise BackupError(f"backup prefix must be a path ending in '/' (catalog/): {prefix!r}")
    return prefix


def client(storage: StorageSettings):
    """A boto3 client for the backup's bucket and key (the audit's client settings)."""
    try:
        return client_for(storage)
    except StorageAuditError as error:
        raise BackupError(str(error).replace("the S3 audit", "the catalog backup")) from None


def list_backups(s3, storage: StorageSettings, prefix: str) -> list[Backup]:
    """The backups under `prefix`, oldest first; other keys there are ignored."""
    found: list[Backup] = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket, Prefix=prefix)
    with _errors(f"cannot list s3://{storage.bucket}/{prefix} at {storage.endpoint}"):
        for page in pages:
            for entry in page.get("Contents") or ():
                backup = parse_name(entry["Key"], prefix, int(entry.get("Size") or 0))
                if backup is not None:
                    found.append(backup)
    return oldest_first(found)


def upload(s3, storage: StorageSettings, key: str, stream: IO[bytes]) -> None:
    """`stream` read to its end into `key`, in parts: an error raised while reading it aborts
    the upload, so no object is made from half a stream."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=2
    )
    with _errors(f"cannot upload s3://{storage.bucket}/{key}"):
        s3.upload_fileobj(stream, storage.bucket, key, Config=config)


def open_backup(s3, storage: StorageSettings, key: str):
    """The object's body, a stream of its bytes."""
    with _errors(f"cannot read s3://{storage.bucket}/{key}"):
        return s3.get_object(Bucket=storage.bucket, Key=key)["Body"]


def prune(s3, storage: StorageSettings, prefix: str, keep: int) -> list[str]:
    """Delete all but the `keep` newest backups of each database (a delete marker under
    object lock); the keys deleted, oldest first."""
    backups = list_backups(s3, storage, prefix)
    older = []
    for database in sorted({backup.database for backup in backups}):
        own = [backup for backup in backups if backup.database == database]
        older += own[:-keep] if keep > 0 else []
    older.sort(key=lambda backup: (backup.stamp, backup.key))
    for backup in older:
        with _errors(f"cannot delete s3://{storage.bucket}/{backup.key}"):
            s3.delete_object(Bucket=storage.bucket, Key=backup.key)
    return [backup.key for backup in older]


def _errors(what: str) -> s3_errors:
    """S3's errors in the block as one BackupError."""
    return s3_errors(what, BackupError)
