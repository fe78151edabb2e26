"""`harvester audit-storage --s3`: the storage audit on an S3 bucket (SeaweedFS or any S3).

One paged ListObjectVersions walk of `images/` (harvester/audit/s3_listing.py) is loaded into
a temporary table (LOAD DATA) and judged against `stored_images` in a few set-based
statements, whatever the number of objects. A photo's key is its `stored_images.path`; what
its bytes should be is the catalog's size and MD5, or, for a photo stored before the catalog
kept MD5s, its size and the ETag of the oldest version of that size (its first push):

- ok: the key's latest version has those bytes (the same bytes pushed twice are two versions
  with one ETag: still ok);
- overwritten: the latest is other bytes or a delete marker, and an older version has the
  right ones: that version is copied onto the key (CopyObject with its VersionId), so it is
  the latest again; counted as `restored`, and the next audit finds it ok;
- corrupt: versions, none with the right bytes; missing: no version (no key, or delete
  markers only): both go back to `pending`, as the inventory audit does (harvester/audit/
  storage.py), and are fetched and pushed again;
- orphans: keys whose latest is an object no stored photo names: counted, the first few
  named, never deleted;
- unchecked: photos stored after the walk began (less the clock margin): the next audit;
- adopted: a photo the catalog does not have stored (pending, leased, failed) whose object is
  at its own key, read back whole: marked stored, not fetched again (harvester/audit/
  s3_adopt.py; a catalog restored from a backup, a report lost).

A dry run copies and changes nothing. A bucket that cannot be listed (unreachable, a wrong
key, no such bucket) is one StorageAuditError before the catalog is touched; a copy that fails
stops the audit before the catalog is touched too (a copy made is a good version made latest).
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import TextIO

from ccmirror_common.progress import ProgressLine
from harvester.audit import s3_adopt
from harvester.audit.s3_listing import PREFIX, StorageAuditError, restore_version, walk_versions
from harvester.audit.storage import (
    DEFAULT_CLOCK_MARGIN,
    DEFAULT_SAMPLES,
    REQUEUE_DDL,
    AuditResult,
    apply_and_record,
    column,
)
from harvester.config import StorageSettings

__all__ = ["StorageAuditError", "audit_bucket"]

# Every version and delete marker, in walk order (newest first within a key).
OBJECTS_DDL = """
CREATE TEMPORARY TABLE audit_objects (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    photo_id BIGINT UNSIGNED NULL,
    object_key VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    version_id VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    is_latest BOOL NOT NULL,
    is_marker BOOL NOT NULL,
    bytes BIGINT UNSIGNED NULL,
    md5 BINARY(16) NULL,
    image_id BIGINT UNSIGNED NULL,
    KEY audit_objects_photo (photo_id),
    KEY audit_objects_image (image_id)
) ENGINE=InnoDB
"""
# LOAD DATA's defaults spelled out, so a server's settings cannot change how rows are read.
LOAD_SQL = (
    "LOAD DATA LOCAL INFILE %s INTO TABLE audit_objects CHARACTER SET utf8mb4"
    r" FIELDS TERMINATED BY '\t' ENCLOSED BY '' ESCAPED BY '\\' LINES TERMINATED BY '\n'"
    " (photo_id, object_key, version_id, is_latest, is_marker, bytes, @md5)"
    " SET md5 = UNHEX(@md5)"
)
# Which stored photo each row is a version of: its key is the photo's recorded path.
NAME_SQL = """
UPDATE audit_objects o
JOIN images i ON i.photo_id = o.photo_id
JOIN stored_images s ON s.image_id = i.id AND CAST(s.path AS BINARY) = CAST(o.object_key AS BINARY)
SET o.image_id = s.image_id
"""
PHOTOS_DDL = """
CREATE TEMPORARY TABLE audit_photos (
    image_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    bytes BIGINT UNSIGNED NOT NULL,
    expected_md5 BINARY(16) NULL,
    stored_at DATETIME(6) NOT NULL,
    live BIGINT UNSIGNED NOT NULL,
    latest_id BIGINT UNSIGNED NULL,
    fit_id BIGINT UNSIGNED NULL,
    intact BOOL NOT NULL DEFAULT 0
) ENGINE=InnoDB
"""
# Per stored photo with any row: its versions (not markers), its latest row, and the oldest
# version with the right bytes (size and, where the catalog knows it, MD5). MariaDB cannot
# open a temporary table twice in one statement, so each step reads each table once.
PHOTOS_SQL = """
INSERT INTO audit_photos (image_id, bytes, expected_md5, stored_at, live, latest_id, fit_id)
SELECT s.image_id, s.bytes, s.md5, s.stored_at, SUM(NOT o.is_marker),
       MAX(IF(o.is_latest, o.id, NULL)),
       MAX(IF(NOT o.is_marker AND o.bytes = s.bytes
              AND (s.md5 IS NULL OR o.md5 IS NULL OR o.md5 = s.md5), o.id, NULL))
FROM audit_objects o JOIN stored_images s ON s.image_id = o.image_id
GROUP BY s.image_id
"""
# A photo stored before the catalog kept MD5s: its bytes are those of its first push.
EXPECTED_SQL = """
UPDATE audit_photos p JOIN audit_objects o ON o.id = p.fit_id
SET p.expected_md5 = o.md5 WHERE p.expected_md5 IS NULL
"""
INTACT_SQL = """
UPDATE audit_photos p JOIN audit_objects o ON o.id = p.latest_id
SET p.intact = (NOT o.is_marker AND o.bytes = p.bytes
                AND (p.expected_md5 IS NULL OR o.md5 IS NULL OR o.md5 = p.expected_md5)) <=> 1
"""
JUDGED = "p.stored_at < %s"  # stored before the walk began: the walk saw its key whole
RESTORE_WHERE = f"NOT p.intact AND p.fit_id IS NOT NULL AND {JUDGED}"
RESTORE_SQL = f"""
SELECT o.object_key, o.version_id FROM audit_photos p JOIN audit_objects o ON o.id = p.fit_id
WHERE {RESTORE_WHERE} ORDER BY p.image_id
"""
# Stored photos judged whose key has no version with the right bytes.
REQUEUE_SQL = """
INSERT INTO audit_requeue (image_id, reason)
SELECT s.image_id, IF(COALESCE(p.live, 0) = 0, 'missing', 'corrupt')
FROM stored_images s
JOIN images i ON i.id = s.image_id AND i.state = 'stored'
LEFT JOIN audit_photos p ON p.image_id = s.image_id
WHERE s.stored_at < %s AND (p.image_id IS NULL OR (NOT p.intact AND p.fit_id IS NULL))
"""
UNCHECKED_SQL = """
SELECT COUNT(*) FROM stored_images s LEFT JOIN audit_photos p ON p.image_id = s.image_id
WHERE s.stored_at >= %s AND NOT (p.intact <=> 1)
"""
ORPHANS_WHERE = "o.image_id IS NULL AND o.is_latest AND NOT o.is_marker"
TEMPORARY_TABLES = ("audit_requeue", "audit_photos", "audit_objects")


def audit_bucket(
    conn,
    client,
    storage: StorageSettings,
    *,
    dry_run: bool = False,
    samples: int = DEFAULT_SAMPLES,
    clock_margin: float = DEFAULT_CLOCK_MARGIN,
    stream: TextIO | None = None,
    progress_seconds: float | None = None,
) -> AuditResult:
    """Walk the bucket, judge every stored photo, restore the overwritten and requeue the
    missing and corrupt unless `dry_run`, and record the audit. See the module docstring."""
    started = time.monotonic()
    progress = ProgressLine(stream, interval=progress_seconds)
    walked_at = datetime.now(UTC).replace(tzinfo=None)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".tsv") as rows:
        listing = walk_versions(client, storage, rows, progress)
        rows.flush()
        progress.show(
            f"listed {listing.versions:,} versions and {listing.markers:,} delete markers"
            f" of s3://{storage.bucket}/{PREFIX}; comparing"
        )
        result = AuditResult(
            f"s3://{storage.bucket}",
            storage.endpoint,
            walked_at,
            full_hash=False,  # the store's MD5s (ETags) are compared, no byte is read
            dry_run=dry_run,
            files=listing.objects,
            bytes=listing.bytes,
        )
        cutoff = walked_at - timedelta(seconds=clock_margin)
        try:
            _stage(conn, rows.name)
            restores = _judge(conn, result, cutoff, samples)
            found = s3_adopt.candidates(conn)
            result.adopted = len(found)
            result.orphans -= len(found)  # each was an orphan: a key no stored photo named
            result.samples["adopted"] = [c.key for c in found[:samples]]
            conn.commit()  # only the temporary tables so far: kept for a retried _apply
            if not dry_run:
                _restore(client, storage, restores, progress)
                adopted = s3_adopt.adopt(conn, client, storage, found, walked_at, progress)
                result.orphans += len(found) - len(adopted)  # bytes not as listed: orphans
                result.adopted = len(adopted)
                result.samples["adopted"] = adopted[:samples]
                progress.show(f"requeueing {result.missing + result.corrupt:,} photos")
                apply_and_record(conn, result, started)
        finally:
            conn.rollback()  # a dry run, or a failure: nothing the audit staged is kept
            _drop_temporary(conn)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _stage(conn, load_path: str) -> None:
    with conn.cursor() as cur:
        _drop_temporary(conn)
        for ddl in (OBJECTS_DDL, PHOTOS_DDL, REQUEUE_DDL):
            cur.execute(ddl)
        cur.execute(LOAD_SQL, (load_path,))
        if cur.warning_count:
            cur.execute("SHOW WARNINGS LIMIT 3")
            detail = "; ".join(str(row[2]) for row in cur.fetchall())
            raise StorageAuditError(f"MariaDB warned loading the listing: {detail}")
        for statement in (NAME_SQL, PHOTOS_SQL, EXPECTED_SQL, INTACT_SQL):
            cur.execute(statement)


def _judge(conn, result: AuditResult, cutoff: datetime, samples: int) -> list[tuple[str, str]]:
    """Counts and samples of every verdict; the requeue set in `audit_requeue`. Returns the
    (key, version id) of every overwritten photo's version to make latest again."""
    with conn.cursor() as cur:
        cur.execute(REQUEUE_SQL, (cutoff,))
        cur.execute("SELECT reason, COUNT(*) FROM audit_requeue GROUP BY reason")
        counts = dict(cur.fetchall())
        result.missing, result.corrupt = counts.get("missing", 0), counts.get("corrupt", 0)
        cur.execute("SELECT COUNT(*) FROM audit_photos WHERE intact")
        result.ok = int(cur.fetchone()[0])
        cur.execute(f"SELECT COUNT(*) FROM audit_objects o WHERE {ORPHANS_WHERE}")
        result.orphans = int(cur.fetchone()[0])
        cur.execute("SELECT COUNT(*) FROM stored_images")
        result.stored = int(cur.fetchone()[0])
        cur.execute(UNCHECKED_SQL, (cutoff,))
        result.unchecked = int(cur.fetchone()[0])
        cur.execute(RESTORE_SQL, (cutoff,))
        restores = [(key, version) for key, version in cur.fetchall()]
        result.restored = len(restores)
        result.samples = {
            "orphans": column(
                cur,
                f"SELECT o.object_key FROM audit_objects o WHERE {ORPHANS_WHERE}"
                " ORDER BY o.id LIMIT %s",
                samples,
            ),
            **{
                reason: column(
                    cur,
                    "SELECT s.path FROM audit_requeue r JOIN stored_images s"
                    " ON s.image_id = r.image_id WHERE r.reason = %s ORDER BY r.image_id"
                    " LIMIT %s",
                    reason,
                    samples,
                )
                for reason in ("missing", "corrupt")
            },
            "restored": [key for key, _ in restores[:samples]],
        }
    return restores


def _restore(
    client, storage: StorageSettings, restores: list[tuple[str, str]], progress: ProgressLine
) -> None:
    for done, (key, version_id) in enumerate(restores, start=1):
        restore_version(client, storage, key, version_id)
        if progress.due():
            progress.show(f"restoring overwritten photos: {done:,} of {len(restores):,}")


def _drop_temporary(conn) -> None:
    with conn.cursor() as cur:
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {', '.join(TEMPORARY_TABLES)}")
