"""The second pass of `harvester restore-photos --from backup`: photos pushed to main after the
newest catalog backup, which a catalog restore (`salt-run storage.restore_catalog`) left
pending, leased or failed and whose names main lost with its filer store, are put back at
their keys from the backup target, for the storage audit's adoption to mark stored
(harvester/audit/s3_adopt.py: the one place that decides; this pass never marks anything).

The backup target's copies under `images/` are walked with one paged listing
(target.walk_keys: no request per catalog photo, which may be hundreds of millions
pending); per page, one SQL finds the keys whose photo (ccmirror_common/layout.py) is in the
catalog pending, leased or failed, not stored and not sent back by an audit for bad bytes
(what adoption takes). Such a key is restored when:

- main lists nothing at it, no version and no delete marker (`on_main` otherwise: what is
  there, the audit judges; a delete marker is never undone here, as a delete by a stolen key
  or the operator is the audit's to weigh, and adoption refuses a key with a marker anyway);
- every copy of it on the backup has bytes, the same bytes (`differ`: a key a stolen key
  overwrote has two different copies, and no checksum in the catalog tells which is the
  photo; `deleted`: a copied delete marker, zero bytes; `unreadable`: a copy without bytes).

Then the leases' manifests under `manifests/` on the backup that main lacks (their names went
with the photos') are put back the same way, so the photos adopted keep their attribution.

It is PUT with the audit's key and its SHA-256 (`x-amz-checksum-sha256`, as the first pass
and the downloader's push send it). A dry run reads and changes nothing; a re-run finds the
restored keys on main (or their photos adopted) and restores nothing new.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ccmirror_common.layout import IMAGE_PATH
from harvester.audit.s3_adopt import ADOPTABLE_STATES, NOT_SENT_BACK
from harvester.backup import target as backup

if TYPE_CHECKING:
    from ccmirror_common.progress import ProgressLine
    from harvester.config import BackupTargetSettings, StorageSettings

WORKERS = 16
SAMPLES = 20
RESTORED, ON_MAIN, DIFFER, DELETED, UNREADABLE = (
    "restored", "on_main", "differ", "deleted", "unreadable"
)  # fmt: skip
SKIP_REASONS = (ON_MAIN, DIFFER, DELETED, UNREADABLE)
_STATES = ", ".join(f"'{state}'" for state in ADOPTABLE_STATES)
UNSTORED_SQL = (
    "SELECT i.photo_id FROM images i LEFT JOIN stored_images s ON s.image_id = i.id"
    f" WHERE i.photo_id IN ({{ids}}) AND i.state IN ({_STATES}) AND s.image_id IS NULL"
    f" AND {NOT_SENT_BACK}"
)


@dataclass
class Unstored:
    """The pass's counts (`unstored_<name>` in restore-photos' result): the backup's keys
    walked, those whose photo the catalog has not stored (checked), restored, skipped by
    reason; samples of keys by outcome."""

    walked: int = 0
    checked: int = 0
    restored: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    # The leases' manifests main lacks (their names lost with the photos'), put back too.
    manifests_walked: int = 0
    manifests_restored: int = 0
    manifests_skipped: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0)
    )
    samples: dict[str, list[str]] = field(default_factory=dict)


def restore_unstored(
    conn,
    main,
    copy,
    storage: StorageSettings,
    target: BackupTargetSettings,
    *,
    dry_run: bool,
    progress: ProgressLine | None = None,
) -> Unstored:
    """Walk the backup's copies and restore what the catalog has not stored."""
    started = time.monotonic()
    restorer = _Restorer(main, copy, storage, target, dry_run)
    result = Unstored()
    with ThreadPoolExecutor(WORKERS) as workers:
        for page in backup.walk_keys(copy, target):
            result.walked += len(page)
            keys = _unstored(conn, page)
            outcomes = workers.map(restorer.one, keys)
            for key, outcome in zip(keys, outcomes, strict=True):
                _count(result, key, outcome)
            if progress is not None and progress.due():
                rate = result.walked / max(time.monotonic() - started, 1e-6)
                progress.show(f"restore-photos, not stored in the catalog: {result.walked:,}"
                              f" backup keys walked ({rate:,.0f}/s), {result.checked:,} not"
                              f" stored, {result.restored:,} restored")  # fmt: skip
        _manifests(workers, restorer, copy, target, result)
    return result


def _manifests(workers, restorer: _Restorer, copy, target, result: Unstored) -> None:
    """Every manifest on the backup that main lacks, put back when its copies agree: the
    attribution of the photos pushed after the catalog backup (a manifest is never
    replaced: one on main stays as it is)."""
    for page in backup.walk_keys(copy, target, backup.MANIFESTS):
        result.manifests_walked += len(page)
        for key, outcome in zip(page, workers.map(restorer.one, page), strict=True):
            if outcome == RESTORED:
                result.manifests_restored += 1
            else:
                result.manifests_skipped[outcome] += 1
            sample = result.samples.setdefault(f"manifests_{outcome}", [])
            if len(sample) < SAMPLES:
                sample.append(key)


def _unstored(conn, page: list[str]) -> list[str]:
    """The page's keys whose photo the catalog has not stored (and adoption would take)."""
    by_id: dict[int, list[str]] = {}
    for key in page:
        match = IMAGE_PATH.match(key)
        if match:
            by_id.setdefault(int(match.group(1)), []).append(key)
    if not by_id:
        return []
    with conn.cursor() as cur:
        cur.execute(UNSTORED_SQL.format(ids=", ".join(map(str, sorted(by_id)))))
        found = {int(row[0]) for row in cur.fetchall()}
    conn.commit()  # no snapshot held across pages
    return sorted(key for photo_id in found for key in by_id[photo_id])


def _count(result: Unstored, key: str, outcome: str) -> None:
    result.checked += 1
    if outcome == RESTORED:
        result.restored += 1
    else:
        result.skipped[outcome] += 1
    sample = result.samples.setdefault(f"unstored_{outcome}", [])
    if len(sample) < SAMPLES:
        sample.append(key)


class _Restorer:
    def __init__(self, main, copy, storage, target, dry_run: bool) -> None:
        self.main, self.copy = main, copy
        self.storage, self.target, self.dry_run = storage, target, dry_run

    def one(self, key: str) -> str:
        if backup.main_versions(self.main, self.storage, key):
            return ON_MAIN
        copies = backup.copies_of(self.copy, self.target, key)
        datas = [backup.read_copy(self.copy, self.target, copy) for copy in copies]
        if not datas or any(data is None for data in datas):
            return UNREADABLE
        if any(not data for data in datas):
            return DELETED
        digests = {hashlib.sha256(data).digest() for data in datas}
        if len(digests) != 1:
            return DIFFER
        if not self.dry_run:
            backup.put_back(self.main, self.storage, key, datas[0], digests.pop())
        return RESTORED
