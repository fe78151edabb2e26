"""Where a catalog restore reads its backup: the bucket the backups are made into (main), or
the backup target `weed filer.backup` copies that bucket into (bk-1, or an S3 elsewhere).

On a SeaweedFS site the main cluster's names are in MariaDB on db-1 (its filer store,
salt/storage/seaweedfs): once db-1 is lost, main cannot even list the bucket. The backup
target still holds every backup made before: filer.backup copies `catalog/` like any other
key, and never sends a delete, so the retention's delete markers do not hide them there (it
keeps every backup; its admin key prunes it). `auto` reads main when main lists a backup,
else the backup target; the answer says which was read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harvester.backup import store
from harvester.backup import target as copies
from harvester.backup.store import Backup, BackupError
from harvester.backup.target import BackupTargetError

if TYPE_CHECKING:
    from harvester.config import BackupTargetSettings, StorageSettings

SOURCES = ("auto", "bucket", "backup")


@dataclass
class Source:
    name: str  # "bucket" or "backup"
    where: str  # s3://bucket/prefix at endpoint, for messages and the answer
    backups: list[Backup]  # the catalog's, oldest first
    companions: list[Backup]  # the databases dumped with it (store.COMPANIONS), oldest first
    opener: Callable[[Backup], tuple[object, int]]

    def open(self, backup: Backup) -> tuple[object, int]:
        """The backup's bytes as a stream, and how many there are."""
        return self.opener(backup)


def open_source(
    storage: StorageSettings, target: BackupTargetSettings, prefix: str, source: str = "auto"
) -> Source:
    """The source `source` names, listed; for `auto` the first of main and the backup
    target that lists a backup. BackupError says why none could be read."""
    if source not in SOURCES:
        raise BackupError(f"the backup source must be one of {', '.join(SOURCES)}, not {source!r}")
    prefix = store.check_prefix(prefix)
    tried: list[str] = []
    if source in ("auto", "bucket"):
        try:
            main = _bucket(storage, prefix)
        except BackupError as error:
            if source == "bucket":
                raise
            tried.append(str(error))
        else:
            if main.backups or source == "bucket":
                return main
            tried.append(f"no catalog backup in {main.where}")
    if not target.endpoint:
        raise BackupError("; ".join([*tried, "no backup_target is set to read one from instead"]))
    try:
        return _backup_target(target, prefix)
    except BackupTargetError as error:
        raise BackupError("; ".join([*tried, str(error)])) from None


def _bucket(storage: StorageSettings, prefix: str) -> Source:
    s3 = store.client(storage)
    backups = store.list_backups(s3, storage, prefix)
    companions = store.list_backups(s3, storage, prefix + store.COMPANIONS)

    def opener(backup: Backup) -> tuple[object, int]:
        return store.open_backup(s3, storage, backup.key), backup.bytes

    where = f"s3://{storage.bucket}/{prefix} at {storage.endpoint}"
    return Source("bucket", where, backups, companions, opener)


def _backup_target(target: BackupTargetSettings, prefix: str) -> Source:
    client = copies.target_client(target)

    def listed(folder: str) -> list[Backup]:
        found = [store.parse_name(folder + name, folder, 0)
                 for name in copies.copied_names(client, target, folder)]  # fmt: skip
        return store.oldest_first([backup for backup in found if backup is not None])

    def opener(backup: Backup) -> tuple[object, int]:
        try:
            return copies.open_copy(client, target, backup.key)
        except BackupTargetError as error:
            raise BackupError(str(error)) from None

    where = f"the backup target s3://{target.bucket} at {target.endpoint} (copies of {prefix})"
    backups, companions = listed(prefix), listed(prefix + store.COMPANIONS)
    return Source("backup", where, backups, companions, opener)
