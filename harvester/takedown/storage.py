"""`harvester takedown apply`: the stored objects of taken-down photos out of the public prefix.

For each taken-down photo due (below), one ListObjectVersions of its own keys
(`images/<aa>/<bb>/<photo_id>.`, any extension: bytes a downloader pushed but never reported
are found too). A key whose latest version is an object is moved: copied to
`takedown/<key>` (kept, under the bucket's retention, for a counter-notice) and deleted, which
in the versioned bucket leaves a delete marker, so a GET of the public key finds nothing. The
photo's `stored_images` row goes (its path, size and SHA-256 into the log), so the storage
audit and `restore-photos`, which start from it, never put the photo back, and the audit's
adoption skips `taken_down` photos.

The key this needs is the audit's (Read, List, Write on the bucket: db-1's
/etc/ccmirror/audit.yaml): no delete of a version, the least that can move an object.
The older versions stay under `images/` (GOVERNANCE retention on every version); `--purge`
removes every version and delete marker of the photo's keys too, bypassing the retention,
which only the admin key may do (the audit's key is refused: one clear error).

Due: a taken-down photo with no storage step logged since its last `withdrawn`,
`stored_after_takedown` or `harvest_refused` row (a late lease's bytes make it due again);
`--recheck` takes every taken-down photo. A photo's steps are logged as they are done, so a
run cut off resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ccmirror_common.layout import IMAGE_PATH
from ccmirror_common.s3_errors import s3_errors
from harvester.config import StorageSettings
from harvester.db import with_retry
from harvester.queue.taken_down import TAKEN_DOWN

TAKEDOWN_PREFIX = "takedown/"
TRIGGERS = "'withdrawn', 'stored_after_takedown', 'harvest_refused'"
MOVED_STEPS = "'object_moved', 'object_purged', 'no_object'"
PURGED_STEPS = "'object_purged', 'no_object'"
# The takedown a photo falls under: its own id's, else its owner's.
TAKEDOWN_OF = (
    "COALESCE((SELECT k.id FROM takedowns k WHERE k.photo_id = i.photo_id),"
    " (SELECT k.id FROM takedowns k WHERE k.owner = i.owner))"
)


class TakedownStorageError(RuntimeError):
    """The bucket refused a step; the message says which and why (never a secret)."""


@dataclass
class Applied:
    photos: int = 0  # taken-down photos looked at
    moved: int = 0  # objects moved out of images/
    purged: int = 0  # versions and delete markers removed (--purge)
    no_object: int = 0  # photos with nothing under images/
    samples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        state = asdict(self)
        state["summary"] = (
            f"{self.photos:,} taken-down photos looked at: {self.moved:,} objects moved to"
            f" {TAKEDOWN_PREFIX}, {self.purged:,} versions purged,"
            f" {self.no_object:,} with no object"
        )
        return state


def due_photos(conn, recheck: bool, purge: bool) -> list[tuple[int, int, int | None]]:
    """(catalog id, photo id, takedown id) of the taken-down photos to look at, by id."""
    settled = PURGED_STEPS if purge else MOVED_STEPS
    due = (
        ""
        if recheck
        else " AND NOT EXISTS (SELECT 1 FROM takedown_log d WHERE d.photo_id = i.photo_id"
        f" AND d.step IN ({settled}) AND d.id > COALESCE((SELECT MAX(r.id) FROM takedown_log r"
        f" WHERE r.photo_id = i.photo_id AND r.step IN ({TRIGGERS})), 0))"
    )
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT i.id, i.photo_id, {TAKEDOWN_OF} FROM images i"
            f" WHERE i.state = '{TAKEN_DOWN}'{due} ORDER BY i.id"
        )
        rows = [(int(a), int(b), None if c is None else int(c)) for a, b, c in cur.fetchall()]
    conn.commit()
    return rows


def apply_takedowns(
    conn, client, storage: StorageSettings, actor: str, *, recheck: bool = False,
    purge: bool = False, samples: int = 20,
) -> Applied:  # fmt: skip
    """Move (and with `purge`, remove) the due photos' objects; see the module docstring."""
    applied = Applied()
    for image_id, photo_id, takedown_id in due_photos(conn, recheck, purge):
        applied.photos += 1
        versions = _own_versions(client, storage, photo_id)
        moved = [_move(client, storage, key, vid) for key, vid in _latest_objects(versions)]
        applied.moved += len(moved)
        applied.samples.extend(moved[: max(0, samples - len(applied.samples))])
        steps = [("object_moved", f"{key} -> {TAKEDOWN_PREFIX}{key}") for key in moved]
        if not moved and not (purge and versions):
            applied.no_object += 1
            kept = f" ({len(versions)} older versions kept)" if versions else ""
            steps.append(("no_object", f"no current object under images/{kept}"))
        # Logged before a purge is tried: a refused purge leaves the moves on record.
        if steps:
            _record(conn, image_id, photo_id, takedown_id, actor, steps)
        if purge and versions:
            removed = _purge(client, storage, versions)
            applied.purged += removed
            detail = f"{removed} versions and delete markers of images/ removed"
            _record(conn, image_id, photo_id, takedown_id, actor, [("object_purged", detail)])
    return applied


def _own_versions(client, storage: StorageSettings, photo_id: int) -> list[dict]:
    """Every version and delete marker of the photo's own keys (the layout's, any extension)."""
    low = photo_id & 0xFFFF
    prefix = f"images/{low & 0xFF:02x}/{low >> 8:02x}/{photo_id}."
    found: list[dict] = []
    with s3_errors(f"cannot list s3://{storage.bucket}/{prefix}", TakedownStorageError):
        pages = client.get_paginator("list_object_versions").paginate(
            Bucket=storage.bucket, Prefix=prefix
        )
        for page in pages:
            for kind in ("Versions", "DeleteMarkers"):
                for row in page.get(kind) or []:
                    match = IMAGE_PATH.match(row["Key"])
                    if match and int(match[1]) == photo_id:
                        found.append({**row, "marker": kind == "DeleteMarkers"})
    return found


def _latest_objects(versions: list[dict]) -> list[tuple[str, str]]:
    """(key, version id) of each key whose latest version is an object, not a marker."""
    return sorted((v["Key"], v["VersionId"]) for v in versions
                  if v["IsLatest"] and not v["marker"])  # fmt: skip


def _move(client, storage: StorageSettings, key: str, version_id: str) -> str:
    """Copy that version to takedown/<key>, then delete the key (a delete marker)."""
    with s3_errors(f"cannot move s3://{storage.bucket}/{key}", TakedownStorageError):
        client.copy_object(
            Bucket=storage.bucket,
            Key=f"{TAKEDOWN_PREFIX}{key}",
            CopySource={"Bucket": storage.bucket, "Key": key, "VersionId": version_id},
        )
        client.delete_object(Bucket=storage.bucket, Key=key)
    return key


def _purge(client, storage: StorageSettings, versions: list[dict]) -> int:
    """Remove every version listed and the markers the moves added: the keys' whole history
    under images/. Only a key that may bypass GOVERNANCE retention can."""
    keys = sorted({v["Key"] for v in versions})
    removed = 0
    with s3_errors("cannot purge the public versions (the admin key is needed)",
                   TakedownStorageError):  # fmt: skip
        for key in keys:
            listing = client.list_object_versions(Bucket=storage.bucket, Prefix=key)
            rows = (listing.get("Versions") or []) + (listing.get("DeleteMarkers") or [])
            for row in rows:
                if row["Key"] != key:
                    continue
                client.delete_object(Bucket=storage.bucket, Key=key, VersionId=row["VersionId"],
                                     BypassGovernanceRetention=True)  # fmt: skip
                removed += 1
    return removed


def _record(conn, image_id: int, photo_id: int, takedown_id: int | None, actor: str,
            steps: list[tuple[str, str]]) -> None:  # fmt: skip
    """Log the steps done, and hand the photo's stored record (removed) to the log."""

    def work(cur) -> None:
        cur.execute(
            "SELECT path, bytes, LOWER(HEX(sha256)) FROM stored_images WHERE image_id = %s"
            " FOR UPDATE",
            (image_id,),
        )
        row = cur.fetchone()
        logged = list(steps)
        if row is not None:
            step, detail = logged[-1]
            record = f"stored record removed: {row[0]}, {row[1]} bytes, sha256 {row[2]}"
            logged[-1] = (step, f"{detail}; {record}")
            cur.execute("DELETE FROM stored_images WHERE image_id = %s", (image_id,))
        cur.executemany(
            "INSERT INTO takedown_log (takedown_id, photo_id, step, actor, detail)"
            " VALUES (%s, %s, %s, %s, %s)",
            [(takedown_id, photo_id, step, actor, detail[:1024]) for step, detail in logged],
        )

    with_retry(conn, work)
