"""`harvester backup-check`: whether the backup target holds a copy of every stored photo and
of every manifest main lists, exactly, and (unless `--dry-run`; `salt-run audit.backup`) the
copies it lacks made from main's own versions.

`backup-lag` is a binary search over the catalog's store order: it sees the backup's front.
`weed filer.backup` follows one main filer's aggregated metadata log; catching up after a
reconnect it copies in another order, so photos behind the front can still be on their way
(an e2e run found 2 of 10 photos lost on main not yet on the backup, with the lag at 0). It
also loses some for good: resuming from its checkpoint after a reconnect, it passes over
events of the other filers older than the checkpoint that were not delivered yet (another run:
3 photos, still missing 22 minutes later), and it skips an event whose chunk read answers 404.
This check is what says the backup is whole:

- the backup's image keys (one paged walk, harvester/backup/target.py `walk_keys`) go into a
  temporary table; the catalog's stored photos with no key there are missing (photos stored
  after the check began, less a margin, are left for the next check: filer.backup may not
  have reached them yet); `behind_seconds` is the oldest missing one's age: the exact lag;
- main's manifests (one paged listing) are looked up in the same table.

A missing photo's or manifest's versions on main are each copied to where filer.backup would
have put them (`<key>.versions/v_<version id>`), with the sink's key (Write only on the backup
bucket: it adds, it cannot remove) and the bytes' SHA-256 sent for the backup to verify. A
photo main no longer lists is counted `not_on_main`: the storage audit's, not the backup's.
A dry run counts and copies nothing; a second run finds nothing missing.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from ccmirror_common.progress import ProgressLine
from ccmirror_common.s3_errors import s3_errors
from harvester.backup import target as backup
from harvester.backup.target import IMAGES, MANIFESTS, BackupTargetError
from harvester.config import BackupTargetSettings, StorageSettings

WORKERS = 16
SAMPLES = 20
BATCH = 1000  # missing photos fetched from the catalog at a time
# Photos stored this long before the check began are expected on the backup: filer.backup's
# lag under a full-speed lab download stays well inside it (README, "the backup target").
DEFAULT_MARGIN = timedelta(minutes=10)
KEYS_DDL = """
CREATE TEMPORARY TABLE backup_keys (
    object_key VARCHAR(700) NOT NULL PRIMARY KEY
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""  # the collation of stored_images.path, so that the join below uses the key
MISSING_SQL = (
    "SELECT s.image_id, s.path, s.stored_at FROM stored_images s"
    " LEFT JOIN backup_keys b ON b.object_key = s.path"
    " WHERE b.object_key IS NULL AND s.stored_at < %s AND s.image_id > %s"
    " ORDER BY s.image_id LIMIT %s"
)
FILLED, NOT_ON_MAIN = "filled", "not_on_main"


@dataclass
class Completeness:
    dry_run: bool
    cutoff: str = ""  # photos stored before it were checked
    backup_keys: int = 0  # image keys the backup holds copies of
    checked: int = 0  # stored photos checked
    missing: int = 0  # of those, with no copy on the backup
    # The oldest missing photo's stored_at, and how long before the check it was stored: the
    # backup's lag, exactly (backup-lag's front search cannot see photos behind its front).
    oldest_missing: str = ""
    behind_seconds: float = 0.0
    manifests_checked: int = 0
    manifests_missing: int = 0
    filled: int = 0  # photos and manifests whose copies were made (not in a dry run)
    not_on_main: int = 0  # missing ones main lists no version of: the storage audit's
    seconds: float = 0.0
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def whole(self) -> bool:
        """The backup holds everything checked, or does now that the copies are made."""
        lacking = self.missing + self.manifests_missing
        return lacking == 0 or (not self.dry_run and self.filled + self.not_on_main == lacking)

    def as_dict(self) -> dict:
        state = asdict(self) | {"whole": self.whole}
        verb = "would copy" if self.dry_run else "copied"
        oldest = f", the oldest {self.behind_seconds:,.0f} s old" if self.missing else ""
        state["summary"] = (
            f"backup check: {self.missing:,} of {self.checked:,} stored photos{oldest} and"
            f" {self.manifests_missing:,} of {self.manifests_checked:,} manifests not on the"
            f" backup ({self.backup_keys:,} image keys there); {verb} {self.filled:,},"
            f" {self.not_on_main:,} not on main either; stored before {self.cutoff}; in"
            f" {self.seconds:.1f} s"
        )
        return state


def check_backup(
    conn,
    storage: StorageSettings,
    target: BackupTargetSettings,
    *,
    dry_run: bool = False,
    margin: timedelta = DEFAULT_MARGIN,
    progress: ProgressLine | None = None,
) -> Completeness:
    """The backup compared with the catalog and main's manifests; with copies made of what it
    lacks unless `dry_run`. BackupTargetError when a side cannot be read or a copy fails."""
    started = time.monotonic()
    main, copy = backup.reachable_clients(storage, target)
    writer = None if dry_run else backup.writer_client(target)
    result = Completeness(dry_run)
    checked_at = _now(conn)
    cutoff = checked_at - margin
    result.cutoff = f"{cutoff:%Y-%m-%d %H:%M:%S}"
    with conn.cursor() as cur:
        cur.execute("DROP TEMPORARY TABLE IF EXISTS backup_keys")
        cur.execute(KEYS_DDL)
    _load_backup_keys(conn, copy, target, result, progress)
    filler = _Filler(main, writer, storage, target)
    oldest: datetime | None = None
    with ThreadPoolExecutor(WORKERS) as workers:
        for rows in _missing_photos(conn, cutoff):
            oldest = min(stored_at for _, stored_at in [*rows, ("", oldest or rows[0][1])])
            _settle(result, [path for path, _ in rows], workers, filler, "photos")
        _check_manifests(conn, main, storage, result, workers, filler)
    if oldest is not None:
        result.oldest_missing = f"{oldest:%Y-%m-%d %H:%M:%S}"
        result.behind_seconds = round(max((checked_at - oldest).total_seconds(), 0.0), 1)
    result.checked = _stored_before(conn, cutoff)
    with conn.cursor() as cur:
        cur.execute("DROP TEMPORARY TABLE backup_keys")
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _now(conn) -> datetime:
    """The database's clock: the cutoff and the ages are measured by one clock."""
    with conn.cursor() as cur:
        cur.execute("SELECT UTC_TIMESTAMP(6)")
        return cur.fetchone()[0]


def _load_backup_keys(conn, copy, target, result: Completeness, progress) -> None:
    started = time.monotonic()
    for top in (IMAGES, MANIFESTS):
        for page in backup.walk_keys(copy, target, top):
            with conn.cursor() as cur:
                cur.executemany("INSERT IGNORE INTO backup_keys VALUES (%s)", page)
            conn.commit()
            if top == IMAGES:
                result.backup_keys += len(page)
            if progress is not None and progress.due():
                rate = result.backup_keys / max(time.monotonic() - started, 1e-6)
                progress.show(f"backup-check: {result.backup_keys:,} image keys walked on the"
                              f" backup ({rate:,.0f}/s)")  # fmt: skip


def _missing_photos(conn, cutoff: datetime) -> Iterator[list[tuple[str, datetime]]]:
    """The stored photos the backup has no key of, (path, stored_at) a page at a time."""
    last = 0
    while True:
        with conn.cursor() as cur:
            cur.execute(MISSING_SQL, (cutoff, last, BATCH))
            rows = cur.fetchall()
        conn.commit()
        if not rows:
            return
        last = rows[-1][0]
        yield [(path, stored_at) for _, path, stored_at in rows]


def _stored_before(conn, cutoff: datetime) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM stored_images WHERE stored_at < %s", (cutoff,))
        return int(cur.fetchone()[0])


def _check_manifests(conn, main, storage, result: Completeness, workers, filler) -> None:
    paginator = main.get_paginator("list_objects_v2")
    with s3_errors(f"cannot list s3://{storage.bucket}/{MANIFESTS}", BackupTargetError):
        for page in paginator.paginate(Bucket=storage.bucket, Prefix=MANIFESTS):
            keys = [entry["Key"] for entry in page.get("Contents") or ()]
            if not keys:
                continue
            result.manifests_checked += len(keys)
            with conn.cursor() as cur:
                marks = ", ".join(["%s"] * len(keys))
                cur.execute(f"SELECT object_key FROM backup_keys WHERE object_key IN ({marks})",
                            keys)  # fmt: skip
                there = {row[0] for row in cur.fetchall()}
            _settle(result, [key for key in keys if key not in there], workers, filler,
                    "manifests")  # fmt: skip


def _settle(result: Completeness, keys: list[str], workers, filler, kind: str) -> None:
    """Count `keys` missing (photos or manifests) and, unless a dry run, copy them."""
    if kind == "photos":
        result.missing += len(keys)
    else:
        result.manifests_missing += len(keys)
    if keys:
        named = result.samples.setdefault(f"missing {kind}", [])
        named.extend(keys[: SAMPLES - len(named)])
    if filler.writer is None:
        return
    for key, outcome in zip(keys, workers.map(filler.one, keys), strict=True):
        if outcome == FILLED:
            result.filled += 1
        else:
            result.not_on_main += 1
            named = result.samples.setdefault(NOT_ON_MAIN, [])
            named.extend([key][: SAMPLES - len(named)])


class _Filler:
    def __init__(self, main, writer, storage: StorageSettings, target: BackupTargetSettings):
        self.main, self.writer, self.storage, self.target = main, writer, storage, target

    def one(self, key: str) -> str:
        """Every version main lists of `key` copied where filer.backup puts it."""
        versions = [v for v in backup.main_versions(self.main, self.storage, key)
                    if not v["marker"]]  # fmt: skip
        for version in versions:
            self._copy(key, version["VersionId"])
        return FILLED if versions else NOT_ON_MAIN

    def _copy(self, key: str, version_id: str) -> None:
        where = f"s3://{self.storage.bucket}/{key} (version {version_id})"
        with s3_errors(f"cannot read {where}", BackupTargetError):
            data = self.main.get_object(Bucket=self.storage.bucket, Key=key,
                                        VersionId=version_id)["Body"].read()  # fmt: skip
        copy = backup.copy_key(self.target, key, version_id)
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        with s3_errors(f"cannot copy {where} to s3://{self.target.bucket}/{copy}",
                       BackupTargetError):  # fmt: skip
            self.writer.put_object(Bucket=self.target.bucket, Key=copy, Body=data,
                                   ChecksumSHA256=checksum)  # fmt: skip
