"""`harvester import-yfcc`: stream YFCC100M files into `yfcc_photos` with bulk loads.

The pipeline keeps memory flat whatever the file size:

    file (plain, .gz or .bz2, told by its magic bytes) -> 4 MiB blocks -> lines
    -> harvester.yfcc.rows.parse_fields -> TSV rows of a chunk (~200k), sorted by photo id
    -> an unlinked temporary file -> loader thread: LOAD DATA LOCAL INFILE into a
       TEMPORARY staging table, one INSERT ... SELECT ... ON DUPLICATE KEY UPDATE into
       yfcc_photos, COMMIT, TRUNCATE.

Parsing the next chunk overlaps loading the previous one: PyMySQL waits on MariaDB without
the GIL, and MariaDB does its part on another core. Memory is bounded by one chunk being
filled (~130 MB peak RSS with 200k rows); the others wait on disk.

Each chunk is one transaction, and loading a line again writes the same row (an unchanged
row is not even rewritten), so an import killed anywhere and run again ends with exactly the
rows of an import never interrupted; the second run only re-reads what was done. A photo
listed twice keeps its last line: REPLACE into the staging table within a chunk, and later
chunks upsert over earlier ones.

The staging table is TEMPORARY, so it belongs to this connection alone: imports running in
parallel never see each other's rows, and a killed import leaves nothing behind. Two
imports upserting the same photos at once can deadlock; the chunk that loses is rolled back
and loaded again.

Over 500 lines, one module: the reader, the chunker and the loader thread are one pipeline
whose stages share the chunk's format and the restart rule above; apart, each would have to
restate the other's invariants.
"""

from __future__ import annotations

import bz2
import gzip
import os
import queue
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

import pymysql

from ccmirror_common.hosts import DEFAULT_POLICY, HostPolicy
from ccmirror_common.progress import ProgressLine, format_duration
from harvester.db import LOCK_ERRORS, connect, upsert_counts
from harvester.yfcc.rows import SKIP_REASONS, TSV_COLUMNS, LicenseMap, parse_fields, tsv_line

CHUNK_LINES = 200_000  # rows per LOAD DATA + upsert: a couple of seconds of MariaDB work
READ_BLOCK = 4 << 20  # bytes decompressed and split into lines at a time
MAX_LINE_BYTES = 16 << 20  # a longer "line" is not YFCC100M (the real ones are < 100 KiB)
CORRUPT_LISTED = 20  # corrupt lines printed with file:line; the rest are only counted
GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
UTF8_BOM = b"\xef\xbb\xbf"

LOCK_RETRIES = 5
STAGING = "yfcc_staging"
STAGING_DDL = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} (
    photo_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    owner VARCHAR(64) NOT NULL,
    owner_name VARCHAR(255) NOT NULL,
    title VARCHAR(1024) NOT NULL,
    license_id SMALLINT UNSIGNED NOT NULL,
    page_url VARCHAR(255) NOT NULL,
    image_url VARCHAR(512) NOT NULL,
    image_size VARCHAR(4) NOT NULL,
    fallback_url VARCHAR(512) NULL,
    uploaded_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""
_COLUMNS = ", ".join(TSV_COLUMNS)
_DATA_COLUMNS = TSV_COLUMNS[1:]
# LOAD DATA's defaults spelled out, so a server's settings cannot change how rows are read.
LOAD_SQL = (
    f"LOAD DATA LOCAL INFILE %s REPLACE INTO TABLE {STAGING} CHARACTER SET utf8mb4"
    r" FIELDS TERMINATED BY '\t' ENCLOSED BY '' ESCAPED BY '\\' LINES TERMINATED BY '\n'"
    f" ({_COLUMNS})"
)
# `last_seen` is assigned first, so it still compares the stored values; the comparison is
# on bytes (the column collation would call 'Cafe' and 'café' equal). A row whose values
# are all the same is not written at all: re-importing a file changes nothing.
_UNCHANGED = " AND ".join(
    f"CAST(yfcc_photos.{c} AS BINARY) <=> CAST(VALUES({c}) AS BINARY)" for c in _DATA_COLUMNS
)
# Column names are qualified: the staging table's are the same.
UPSERT_SQL = (
    f"INSERT INTO yfcc_photos ({_COLUMNS}) SELECT {_COLUMNS} FROM {STAGING} ORDER BY photo_id"
    " ON DUPLICATE KEY UPDATE yfcc_photos.last_seen ="
    f" IF({_UNCHANGED}, yfcc_photos.last_seen, CURRENT_TIMESTAMP(6)), "
    + ", ".join(f"yfcc_photos.{c} = VALUES({c})" for c in _DATA_COLUMNS)
)


class YfccImportError(RuntimeError):
    """A file that cannot be imported, or a load MariaDB did not take cleanly; one line."""


@dataclass
class ImportStats:
    files: int = 0
    lines: int = 0
    imported: int = 0  # lines turned into rows (a photo listed twice counts twice)
    new: int = 0  # rows inserted
    changed: int = 0  # existing rows whose values changed
    unchanged: int = 0  # existing rows left as they were
    skipped: Counter = field(default_factory=Counter)
    corrupt: Counter = field(default_factory=Counter)
    broken_files: list[str] = field(default_factory=list)  # compressed data ended early
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "lines": self.lines,
            "imported": self.imported,
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "skipped": dict(sorted(self.skipped.items())),
            "corrupt": dict(sorted(self.corrupt.items())),
            "broken_files": list(self.broken_files),
            "seconds": round(self.seconds, 3),
            "lines_per_second": round(self.lines / self.seconds) if self.seconds else None,
        }


def format_summary(stats: ImportStats) -> str:
    rate = stats.lines / stats.seconds if stats.seconds else 0.0
    plural = "" if stats.files == 1 else "s"
    lines = [
        f"read {stats.lines:,} lines from {stats.files} file{plural}"
        f" in {stats.seconds:.1f}s ({rate:,.0f} lines/s)",
        f"imported {stats.imported:,}: {stats.new:,} new photos, {stats.changed:,} changed,"
        f" {stats.unchanged:,} unchanged",
        _reasons("skipped", stats.skipped),
        _reasons("corrupt", stats.corrupt),
    ]
    lines += [f"broken: {message}" for message in stats.broken_files]
    return "\n".join(lines)


def _reasons(label: str, counts: Counter) -> str:
    total = sum(counts.values())
    detail = ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items()))
    return f"{label} {total:,}" + (f": {detail}" if detail else "")


# --- files ---------------------------------------------------------------------------------


def check_files(paths: Sequence[str | Path]) -> list[Path]:
    """Every path is a readable file, or YfccImportError before anything is written."""
    checked = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            raise YfccImportError(f"{path} is a directory, not a YFCC100M file")
        try:
            with open(path, "rb") as file:
                file.read(1)
        except OSError as exc:
            raise YfccImportError(f"cannot read {path}: {exc.strerror or exc}") from None
        checked.append(path)
    return checked


@contextmanager
def open_dataset(path: Path) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(decompressed stream, the file itself): gzip or bzip2 by magic bytes, else plain.

    The file itself is returned for its position: progress counts compressed bytes."""
    raw = open(path, "rb")  # noqa: SIM115 - closed below
    try:
        magic = raw.read(3)
        raw.seek(0)
        if magic[:2] == GZIP_MAGIC:
            stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        elif magic == BZIP2_MAGIC:
            stream = bz2.BZ2File(raw)  # type: ignore[assignment]
        else:
            stream = raw
        try:
            yield stream, raw
        finally:
            if stream is not raw:
                stream.close()
    finally:
        raw.close()


# --- database ------------------------------------------------------------------------------


def connect_loader(db_url: str):
    """Without CLIENT.FOUND_ROWS: the upsert's counts tell new, changed and unchanged apart."""
    return connect(db_url, found_rows=False, local_infile=True)  # LOAD DATA of its own files


def load_license_map(conn) -> LicenseMap:
    """The built-in license URLs, overridden by the `licenses` table where it has rows."""
    with conn.cursor() as cur:
        cur.execute("SELECT id, url, is_cc FROM licenses")
        rows = cur.fetchall()
    conn.commit()
    return LicenseMap.with_table(rows) if rows else LicenseMap.builtin()


class Chunk:
    """Rows for one load. They are kept in memory until the chunk is full, then sorted by
    photo id and written to an unlinked temporary file that LOAD DATA reads through
    /proc/self/fd (a killed import leaves no file behind).

    Why sort: rows arrive in the dataset's order, which is random by photo id. Sorted, the
    staging table is built by appending and the upsert walks yfcc_photos' primary key in
    order, which took the MariaDB side of a chunk from ~3.5 s to ~2 s. The sort is stable,
    so a photo listed twice keeps its last line (LOAD DATA ... REPLACE).
    """

    WRITE_ROWS = 20_000  # rows encoded and written at a time: no second copy of the chunk

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self.rows: list[bytes] = []  # TSV lines, UTF-8: bytes cost least to hold
        self.file: BinaryIO | None = None
        self.path = ""
        self.count = 0  # rows written by seal()

    def seal(self) -> None:
        """Sort the rows and write them out; the chunk is then ready for LOAD DATA."""
        self.rows.sort(key=_photo_id)
        self.file, self.path = _temporary_file(self.directory)
        rows, step = self.rows, self.WRITE_ROWS
        for start in range(0, len(rows), step):
            self.file.write(b"".join(rows[start : start + step]))
        self.file.flush()
        self.count = len(rows)
        self.rows = []

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _photo_id(row: bytes) -> int:
    return int(row[: row.index(b"\t")])


def _temporary_file(directory: str | None) -> tuple[BinaryIO, str]:
    file = tempfile.TemporaryFile(prefix="ccmirror-yfcc-", dir=directory)  # noqa: SIM115
    path = f"/proc/self/fd/{file.fileno()}"
    if os.path.exists(path):
        return file, path  # type: ignore[return-value]
    file.close()  # no /proc: a named file, removed when closed
    named = tempfile.NamedTemporaryFile(prefix="ccmirror-yfcc-", suffix=".tsv", dir=directory)  # noqa: SIM115
    return named, named.name  # type: ignore[return-value]


class ChunkLoader:
    """Loads chunks in order on a thread of its own, one transaction per chunk.

    The queue holds at most one chunk, so the parser is at most one chunk ahead: at most
    one chunk is in memory (being filled) and two on disk (one queued, one loading).
    """

    def __init__(self, conn, stats: ImportStats) -> None:
        self.conn = conn
        self.stats = stats
        self.error: BaseException | None = None
        self._queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="yfcc-loader", daemon=True)
        self._thread.start()

    def submit(self, chunk: Chunk | None) -> None:
        """Queue `chunk` (None: no more); raises the loader's error if it failed."""
        while True:
            self._raise_error()
            try:
                self._queue.put(chunk, timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.submit(None)
        while self._thread.is_alive():
            self._thread.join(0.2)
        self._raise_error()

    def _raise_error(self) -> None:
        if self.error is not None:
            if isinstance(self.error, pymysql.err.MySQLError | YfccImportError):
                raise self.error
            raise YfccImportError(f"loading a chunk failed: {self.error!r}") from self.error

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            try:
                self._load(chunk)
            except BaseException as exc:  # handed to the parsing thread
                self.error = exc
                return
            finally:
                chunk.close()

    def _load(self, chunk: Chunk) -> None:
        # Imports running in parallel over the same photos can deadlock on row locks;
        # the loser's chunk is rolled back whole, so loading it again is safe.
        for attempt in range(1, LOCK_RETRIES + 1):
            try:
                self._load_once(chunk)
                return
            except pymysql.err.OperationalError as exc:
                if exc.args[0] not in LOCK_ERRORS or attempt == LOCK_RETRIES:
                    raise
                self.conn.rollback()
                with self.conn.cursor() as cur:
                    cur.execute(f"TRUNCATE TABLE {STAGING}")
                time.sleep(0.1 * attempt)

    def _load_once(self, chunk: Chunk) -> None:
        with self.conn.cursor() as cur:
            cur.execute(LOAD_SQL, (chunk.path,))
            self._check_warnings(cur, "LOAD DATA")
            counts = upsert_counts(cur, cur.execute(UPSERT_SQL))
            self._check_warnings(cur, "the upsert")
            self.conn.commit()
            cur.execute(f"TRUNCATE TABLE {STAGING}")
        if counts:
            self.stats.new += counts.new
            self.stats.changed += counts.changed
            self.stats.unchanged += counts.unchanged

    def _check_warnings(self, cur, what: str) -> None:
        # Every row was checked before it was written: a warning is a bug to stop on, not
        # data to lose silently.
        if cur.warning_count:
            cur.execute("SHOW WARNINGS LIMIT 3")
            detail = "; ".join(str(row[2]) for row in cur.fetchall())
            raise YfccImportError(f"MariaDB warned during {what}: {detail}")


# --- progress ------------------------------------------------------------------------------


class ImportProgress:
    """Lines read and their rate, bytes read of all files (compressed), ETA."""

    def __init__(self, total_bytes: int, stream: TextIO | None = None) -> None:
        self.total_bytes = max(total_bytes, 1)
        self.out = ProgressLine(stream)

    def maybe_report(self, stats: ImportStats, done_bytes: int) -> None:
        if self.out.due():
            self.report(stats, done_bytes)

    def report(self, stats: ImportStats, done_bytes: int, final: bool = False) -> None:
        self.out.show(self.line(stats, done_bytes), final)

    def clear(self) -> None:
        self.out.clear()

    def line(self, stats: ImportStats, done_bytes: int) -> str:
        elapsed = self.out.elapsed
        rate = done_bytes / elapsed
        eta = (self.total_bytes - done_bytes) / rate if rate > 0 else None
        return (
            f"import-yfcc: {stats.lines:,} lines, {stats.lines / elapsed:,.0f} lines/s"
            f" | {done_bytes / 1e6:,.1f}/{self.total_bytes / 1e6:,.1f} MB"
            f" ({100.0 * done_bytes / self.total_bytes:.1f}%)"
            f" | imported {stats.imported:,}, skipped {sum(stats.skipped.values()):,},"
            f" corrupt {sum(stats.corrupt.values()):,} | ETA {format_duration(eta)}"
        )


# --- the import ----------------------------------------------------------------------------


class YfccImporter:
    """Reads files, parses lines, fills chunks and hands them to a ChunkLoader."""

    def __init__(
        self,
        conn,
        licenses: LicenseMap,
        *,
        chunk_lines: int = CHUNK_LINES,
        report: TextIO | None = None,
        progress: ImportProgress | None = None,
        temp_dir: str | None = None,
        hosts: HostPolicy = DEFAULT_POLICY,
    ) -> None:
        self.conn = conn
        self.licenses = licenses
        self.hosts = hosts  # image hosts a row may name (`fetch.allow_hosts`)
        self.chunk_lines = chunk_lines
        # The first chunks are small and grow by half each time: MariaDB starts within a
        # fraction of a second, and each chunk is parsed in about the time the one before
        # takes to load, so neither side waits for the other while the pipeline fills.
        self.limit = max(1, chunk_lines // 8)
        self.report = report or sys.stderr
        self.progress = progress
        self.temp_dir = temp_dir
        self.stats = ImportStats()
        self.path = Path()
        self.line_no = 0
        self.listed = 0  # corrupt lines seen, for the first CORRUPT_LISTED to be printed
        self.done_bytes = 0  # compressed bytes of the files finished
        self.chunk: Chunk | None = None
        self.loader: ChunkLoader | None = None

    def run(self, paths: Iterable[Path]) -> ImportStats:
        started = time.monotonic()
        self.loader = ChunkLoader(self.conn, self.stats)
        self.chunk = Chunk(self.temp_dir)
        for path in paths:
            self._import_file(path)
        if self.chunk.rows:
            self._submit()
        self.chunk = None
        self.loader.finish()
        self.stats.seconds = time.monotonic() - started
        if self.progress:
            self.progress.report(self.stats, self.done_bytes, final=True)
        return self.stats

    def _import_file(self, path: Path) -> None:
        self.path, self.line_no = path, 0
        self.stats.files += 1
        with open_dataset(path) as (stream, raw):
            try:
                self._read(stream, raw)
            except (OSError, EOFError, zlib.error) as exc:
                # A truncated or damaged .gz/.bz2: keep what was read, say where it broke.
                self.stats.broken_files.append(
                    f"{path}: unreadable after line {self.line_no:,} ({exc})"
                )
            self.done_bytes += raw.tell()

    def _read(self, stream: BinaryIO, raw: BinaryIO) -> None:
        pending = b""
        oversized = False  # inside a line longer than MAX_LINE_BYTES: dropped, counted
        first = True
        while block := stream.read(READ_BLOCK):
            if first and block.startswith(UTF8_BOM):
                block = block[len(UTF8_BOM) :]
            first = False
            end = block.rfind(b"\n")
            if end < 0:
                if not oversized:
                    pending += block
                    if len(pending) > MAX_LINE_BYTES:
                        oversized, pending = True, b""
                continue
            data, pending = pending + block[: end + 1], block[end + 1 :]
            first_end = data.find(b"\n")
            if oversized or first_end > MAX_LINE_BYTES:
                oversized = False
                data = data[first_end + 1 :]
                self._reject_one("line_too_long")
            self._feed(data)
            self._after_block(raw)
        if oversized or len(pending) > MAX_LINE_BYTES:
            self._reject_one("line_too_long")
        elif pending:  # a last line without its newline
            self._feed(pending + b"\n")
        self._after_block(raw)

    def _feed(self, data: bytes) -> None:
        """Whole lines (`data` ends with a newline) through the parser."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self._feed_mixed(data)
            return
        lines = text.split("\n")
        lines.pop()  # after the last newline
        self._parse(lines)

    def _feed_mixed(self, data: bytes) -> None:
        # Rare: a block with bytes that are not UTF-8. Runs of good lines still go through
        # the fast loop; each bad line is counted where it is.
        run: list[str] = []
        for raw_line in data.split(b"\n")[:-1]:
            try:
                run.append(raw_line.decode("utf-8"))
            except UnicodeDecodeError:
                self._parse(run)
                run = []
                self._reject_one("bad_encoding")
        self._parse(run)

    def _parse(self, lines: list[str]) -> None:
        """The hot loop: every line of the dataset passes here once."""
        parse, tsv, licenses, hosts = parse_fields, tsv_line, self.licenses, self.hosts
        rows = self.chunk.rows  # type: ignore[union-attr]
        before = len(rows)
        keep = rows.append
        number = self.line_no
        for line in lines:
            number += 1
            result = parse(line, licenses, hosts)
            if type(result) is tuple:
                keep(tsv(result).encode())
            else:
                self._reject(number, result)
        self.line_no = number
        self.stats.lines += len(lines)
        self.stats.imported += len(rows) - before

    def _reject_one(self, reason: str) -> None:
        self.line_no += 1
        self.stats.lines += 1
        self._reject(self.line_no, reason)

    def _reject(self, number: int, reason: str) -> None:
        if reason in SKIP_REASONS:
            self.stats.skipped[reason] += 1
            return
        self.stats.corrupt[reason] += 1
        self.listed += 1
        if self.listed <= CORRUPT_LISTED:
            if self.progress:
                self.progress.clear()
            more = " (further corrupt lines are counted, not listed)"
            tail = more if self.listed == CORRUPT_LISTED else ""
            print(f"{self.path}:{number}: corrupt line: {reason}{tail}", file=self.report)

    def _submit(self) -> None:
        assert self.chunk is not None and self.loader is not None
        self.chunk.seal()
        self.loader.submit(self.chunk)

    def _after_block(self, raw: BinaryIO) -> None:
        assert self.chunk is not None and self.loader is not None
        if len(self.chunk.rows) >= self.limit:
            self._submit()
            self.chunk = Chunk(self.temp_dir)
            self.limit = min(self.chunk_lines, self.limit * 3 // 2 + 1)
        if self.progress:
            self.progress.maybe_report(self.stats, self.done_bytes + raw.tell())


def import_files(
    db_url: str,
    paths: Sequence[str | Path],
    *,
    chunk_lines: int = CHUNK_LINES,
    report: TextIO | None = None,
    progress_stream: TextIO | None = None,
    temp_dir: str | None = None,
    hosts: HostPolicy = DEFAULT_POLICY,
) -> ImportStats:
    """Import YFCC100M files into yfcc_photos; corrupt lines (`host_not_allowed` among them:
    an image URL off `hosts`) are reported on `report`."""
    files = check_files(paths)
    total = sum(path.stat().st_size for path in files)
    conn = connect_loader(db_url)
    try:
        licenses = load_license_map(conn)
        with conn.cursor() as cur:
            cur.execute(STAGING_DDL)
            cur.execute(f"TRUNCATE TABLE {STAGING}")
        importer = YfccImporter(
            conn,
            licenses,
            chunk_lines=chunk_lines,
            report=report,
            progress=ImportProgress(total, progress_stream),
            temp_dir=temp_dir,
            hosts=hosts,
        )
        return importer.run(files)
    finally:
        conn.close()
