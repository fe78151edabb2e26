"""The storage audit's database side (`harvester audit-storage --inventory FILE`): compare
what storage holds with what the catalog says it holds, and send bad files back to the queue.

The inventory comes from the storage minion (`_modules/ccmirror_audit.py` writes it and
documents its format): one line per file under `images/` with its size and sha256. It is
checked line by line, then loaded into a temporary table (LOAD DATA) and compared with
`stored_images` in a few set-based statements, whatever the number of files:

- ok: a file at the photo's recorded path with the recorded size and sha256;
- corrupt: a file at that path with other bytes, or one storage could not read: requeued;
- missing: a stored photo with no file at its path: requeued;
- orphan: a file no stored photo names (a push whose report was lost, a stray file):
  counted and the first few named, never deleted;
- unchecked: photos stored after the walk began (less `clock_margin`, the clocks' possible
  skew): the walk may have passed their directory before the file arrived, so the next
  audit judges them.

A requeued photo is `pending` again with no lease, no attempts, `last_error` saying why, and
its `stored_images` row gone: the next lease fetches it again, and the push replaces the bad
file (rsync --checksum). A photo whose file is fine is not touched. Each audit (not a dry
run) is a row of `storage_audits`, which `harvester status` shows.

Bad input (no file, a malformed line, a cut file) is one error before anything is written.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from ccmirror_common.layout import IMAGE_PATH
from ccmirror_common.progress import ProgressLine, format_duration
from harvester.db import with_retry

log = logging.getLogger("harvester.audit.storage")

FORMAT = "ccmirror-storage-inventory v1"
END = "# end"
# path, bytes, mtime (ns), sha256 hex or "-" (unreadable)
LINE = re.compile(r"^([^\t]+)\t(\d{1,19})\t(-?\d{1,20})\t([0-9a-f]{64}|-)$")
MAX_PHOTO_ID = 2**64 - 1
PATH_CHARS = 1024  # stored_images.path
NULL = "\\N"  # LOAD DATA's NULL
DEFAULT_SAMPLES = 20
DEFAULT_CLOCK_MARGIN = 2.0  # seconds; NTP keeps the fleet's clocks well within this

FILES_DDL = """
CREATE TEMPORARY TABLE audit_files (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    photo_id BIGINT UNSIGNED NULL,
    path VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    bytes BIGINT UNSIGNED NOT NULL,
    sha256 BINARY(32) NULL,
    KEY audit_files_photo (photo_id)
) ENGINE=InnoDB
"""
# LOAD DATA's defaults spelled out, so a server's settings cannot change how rows are read.
# The inventory escapes a path's backslash, tab and newline as LOAD DATA reads them.
LOAD_SQL = (
    "LOAD DATA LOCAL INFILE %s INTO TABLE audit_files CHARACTER SET utf8mb4"
    r" FIELDS TERMINATED BY '\t' ENCLOSED BY '' ESCAPED BY '\\' LINES TERMINATED BY '\n'"
    " (photo_id, path, bytes, @sha) SET sha256 = UNHEX(@sha)"
)
# Each stored photo that has a file at its recorded path, and whether the bytes match.
SEEN_DDL = """
CREATE TEMPORARY TABLE audit_seen (
    image_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    file_id BIGINT UNSIGNED NOT NULL,
    intact BOOL NOT NULL,
    KEY audit_seen_file (file_id)
) ENGINE=InnoDB
"""
SEEN_SQL = """
INSERT INTO audit_seen (image_id, file_id, intact)
SELECT s.image_id, f.id, (f.sha256 = s.sha256 AND f.bytes = s.bytes) <=> 1
FROM audit_files f
JOIN images i ON i.photo_id = f.photo_id
JOIN stored_images s ON s.image_id = i.id AND CAST(s.path AS BINARY) = CAST(f.path AS BINARY)
"""
REQUEUE_DDL = """
CREATE TEMPORARY TABLE audit_requeue (
    image_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    reason ENUM('missing', 'corrupt') NOT NULL
) ENGINE=InnoDB
"""
# Stored photos judged (stored before the walk began) whose file is missing or differs.
REQUEUE_SQL = """
INSERT INTO audit_requeue (image_id, reason)
SELECT s.image_id, IF(v.image_id IS NULL, 'missing', 'corrupt')
FROM stored_images s
JOIN images i ON i.id = s.image_id AND i.state = 'stored'
LEFT JOIN audit_seen v ON v.image_id = s.image_id
WHERE s.stored_at < %s AND (v.image_id IS NULL OR NOT v.intact)
"""
UNCHECKED_SQL = """
SELECT COUNT(*) FROM stored_images s
LEFT JOIN audit_seen v ON v.image_id = s.image_id
WHERE s.stored_at >= %s AND (v.image_id IS NULL OR NOT v.intact)
"""
APPLY_SQL = (
    """
UPDATE images i JOIN audit_requeue r ON r.image_id = i.id
SET i.state = 'pending', i.lease_id = 0, i.attempts = 0,
    i.last_error = CONCAT('storage audit: file ', r.reason)
WHERE i.state = 'stored'
""",
    """
DELETE s FROM stored_images s JOIN audit_requeue r ON r.image_id = s.image_id
""",
)
TEMPORARY_TABLES = ("audit_requeue", "audit_seen", "audit_files")
RESULT_COLUMNS = (
    "storage",
    "root",
    "walked_at",
    "full_hash",
    "dry_run",
    "files",
    "bytes",
    "stored",
    "ok",
    "missing",
    "corrupt",
    "unchecked",
    "orphans",
    "unreadable",
    "requeued",
    "restored",
    "adopted",
    "samples",
    "seconds",
    "finished_at",
)


class InventoryError(ValueError):
    """An inventory that cannot be used; nothing was written."""


@dataclass
class Inventory:
    """An inventory checked and turned into LOAD DATA rows (`load_path`)."""

    storage: str
    root: str
    walked_at: datetime  # naive UTC, as the DATETIME columns hold it
    full_hash: bool
    files: int
    bytes: int
    unreadable: int
    load_path: str


@dataclass
class AuditResult:
    storage: str
    root: str
    walked_at: datetime
    full_hash: bool
    dry_run: bool
    files: int = 0  # on storage
    bytes: int = 0
    stored: int = 0  # stored photos in the catalog
    ok: int = 0
    missing: int = 0
    corrupt: int = 0
    unchecked: int = 0
    orphans: int = 0
    unreadable: int = 0
    requeued: int = 0
    restored: int = 0  # overwritten photos made latest again (S3), or that would be (dry run)
    adopted: int = 0  # photos found on storage (S3) and marked stored, or that would be
    samples: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    finished_at: datetime | None = None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["walked_at"] = _iso(self.walked_at)
        data["finished_at"] = _iso(self.finished_at)
        data["summary"] = audit_line(data)
        return data


# --- reading the inventory -----------------------------------------------------------------


def read_inventory(path: Path, out: TextIO, progress: ProgressLine | None = None) -> Inventory:
    """Check every line of the inventory at `path` and write its LOAD DATA rows (photo id or
    \\N, path, bytes, sha256 hex or \\N) to `out`. InventoryError names the first bad line."""
    try:
        with _open_text(path) as lines:
            return _parse(path, lines, out, progress)
    except (OSError, EOFError, zlib.error) as exc:
        raise InventoryError(f"cannot read the inventory {path}: {exc}") from None


def _open_text(path: Path):
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    # A file name that is not UTF-8 can only be an orphan: shown with U+FFFD, never matched.
    if compressed:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="\n")
    return open(path, encoding="utf-8", errors="replace", newline="\n")


def _parse(path: Path, lines, out: TextIO, progress: ProgressLine | None) -> Inventory:
    header = _header(path, next(lines, ""))
    files = total_bytes = unreadable = 0
    end = None
    for number, line in enumerate(lines, start=2):
        if end is not None:
            raise InventoryError(f"{path}:{number}: a line after the end line")
        line = line.rstrip("\n")
        if line.startswith(END + "\t"):
            end = (number, _fields(path, number, line[len(END) + 1 :]))
            continue
        match = LINE.match(line)
        if match is None:
            raise InventoryError(f"{path}:{number}: not path<TAB>bytes<TAB>mtime<TAB>sha256")
        raw_path, size, _mtime, digest = match.groups()
        layout = IMAGE_PATH.match(raw_path)  # else only an orphan
        photo_id = int(layout[1]) if layout and int(layout[1]) <= MAX_PHOTO_ID else None
        files += 1
        total_bytes += int(size)
        unreadable += digest == "-"
        if len(raw_path) > PATH_CHARS:  # only a stray file's: named, never matched
            raw_path = raw_path[:PATH_CHARS].rstrip("\\")  # no escape cut in half
        out.write(
            f"{NULL if photo_id is None else photo_id}\t{raw_path}\t{size}"
            f"\t{NULL if digest == '-' else digest}\n"
        )
        if progress is not None and progress.due():
            progress.show(f"reading the inventory: {files:,} files")
    if end is None:
        raise InventoryError(f"{path} ends early (no end line): copy it again")
    number, counts = end
    if counts.get("files") != str(files) or counts.get("bytes") != str(total_bytes):
        raise InventoryError(
            f"{path}:{number}: the end line counts {counts.get('files')} files and"
            f" {counts.get('bytes')} bytes, the lines {files} and {total_bytes}"
        )
    return Inventory(
        storage=header["storage"],
        root=header.get("root", ""),
        walked_at=header["walked_at"],
        full_hash=header.get("full") == "1",
        files=files,
        bytes=total_bytes,
        unreadable=unreadable,
        load_path=out.name,
    )


def _header(path: Path, line: str) -> dict:
    if not line.startswith(f"# {FORMAT}\t"):
        raise InventoryError(f"{path}:1: not a storage inventory (no '# {FORMAT}' header)")
    fields = _fields(path, 1, line.rstrip("\n")[len(FORMAT) + 3 :])
    if not fields.get("storage") or "started" not in fields:
        raise InventoryError(f"{path}:1: the header names no storage= or started=")
    try:
        started = datetime.strptime(fields["started"], "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        raise InventoryError(
            f"{path}:1: started= is not a UTC time: {fields['started']!r}"
        ) from None
    return fields | {"walked_at": started}


def _fields(path: Path, number: int, text: str) -> dict[str, str]:
    pairs = [part.partition("=") for part in text.split("\t")]
    if any(not sep for _, sep, _ in pairs):
        raise InventoryError(f"{path}:{number}: fields must be name=value")
    return {name: value for name, _, value in pairs}


# --- comparing with the catalog -----------------------------------------------------------


def audit_storage(
    conn,
    inventory_path: Path,
    *,
    dry_run: bool = False,
    samples: int = DEFAULT_SAMPLES,
    clock_margin: float = DEFAULT_CLOCK_MARGIN,
    stream: TextIO | None = None,
    progress_seconds: float | None = None,
) -> AuditResult:
    """Compare the inventory with the catalog; requeue missing and corrupt files unless
    `dry_run`, and record the audit. See the module docstring."""
    started = time.monotonic()
    progress = ProgressLine(stream, interval=progress_seconds)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".tsv") as rows:
        inventory = read_inventory(inventory_path, rows, progress)
        rows.flush()
        progress.show(f"read {inventory.files:,} files from {inventory.storage}; comparing")
        result = AuditResult(
            inventory.storage,
            inventory.root,
            inventory.walked_at,
            inventory.full_hash,
            dry_run,
            files=inventory.files,
            bytes=inventory.bytes,
            unreadable=inventory.unreadable,
        )
        cutoff = inventory.walked_at - timedelta(seconds=clock_margin)
        try:
            _stage(conn, rows.name)
            _judge(conn, result, cutoff, samples)
            conn.commit()  # only the temporary tables so far: kept for a retried _apply
            if not dry_run:
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
        for ddl in (FILES_DDL, SEEN_DDL, REQUEUE_DDL):
            cur.execute(ddl)
        cur.execute(LOAD_SQL, (load_path,))
        if cur.warning_count:
            cur.execute("SHOW WARNINGS LIMIT 3")
            detail = "; ".join(str(row[2]) for row in cur.fetchall())
            raise InventoryError(f"MariaDB warned loading the inventory: {detail}")
        cur.execute(SEEN_SQL)


def _judge(conn, result: AuditResult, cutoff: datetime, samples: int) -> None:
    """Counts and samples of every verdict; the requeue set in `audit_requeue`."""
    with conn.cursor() as cur:
        cur.execute(REQUEUE_SQL, (cutoff,))
        cur.execute("SELECT reason, COUNT(*) FROM audit_requeue GROUP BY reason")
        counts = dict(cur.fetchall())
        result.missing, result.corrupt = counts.get("missing", 0), counts.get("corrupt", 0)
        cur.execute("SELECT COUNT(*), COALESCE(SUM(intact), 0) FROM audit_seen")
        seen, ok = cur.fetchone()
        result.ok = int(ok)
        result.orphans = result.files - int(seen)
        cur.execute("SELECT COUNT(*) FROM stored_images")
        result.stored = int(cur.fetchone()[0])
        cur.execute(UNCHECKED_SQL, (cutoff,))
        result.unchecked = int(cur.fetchone()[0])
        result.samples = {
            "orphans": column(
                cur,
                "SELECT f.path FROM audit_files f LEFT JOIN audit_seen v ON v.file_id = f.id"
                " WHERE v.file_id IS NULL ORDER BY f.id LIMIT %s",
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
        }


def column(cur, query: str, *args) -> list[str]:
    cur.execute(query, args)
    return [row[0] for row in cur.fetchall()]


def apply_and_record(conn, result: AuditResult, started: float) -> None:
    """Requeue and record in one transaction (again when it loses a deadlock to the queue)."""

    def work(cur) -> int:
        cur.execute(APPLY_SQL[0])
        requeued = cur.rowcount
        cur.execute(APPLY_SQL[1])
        result.requeued = requeued
        result.finished_at = _utc_now()
        result.seconds = round(time.monotonic() - started, 3)
        record = result.as_dict() | {
            "walked_at": result.walked_at,
            "finished_at": result.finished_at,
            "samples": json.dumps(result.samples),
        }
        cur.execute(
            f"INSERT INTO storage_audits ({', '.join(RESULT_COLUMNS)})"
            f" VALUES ({', '.join(['%s'] * len(RESULT_COLUMNS))})",
            [record[c] for c in RESULT_COLUMNS],
        )
        return requeued

    with_retry(conn, work)


def _drop_temporary(conn) -> None:
    with conn.cursor() as cur:
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {', '.join(TEMPORARY_TABLES)}")


# --- the last audit, for `harvester status` and `salt-run batch.status` -------------------


def last_audit(conn) -> dict | None:
    """The latest recorded audit with a one-line `summary`; None before the first."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(RESULT_COLUMNS)} FROM storage_audits ORDER BY id DESC LIMIT 1"
        )
        row = cur.fetchone()
    conn.commit()
    if row is None:
        return None
    audit = dict(zip(RESULT_COLUMNS, row, strict=True))
    audit["samples"] = json.loads(audit["samples"] or "{}")
    for name in ("walked_at", "finished_at"):
        audit[name] = _iso(audit[name])
    for name in ("full_hash", "dry_run"):
        audit[name] = bool(audit[name])
    audit["seconds"] = float(audit["seconds"])
    audit["summary"] = audit_line(audit)
    return audit


def audit_line(audit: dict | None) -> str:
    """One line an operator reads: when, where, and every verdict's count."""
    if audit is None:
        return "not run"
    when = (audit.get("finished_at") or audit.get("walked_at") or "?").replace("T", " ")[:16]
    line = (
        f"{when} UTC, {audit['storage']}: {audit['files']:,} files, {audit['ok']:,} ok,"
        f" {audit['missing']:,} missing, {audit['corrupt']:,} corrupt,"
        f" {audit['orphans']:,} orphans"
    )
    if audit.get("dry_run"):
        line += f"; dry run: {audit['missing'] + audit['corrupt']:,} would be requeued"
    else:
        line += f"; {audit['requeued']:,} requeued"
    if audit.get("restored"):
        verb = "would be restored" if audit.get("dry_run") else "restored"
        line += f"; {audit['restored']:,} overwritten {verb}"
    if audit.get("adopted"):
        verb = "would be adopted" if audit.get("dry_run") else "adopted"
        line += f"; {audit['adopted']:,} found on storage {verb} (marked stored)"
    if audit.get("unchecked"):
        line += f"; {audit['unchecked']:,} stored since the walk began, not checked"
    return line + f" ({format_duration(audit.get('seconds'))})"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc_now() -> datetime:
    """Naive UTC, as the DATETIME columns hold it."""
    return datetime.now(UTC).replace(tzinfo=None)


def check_readable(path: Path) -> None:
    """Fail before the database is touched when the inventory cannot be opened."""
    if not os.path.isfile(path):
        raise InventoryError(f"no inventory at {path}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InventoryError(f"cannot read the inventory {path}: {exc}") from None
