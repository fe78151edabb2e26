"""`harvester backup-lag`: how far the backup target is behind the catalog, in photos and
seconds, from a few dozen probes whatever the catalog's size.

It assumes what `weed filer.backup` does: it follows the main filer's metadata log in order,
so the photos on the backup are those stored up to some moment, and none after it (a photo
is reported stored after its PUT, so the catalog's `stored_at` order is the log's order but
for the few photos in flight together). A binary search over `stored_at` (indexed) finds the
newest photo whose version has its copy on the backup (one ListObjectVersions on main for the
photo's version ids, a HEAD of the copy on the backup): the photos stored after it are behind,
and the oldest of them has waited `seconds`. A photo whose key main no longer has counts as
backed up (the audit's to find, not the backup's to hold back).

The assumption holds while filer.backup follows a steady download; its catch-up after a
reconnect replays several filers' logs in another order, and photos behind the front are then
still on their way, unseen here. `backup-check` (completeness.py) counts them exactly.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from harvester.backup import target as backup
from harvester.config import BackupTargetSettings, StorageSettings

FIRST_AT = "SELECT image_id, path, stored_at FROM stored_images WHERE stored_at >= %s" \
    " ORDER BY stored_at, image_id LIMIT 1"  # fmt: skip
EDGES = "SELECT MIN(stored_at), MAX(stored_at) FROM stored_images"
AFTER = "SELECT COUNT(*), MIN(stored_at) FROM stored_images WHERE stored_at > %s"
ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass
class Lag:
    behind: int  # stored photos not yet on the backup
    seconds: float  # how long the oldest of them has waited; 0 when none
    probes: int  # photos probed on main and on the backup
    elapsed: float

    def as_dict(self) -> dict:
        state = asdict(self)
        state["summary"] = (
            f"backup lag: {self.behind:,} photos, {self.seconds:,.1f} s"
            f" ({self.probes} probes in {self.elapsed:.2f} s)"
        )
        return state


def backup_lag(
    conn, storage: StorageSettings, target: BackupTargetSettings, now: datetime | None = None
) -> Lag:
    started = time.monotonic()
    main, copy = backup.reachable_clients(storage, target)
    probe = _Prober(conn, main, copy, storage, target)
    with conn.cursor() as cur:
        cur.execute(EDGES)
        oldest, newest = cur.fetchone()
    now = now or datetime.now(UTC).replace(tzinfo=None)
    if newest is None or probe.on_backup_from(newest):
        return Lag(0, 0.0, probe.count, round(time.monotonic() - started, 3))
    # lo: every photo stored at or before it is on the backup; the first at or after hi is not.
    lo = oldest - ONE_MICROSECOND if not probe.on_backup_from(oldest) else oldest
    hi = newest
    while hi - lo > ONE_MICROSECOND:
        mid = lo + (hi - lo) / 2
        found = probe.first_at(mid)
        if found is not None and found[2] < hi and probe.on_backup(found):
            lo = found[2]
        else:
            hi = mid
    with conn.cursor() as cur:
        cur.execute(AFTER, (lo,))
        behind, first_missing = cur.fetchone()
    waited = max((now - first_missing).total_seconds(), 0.0) if first_missing else 0.0
    return Lag(int(behind), round(waited, 3), probe.count,
               round(time.monotonic() - started, 3))  # fmt: skip


class _Prober:
    def __init__(self, conn, main, copy, storage, target) -> None:
        self.conn, self.main, self.copy = conn, main, copy
        self.storage, self.target = storage, target
        self.count = 0

    def first_at(self, when: datetime) -> tuple | None:
        with self.conn.cursor() as cur:
            cur.execute(FIRST_AT, (when,))
            return cur.fetchone()

    def on_backup_from(self, when: datetime) -> bool:
        found = self.first_at(when)
        return found is None or self.on_backup(found)

    def on_backup(self, photo: tuple) -> bool:
        """Whether any version main has of the photo's key has its copy on the backup."""
        self.count += 1
        key = photo[1]
        listed = backup.main_versions(self.main, self.storage, key)
        versions = [version for version in listed if not version["marker"]]
        if not versions:
            return True
        return any(
            backup.has_copy(self.copy, self.target, key, v["VersionId"]) for v in versions[:5]
        )
