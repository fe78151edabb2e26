"""`harvester restore-photos --from backup`, first pass: every stored photo (the catalog's
stored_images) that the main bucket lacks, or whose current version is not the catalog's
bytes, is copied back from the backup target: the copy whose SHA-256 is the catalog's is PUT
at the photo's key with the audit's key (Write on main only adds a version), sent with its
SHA-256 as the downloader's push sends it (`x-amz-checksum-sha256`: the store refuses other
bytes).

Per photo: one ListObjectVersions of its key on main; when its latest version is a delete
marker, of another size, or of another MD5 (or, where the catalog kept no MD5, of another
SHA-256, read back), its copies on the backup are tried: those of the versions main still
lists, then every copy the backup lists for the key (versions deleted on main). Counted
restored, fine, or not on the backup (left for the storage audit, which sends those back to
the queue). A dry run reads and changes nothing. A re-run finds them all fine.

A second pass (restore_unstored.py) puts back the photos the catalog has not stored whose
names main lost (pushed after the newest catalog backup, then `storage.restore_catalog`), from
one paged walk of the backup's copies, for the storage audit's adoption to mark stored.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from ccmirror_common.progress import ProgressLine
from ccmirror_common.s3_errors import s3_errors
from harvester.backup import target as backup
from harvester.backup.restore_unstored import Unstored, restore_unstored
from harvester.config import BackupTargetSettings, StorageSettings

BATCH = 500
WORKERS = 16
SAMPLES = 20
PHOTOS_SQL = (
    "SELECT image_id, path, HEX(sha256), bytes, HEX(md5) FROM stored_images"
    " WHERE image_id > %s ORDER BY image_id LIMIT %s"
)
FINE, RESTORED, NOT_ON_BACKUP = "fine", "restored", "not_on_backup"


@dataclass(frozen=True)
class Photo:
    image_id: int
    key: str
    sha256: str  # lower-case hex
    bytes: int
    md5: str | None


@dataclass
class RestoreResult:
    dry_run: bool
    checked: int = 0
    restored: int = 0
    fine: int = 0
    not_on_backup: int = 0
    # The second pass (restore_unstored.py): the backup's keys of photos the catalog has not
    # stored, put back for the audit's adoption, or skipped by reason.
    unstored: Unstored = field(default_factory=Unstored)
    seconds: float = 0.0
    samples: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        state, unstored = asdict(self), self.unstored
        del state["unstored"]
        state |= {f"unstored_{name}": value for name, value in asdict(unstored).items()
                  if name != "samples"}  # fmt: skip
        state["samples"] = self.samples | unstored.samples
        verb = "would restore" if self.dry_run else "restored"
        skipped = ", ".join(f"{n:,} {why}" for why, n in unstored.skipped.items() if n) or "none"
        state["summary"] = (
            f"{verb} {self.restored:,} photos from the backup, {self.fine:,} already fine,"
            f" {self.not_on_backup:,} not on the backup (left for the storage audit);"
            f" {self.checked:,} checked; {unstored.restored:,} photos the catalog has not"
            f" stored {verb} for the storage audit to adopt"
            f" ({unstored.checked:,} of {unstored.walked:,} keys on the backup;"
            f" skipped: {skipped}); {unstored.manifests_restored:,} manifests {verb} (of"
            f" {unstored.manifests_walked:,} on the backup) in {self.seconds:.1f} s"
        )
        return state


def restore_photos(
    conn,
    storage: StorageSettings,
    target: BackupTargetSettings,
    *,
    dry_run: bool = False,
    progress: ProgressLine | None = None,
) -> RestoreResult:
    started = time.monotonic()
    main, copy = backup.reachable_clients(storage, target)
    restorer = _Restorer(main, copy, storage, target, dry_run)
    result = RestoreResult(dry_run)
    last = 0
    with ThreadPoolExecutor(WORKERS) as workers:
        while photos := _batch(conn, last):
            last = photos[-1].image_id
            for photo, outcome in zip(photos, workers.map(restorer.one, photos), strict=True):
                _count(result, photo, outcome)
            if progress is not None and progress.due():
                rate = result.checked / max(time.monotonic() - started, 1e-6)
                progress.show(f"restore-photos: {result.checked:,} checked ({rate:,.0f}/s),"
                              f" {result.restored:,} restored, {result.not_on_backup:,} not on"
                              " the backup")  # fmt: skip
    result.unstored = restore_unstored(
        conn, main, copy, storage, target, dry_run=dry_run, progress=progress
    )
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _batch(conn, after: int) -> list[Photo]:
    with conn.cursor() as cur:
        cur.execute(PHOTOS_SQL, (after, BATCH))
        rows = cur.fetchall()
    conn.commit()  # no snapshot held across batches
    return [Photo(int(r[0]), r[1], r[2].lower(), int(r[3]), r[4].lower() if r[4] else None)
            for r in rows]  # fmt: skip


def _count(result: RestoreResult, photo: Photo, outcome: str) -> None:
    result.checked += 1
    setattr(result, outcome, getattr(result, outcome) + 1)
    if outcome != FINE:
        sample = result.samples.setdefault(outcome, [])
        if len(sample) < SAMPLES:
            sample.append(photo.key)


class _Restorer:
    def __init__(self, main, copy, storage, target, dry_run: bool) -> None:
        self.main, self.copy = main, copy
        self.storage, self.target, self.dry_run = storage, target, dry_run

    def one(self, photo: Photo) -> str:
        versions = backup.main_versions(self.main, self.storage, photo.key)
        if self._intact(photo, versions):
            return FINE
        for copy_key in self._candidates(photo, versions):
            data = backup.read_copy(self.copy, self.target, copy_key)
            if data is not None and hashlib.sha256(data).hexdigest() == photo.sha256:
                if not self.dry_run:
                    backup.put_back(self.main, self.storage, photo.key, data,
                                    bytes.fromhex(photo.sha256))  # fmt: skip
                return RESTORED
        return NOT_ON_BACKUP

    def _intact(self, photo: Photo, versions: list[dict]) -> bool:
        latest = next((v for v in versions if v.get("IsLatest")), None)
        if latest is None or latest["marker"] or int(latest.get("Size") or 0) != photo.bytes:
            return False
        etag = (latest.get("ETag") or "").strip('"').lower()
        if photo.md5 is not None and len(etag) == 32:
            return etag == photo.md5
        return self._latest_sha256(photo) == photo.sha256  # no MD5 to compare: read it back

    def _latest_sha256(self, photo: Photo) -> str:
        what = f"cannot read s3://{self.storage.bucket}/{photo.key}"
        with s3_errors(what, backup.BackupTargetError):
            body = self.main.get_object(Bucket=self.storage.bucket, Key=photo.key)["Body"]
            return hashlib.sha256(body.read()).hexdigest()

    def _candidates(self, photo: Photo, versions: list[dict]) -> list[str]:
        """The backup keys that may hold the photo: copies of main's versions of the right
        size first (no listing needed), then whatever the backup lists for the key."""
        fitting = [v["VersionId"] for v in versions
                   if not v["marker"] and int(v.get("Size") or 0) == photo.bytes]  # fmt: skip
        keys = [backup.copy_key(self.target, photo.key, version) for version in fitting]
        listed = backup.copies_of(self.copy, self.target, photo.key)
        return keys + [key for key in listed if key not in keys]
