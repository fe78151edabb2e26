"""Catalog backups: `mariadb-dump --single-transaction` through zstd into the bucket, and
the restore of the newest into a fresh catalog.

Backup: one consistent snapshot (InnoDB's REPEATABLE READ transaction: the queue and the
harvesters keep writing, nothing is locked) streamed `mariadb-dump | zstd` straight into a
multipart upload; the upload completes only when both programs exit 0, so a failed dump
leaves no object. Then the retention hides all but the `keep` newest (store.prune).

Restore: refused unless the target catalog has no photo (a fresh db-1; `force` overrides).
The backup is loaded into a staging database `<db>_restore` (`zstd -d | mariadb`: zstd's frame
checksum refuses a cut stream), then swapped in with one atomic RENAME TABLE; the catalog's
tables as they were are dropped only after. A failure anywhere before the swap drops the
staging database: the catalog is as it was. A backup of an older release is migrated to this
release's schema after the swap.

The database login is a URL (harvester/db.py); the password reaches the clients in a 0600
defaults file, never on a command line. The restore creates and drops databases: on db-1 it
runs as root over the unix socket (salt/db/backup.sls).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from ccmirror_common.progress import ProgressLine, format_duration
from harvester.backup import store
from harvester.backup.store import BackupError
from harvester.db import DatabaseError, DatabaseURL, connect, parse_db_url
from harvester.migrate import migrate

if TYPE_CHECKING:
    from harvester.config import StorageSettings

DUMP_OPTIONS = (
    "--single-transaction",  # one consistent snapshot, no lock
    "--quick",  # row by row, never a table in memory
    "--skip-lock-tables",
    "--hex-blob",  # binary digests as hex: the text is plain ASCII
    "--default-character-set=utf8mb4",
    "--routines",
    "--triggers",
)
ZSTD = ("zstd", "-3", "-T0", "-q", "-c")  # -3: zstd's default, ~4x on the catalog, fast
STDERR_CHARS = 400
RESTORE_SUFFIX, BEFORE_SUFFIX = "_restore", "_before_restore"


def backup_catalog(
    db_url: str,
    storage: StorageSettings,
    *,
    prefix: str = store.PREFIX,
    keep: int = 7,
    now: datetime | None = None,
    progress: ProgressLine | None = None,
) -> dict:
    """Dump the catalog into `<prefix><db>-<stamp>.sql.zst`, then keep the `keep` newest.
    The bucket is listed first: an unreachable one fails before the dump starts."""
    if keep < 1:
        raise BackupError(f"keep must be at least 1 (the backup just made), not {keep}")
    target = _parse(db_url)
    s3 = store.client(storage)
    store.list_backups(s3, storage, store.check_prefix(prefix))
    started = now or datetime.now(UTC)
    key = store.backup_key(prefix, target.database, started)
    clock = time.monotonic()
    with _login_file(target) as login:
        dump = _spawn(["mariadb-dump", f"--defaults-extra-file={login}", *DUMP_OPTIONS,
                       target.database], stdin=subprocess.DEVNULL)  # fmt: skip
        stream = _Pipeline(dump, _spawn(list(ZSTD), stdin=dump.stdout), progress)
        try:
            store.upload(s3, storage, key, stream)
        finally:
            stream.close()
    seconds = time.monotonic() - clock
    pruned = store.prune(s3, storage, prefix, keep)
    return {
        "key": key,
        "bucket": storage.bucket,
        "bytes": stream.bytes,
        "seconds": round(seconds, 3),
        "pruned": pruned,
        "kept": [backup.key for backup in store.list_backups(s3, storage, prefix)],
        "summary": f"s3://{storage.bucket}/{key}: {stream.bytes:,} bytes in {seconds:.1f}s;"
        f" {len(pruned)} older backup(s) deleted",
    }


def restore_catalog(
    db_url: str,
    storage: StorageSettings,
    *,
    prefix: str = store.PREFIX,
    key: str | None = None,
    force: bool = False,
    progress: ProgressLine | None = None,
) -> dict:
    """Load the newest backup (or `key`) into the catalog `db_url` names, whose login may
    create databases. See the module docstring for what is refused and undone."""
    target = _parse(db_url)
    s3 = store.client(storage)
    backups = store.list_backups(s3, storage, store.check_prefix(prefix))
    chosen = _chosen(backups, key, storage, prefix)
    photos = _photos(target)
    if photos and not force:
        raise BackupError(
            f"the catalog {target.where} is not empty ({photos:,} photos): restore_catalog"
            " rebuilds a fresh db-1 (force=True replaces it)"
        )
    staging = target.database + RESTORE_SUFFIX
    clock = time.monotonic()
    _recreate(target, staging)
    try:
        body = store.open_backup(s3, storage, chosen.key)
        _load(target, staging, body, _Meter(progress, "loading", chosen.bytes))
        tables = _swap(target, staging)
    except BaseException:
        with contextlib.suppress(DatabaseError):
            _drop(target, staging)
        raise
    migrated = _migrate(target)
    seconds = time.monotonic() - clock
    restored = _photos(target)
    return {
        "key": chosen.key,
        "stamp": chosen.stamp,
        "bytes": chosen.bytes,
        "tables": tables,
        "migrated": migrated,
        "photos": restored,
        "seconds": round(seconds, 3),
        "summary": f"{target.where} restored from s3://{storage.bucket}/{chosen.key}"
        f" ({chosen.bytes:,} bytes, {restored:,} photos) in {seconds:.1f}s",
    }


def list_catalog_backups(storage: StorageSettings, prefix: str = store.PREFIX) -> list[dict]:
    s3 = store.client(storage)
    return [b.as_dict() for b in store.list_backups(s3, storage, store.check_prefix(prefix))]


def _chosen(backups: list[store.Backup], key: str | None, storage, prefix: str) -> store.Backup:
    if not backups:
        raise BackupError(f"no catalog backup in s3://{storage.bucket}/{prefix}: nothing restored")
    if key is None:
        return backups[-1]
    for backup in backups:
        if backup.key == key:
            return backup
    raise BackupError(f"no catalog backup {key!r} in s3://{storage.bucket}/{prefix}")


def _parse(db_url: str) -> DatabaseURL:
    try:
        target = parse_db_url(db_url)
    except DatabaseError as error:
        raise BackupError(str(error)) from None
    for program in ("mariadb-dump", "mariadb", ZSTD[0]):
        if shutil.which(program) is None:
            raise BackupError(f"{program} is not installed (Debian: mariadb-client, zstd)")
    return target


def _photos(target: DatabaseURL) -> int:
    """Photos in the catalog; 0 when it has no images table yet."""
    with _connection(target) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name = 'images'",
            (target.database,),
        )
        if not cur.fetchone()[0]:
            return 0
        cur.execute(f"SELECT COUNT(*) FROM `{target.database}`.images")
        return int(cur.fetchone()[0])


def _recreate(target: DatabaseURL, name: str) -> None:
    with _connection(target) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")


def _drop(target: DatabaseURL, name: str) -> None:
    with _connection(target) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def _load(target: DatabaseURL, staging: str, body, meter: _Meter) -> None:
    """`zstd -d | mariadb staging`, fed from the object's body on a thread."""
    with _login_file(target) as login:
        unzstd = _spawn([ZSTD[0], "-d", "-q", "-c"], stdin=subprocess.PIPE)
        client = _spawn(["mariadb", f"--defaults-extra-file={login}", "--batch", staging],
                        stdin=unzstd.stdout)  # fmt: skip
        unzstd.stdout.close()  # the client holds it now: zstd sees a closed reader
        feeder = _Feeder(body, unzstd.stdin, meter)
        feeder.start()
        feeder.join()
        finished = [(unzstd, unzstd.wait()), (client, client.wait())]
        try:
            _check(finished, "loading the backup")
        finally:
            for process, _ in finished:
                process.errors.close()
        if feeder.error is not None:
            raise BackupError(f"reading the backup: {feeder.error}")


def _swap(target: DatabaseURL, staging: str) -> list[str]:
    """The staging tables become the catalog's in one RENAME TABLE (atomic); the tables they
    replace are moved aside first in the same statement and dropped after."""
    aside = target.database + BEFORE_SUFFIX
    with _connection(target) as conn, conn.cursor() as cur:
        new = _tables(cur, staging)
        if "images" not in new:
            raise BackupError("the backup holds no images table: not a catalog backup")
        old = _tables(cur, target.database)
        cur.execute(f"DROP DATABASE IF EXISTS `{aside}`")
        cur.execute(f"CREATE DATABASE `{aside}`")
        moves = [f"`{target.database}`.`{t}` TO `{aside}`.`{t}`" for t in old]
        moves += [f"`{staging}`.`{t}` TO `{target.database}`.`{t}`" for t in new]
        cur.execute("RENAME TABLE " + ", ".join(moves))
        cur.execute(f"DROP DATABASE `{aside}`")
        cur.execute(f"DROP DATABASE `{staging}`")
    return new


def _migrate(target: DatabaseURL) -> list[int]:
    """A backup made by an older release has an older schema: brought up to this release's
    (the programs refuse an old one, and the audit that follows writes its newest columns)."""
    with _connection(target) as conn:
        return [migration.version for migration in migrate(conn)]


def _tables(cur, database: str) -> list[str]:
    cur.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        " AND table_type = 'BASE TABLE' ORDER BY table_name",
        (database,),
    )
    return [row[0] for row in cur.fetchall()]


@contextlib.contextmanager
def _connection(target: DatabaseURL):
    try:
        conn = connect(target, autocommit=True)
    except DatabaseError as error:
        raise BackupError(str(error)) from None
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def _login_file(target: DatabaseURL) -> Iterator[str]:
    """A [client] defaults file (0600, removed after) with the URL's login."""
    lines = ["[client]", f"user={target.user}"]
    if target.password:
        lines.append(f'password="{_option(target.password)}"')
    if target.unix_socket:
        lines.append(f"socket={target.unix_socket}")
    else:
        lines += [f"host={target.host}", f"port={target.port}", "protocol=tcp"]
    fd, path = tempfile.mkstemp(prefix="ccmirror-backup-", suffix=".cnf")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        yield path
    finally:
        os.unlink(path)


def _option(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _spawn(argv: list[str], stdin) -> subprocess.Popen:
    """A program with its stdout piped and its stderr kept in a file for the error message."""
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the process (_Pipeline.close)
    process = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=errors)  # noqa: S603
    process.errors = errors  # type: ignore[attr-defined]
    return process


def _check(finished: list[tuple[subprocess.Popen, int]], what: str) -> None:
    for process, code in finished:
        if code != 0:
            process.errors.seek(0)
            said = process.errors.read().decode("utf-8", "replace").strip()[-STDERR_CHARS:]
            raise BackupError(f"{what}: {process.args[0]} exited {code}: {said or 'no message'}")


class _Pipeline:
    """The compressed dump as a file to read: at its end, both programs must have exited 0,
    else the read raises BackupError (which aborts the multipart upload)."""

    def __init__(self, dump: subprocess.Popen, zstd: subprocess.Popen, progress) -> None:
        self.dump, self.zstd = dump, zstd
        dump.stdout.close()  # zstd holds it now: zstd sees EOF when the dump ends
        self.meter = _Meter(progress, "dumping", None)

    @property
    def bytes(self) -> int:
        return self.meter.done

    def read(self, size: int = -1) -> bytes:
        chunk = self.zstd.stdout.read(size)
        self.meter.add(len(chunk))
        if not chunk:  # the upload reads to the end before it completes
            self._finish()
        return chunk

    def _finish(self) -> None:
        codes = [(self.dump, self.dump.wait()), (self.zstd, self.zstd.wait())]
        _check(codes, "dumping the catalog")

    def close(self) -> None:
        for process in (self.dump, self.zstd):
            if process.poll() is None:
                process.kill()
            process.wait()
            process.errors.close()
        self.zstd.stdout.close()


class _Feeder(threading.Thread):
    """Copies the object's body into zstd's stdin; the error it met, if any."""

    def __init__(self, body, sink: IO[bytes], meter: _Meter) -> None:
        super().__init__(daemon=True)
        self.body, self.sink, self.meter = body, sink, meter
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            for chunk in self.body.iter_chunks(1 << 20):
                self.sink.write(chunk)
                self.meter.add(len(chunk))
        except BrokenPipeError:
            pass  # zstd or the client stopped: their exit codes say why
        except Exception as error:  # noqa: BLE001 - reported by the caller
            self.error = error
        finally:
            with contextlib.suppress(OSError):
                self.sink.close()


class _Meter:
    """Compressed bytes through so far, shown every so often (rate, and ETA when the total
    is known): a 10M-photo catalog takes minutes to dump and longer to load."""

    def __init__(self, progress: ProgressLine | None, what: str, total: int | None) -> None:
        self.progress, self.what, self.total = progress, what, total
        self.done = 0
        self.started = time.monotonic()

    def add(self, count: int) -> None:
        self.done += count
        if self.progress is None or not self.progress.due():
            return
        seconds = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / seconds
        line = f"{self.what}: {self.done:,} compressed bytes ({rate / 1e6:,.1f} MB/s)"
        if self.total:
            eta = (self.total - self.done) / rate if rate else None
            share = 100 * self.done / self.total
            line += f", {share:.0f}% of {self.total:,}, ETA {format_duration(eta)}"
        self.progress.show(line)
