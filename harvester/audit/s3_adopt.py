"""The S3 audit's adoption: a photo the catalog does not have stored (pending, leased or
failed) whose object is in the bucket at its own key is marked stored, not fetched again.

That is the catalog restored from a backup (`salt-run storage.restore_catalog`): every photo
stored after the backup is on storage, but the catalog says pending or leased. It is also a
push whose report was lost (its lease expired first). An object is adopted only when its key
is the layout's path for the photo's id (ccmirror_common/layout.py) and the photo has no
other; every version of the key has the same bytes (never overwritten nor deleted: the
catalog knows no checksum to tell a stolen key's overwrite from the photo, so such a photo
is fetched again); the photo was not sent back by an audit for bad bytes at that key; and
the bytes, read back whole, have the size and MD5 the listing gave: their SHA-256 is
computed then, as `stored_images` records it. The downloader
checked the image before its PUT, and the PUT carried its SHA-256, so the store holds only
whole, checked photos.

A report that arrives for an adopted photo finds it stored (the queue counts it
`already_stored`); a photo that left those states meanwhile is not touched (the update
re-checks its state under a row lock).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ccmirror_common.s3_errors import s3_errors
from harvester.audit.s3_listing import StorageAuditError
from harvester.db import with_retry

if TYPE_CHECKING:
    from ccmirror_common.progress import ProgressLine
    from harvester.config import StorageSettings

ADOPTABLE_STATES = ("pending", "leased", "failed")
# An audit sent the photo back for its object at that key: fetched again, never adopted.
SENT_BACK_ERRORS = ("storage audit: file corrupt", "storage audit: file missing")
NOT_SENT_BACK = " AND ".join(f"NOT (i.last_error <=> '{error}')" for error in SENT_BACK_ERRORS)
WORKER = "storage-audit"  # stored_images.worker of an adopted photo
READERS = 8  # objects read at once
BATCH = 500
# The layout's key for the row's photo id: images/<aa>/<bb>/<id>.<ext>, aa and bb its last two
# bytes in hex (ccmirror_common/layout.py image_path).
OWN_KEY = (
    "o.object_key LIKE CONCAT('images/', LPAD(LOWER(HEX(o.photo_id & 255)), 2, '0'), '/',"
    " LPAD(LOWER(HEX((o.photo_id >> 8) & 255)), 2, '0'), '/', o.photo_id, '.%')"
)
_STATES = ", ".join(f"'{state}'" for state in ADOPTABLE_STATES)
# One row per key at a photo's own path whose every version has the same bytes (never
# overwritten, never deleted: a push twice is two equal versions). MariaDB opens a temporary
# table once per statement: the key's versions are judged in one GROUP BY.
CANDIDATES_SQL = f"""
SELECT i.id, k.object_key, k.version_id, k.bytes, k.md5
FROM (
    SELECT o.photo_id, o.object_key, MAX(IF(o.is_latest, o.version_id, NULL)) AS version_id,
           MAX(o.bytes) AS bytes, LOWER(HEX(MAX(o.md5))) AS md5
    FROM audit_objects o
    WHERE o.photo_id IS NOT NULL AND {OWN_KEY}
    GROUP BY o.photo_id, o.object_key
    HAVING SUM(o.is_marker) = 0 AND MIN(o.bytes) > 0 AND COUNT(DISTINCT o.bytes) = 1
       AND COUNT(DISTINCT COALESCE(HEX(o.md5), '-')) = 1
) k
JOIN images i ON i.photo_id = k.photo_id
LEFT JOIN stored_images s ON s.image_id = i.id
WHERE s.image_id IS NULL AND i.state IN ({_STATES})
  AND {NOT_SENT_BACK}
ORDER BY i.id
"""


@dataclass(frozen=True)
class Candidate:
    image_id: int
    key: str
    version_id: str
    bytes: int
    md5: str | None  # None: the listing had no MD5 (a multipart upload's ETag)


@dataclass(frozen=True)
class Checked:
    candidate: Candidate
    sha256: str
    md5: str


def candidates(conn) -> list[Candidate]:
    """The photos the listing (the audit's `audit_objects`) would adopt, by catalog id."""
    with conn.cursor() as cur:
        cur.execute(CANDIDATES_SQL)
        found = [Candidate(int(r[0]), r[1], r[2], int(r[3]), r[4]) for r in cur.fetchall()]
    keys_per_photo = Counter(candidate.image_id for candidate in found)
    return [c for c in found if keys_per_photo[c.image_id] == 1]  # two extensions: ambiguous


def adopt(
    conn,
    client,
    storage: StorageSettings,
    found: list[Candidate],
    now,
    progress: ProgressLine | None = None,
) -> list[str]:
    """Read each candidate's bytes back and mark those that match stored, a batch per
    transaction. Returns the keys adopted."""
    adopted: list[str] = []
    with ThreadPoolExecutor(READERS) as readers:
        for start in range(0, len(found), BATCH):
            batch = found[start : start + BATCH]
            checked = [c for c in readers.map(lambda c: _read(client, storage, c), batch) if c]
            adopted += _mark_stored(conn, checked, now)
            if progress is not None and progress.due():
                progress.show(f"adopting photos found on storage: {start + len(batch):,} of"
                              f" {len(found):,} read, {len(adopted):,} adopted")  # fmt: skip
    return adopted


def _read(client, storage: StorageSettings, candidate: Candidate) -> Checked | None:
    """The candidate with its digests, or None when its bytes are not what the listing said."""
    with s3_errors(f"cannot read s3://{storage.bucket}/{candidate.key}", StorageAuditError):
        body = client.get_object(
            Bucket=storage.bucket, Key=candidate.key, VersionId=candidate.version_id
        )["Body"]
        sha256, md5, size = hashlib.sha256(), hashlib.md5(), 0  # noqa: S324 - the ETag's
        for chunk in body.iter_chunks(1 << 20):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    if size != candidate.bytes or (candidate.md5 and md5.hexdigest() != candidate.md5):
        return None
    return Checked(candidate, sha256.hexdigest(), md5.hexdigest())


def _mark_stored(conn, checked: list[Checked], now) -> list[str]:
    if not checked:
        return []
    by_id = {c.candidate.image_id: c for c in checked}
    ids = ", ".join(str(image_id) for image_id in sorted(by_id))

    def work(cur) -> list[str]:
        cur.execute(
            f"SELECT id FROM images WHERE id IN ({ids}) AND state IN ({_STATES}) FOR UPDATE"
        )
        still = sorted(int(row[0]) for row in cur.fetchall())
        if not still:
            return []
        cur.executemany(
            "INSERT IGNORE INTO stored_images"
            " (image_id, sha256, bytes, path, md5, worker, lease_id, stored_at)"
            " VALUES (%s, UNHEX(%s), %s, %s, UNHEX(%s), %s, 0, %s)",
            [
                (i, by_id[i].sha256, by_id[i].candidate.bytes, by_id[i].candidate.key,
                 by_id[i].md5, WORKER, now)
                for i in still
            ],
        )  # fmt: skip
        cur.execute(
            "UPDATE images SET state = 'stored', lease_id = 0, last_error = NULL"
            f" WHERE id IN ({', '.join(map(str, still))})"
        )
        return [by_id[i].candidate.key for i in still]

    return with_retry(conn, work)
