"""Catalog backups: `mariadb-dump --single-transaction` through zstd into the bucket, and
the restore of the newest into a fresh catalog.

Backup: one consistent snapshot (InnoDB's REPEATABLE READ transaction: the queue and the
harvesters keep writing, nothing is locked) streamed `mariadb-dump | zstd` straight into a
multipart upload; the upload completes only when both programs exit 0, so a failed dump
leaves no object. The databases of `also` (on db-1: the main SeaweedFS cluster's filer store,
its names of every object) are dumped next, each into an object of the same stamp: a fresh
db-1 gets back storage's names with the catalog. Then the retention hides all but the `keep`
newest of each (store.prune).

Restore: refused unless the target catalog has no photo (a fresh db-1; `force` overrides). Read
from the bucket, or from the backup target when the bucket cannot answer (sources.py: a lost
db-1 takes main's names with it). Each backup of the chosen stamp is loaded into a staging
database `<db>_restore` (`zstd -d | mariadb`: zstd's frame checksum refuses a cut stream), then
swapped in with one atomic RENAME TABLE; the tables as they were are dropped only after. The
databases dumped with the catalog are restored only onto a fresh catalog (a new db-1): over a
live one (`force`) they are kept, being newer than any backup. A failure anywhere before a swap
drops the staging database: that database is as it was. A catalog backup of an older release is
migrated to this release's schema after.

The database login is a URL (harvester/db.py); the password reaches the clients in a 0600
defaults file, never on a command line. The restore creates and drops databases: on db-1 it
runs as root over the unix socket (salt/db/backup.sls).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from ccmirror_common.progress import ProgressLine, format_duration
from harvester.backup import sources, store
from harvester.backup.store import BackupError
from harvester.config import BackupTargetSettings
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
# How far a restore moves the leases' ids on (_skip_used_lease_ids): more leases than the
# whole mission makes (500M photos at 100 a lease is 5M), in a BIGINT of 1.8e19.
LEASE_ID_GAP = 1_000_000_000
RESTORE_SUFFIX, BEFORE_SUFFIX = "_restore", "_before_restore"
DATABASE_NAME = re.compile(r"^[A-Za-z0-9_]{1,48}$")  # store.NAME's, room for the suffixes


def backup_catalog(
    db_url: str,
    storage: StorageSettings,
    *,
    prefix: str = store.PREFIX,
    keep: int = 7,
    also: tuple[str, ...] = (),
    now: datetime | None = None,
    progress: ProgressLine | None = None,
) -> dict:
    """Dump the catalog into `<prefix><db>-<stamp>.sql.zst`, and each database of `also` (the
    filer's, on the same server) into its own object of the same stamp, then keep the `keep`
    newest of each. The bucket is listed first: an unreachable one fails before any dump."""
    if keep < 1:
        raise BackupError(f"keep must be at least 1 (the backup just made), not {keep}")
    target = _parse(db_url)
    databases = _databases(target.database, also)
    s3 = store.client(storage)
    store.list_backups(s3, storage, store.check_prefix(prefix))
    started = now or datetime.now(UTC)
    clock = time.monotonic()
    folders = _folders(prefix, databases)
    made = [_dump(replace(target, database=database), s3, storage,
                  store.backup_key(folder, database, started), progress)
            for database, folder in zip(databases, folders, strict=True)]  # fmt: skip
    seconds = time.monotonic() - clock
    pruned = store.prune(s3, storage, prefix, keep)
    if also:
        pruned += store.prune(s3, storage, prefix + store.COMPANIONS, keep)
    total = sum(dump["bytes"] for dump in made)
    return {
        "key": made[0]["key"],
        "bucket": storage.bucket,
        "bytes": made[0]["bytes"],
        "databases": made,
        "seconds": round(seconds, 3),
        "pruned": pruned,
        "kept": [backup.key for backup in store.list_backups(s3, storage, prefix)],
        "summary": f"s3://{storage.bucket}/{made[0]['key']}"
        + "".join(f" and {dump['key']}" for dump in made[1:])
        + f": {total:,} bytes in {seconds:.1f}s; {len(pruned)} older backup(s) deleted",
    }


def _databases(catalog: str, also: tuple[str, ...]) -> list[str]:
    names = [catalog, *also]
    for name in also:
        if not DATABASE_NAME.match(name) or name.endswith((RESTORE_SUFFIX, BEFORE_SUFFIX)):
            raise BackupError(f"not a database name to back up: {name!r}")
    if len(set(names)) != len(names):
        raise BackupError(f"a database is named twice: {', '.join(names)}")
    return names


def _folders(prefix: str, databases: list[str]) -> list[str]:
    """The catalog's backup under `prefix`, the others' beside it (store.COMPANIONS)."""
    return [prefix] + [prefix + store.COMPANIONS] * (len(databases) - 1)


def _dump(target: DatabaseURL, s3, storage: StorageSettings, key: str, progress) -> dict:
    """`mariadb-dump | zstd` of one database into one object."""
    with _login_file(target) as login:
        dump = _spawn(["mariadb-dump", f"--defaults-extra-file={login}", *DUMP_OPTIONS,
                       target.database], stdin=subprocess.DEVNULL)  # fmt: skip
        stream = _Pipeline(dump, _spawn(list(ZSTD), stdin=dump.stdout), progress)
        try:
            store.upload(s3, storage, key, stream)
        finally:
            stream.close()
    return {"database": target.database, "key": key, "bytes": stream.bytes}


def restore_catalog(
    db_url: str,
    storage: StorageSettings,
    *,
    prefix: str = store.PREFIX,
    key: str | None = None,
    force: bool = False,
    source: str = "auto",
    backup_target: BackupTargetSettings | None = None,
    progress: ProgressLine | None = None,
) -> dict:
    """Load the newest backup (or `key`) into the catalog `db_url` names, whose login may
    create databases, and the databases dumped with it (same stamp) into theirs; read from
    `source` (harvester/backup/sources.py). See the module docstring for what is refused
    and undone."""
    target = _parse(db_url)
    found = sources.open_source(storage, backup_target or BackupTargetSettings(), prefix, source)
    chosen = _chosen(found.backups, key, found)
    photos = _photos(target)
    if photos and not force:
        raise BackupError(
            f"the catalog {target.where} is not empty ({photos:,} photos): restore_catalog"
            " rebuilds a fresh db-1 (force=True replaces it)"
        )
    # The databases dumped with it go back only onto a fresh db-1 (no photo): a live filer
    # store is newer than any backup, and rolling it back would forget what was stored since.
    others = [backup for backup in found.companions if backup.stamp == chosen.stamp]
    kept = sorted(backup.database for backup in others) if photos else []
    others = [] if photos else others
    clock = time.monotonic()
    tables = _restore_one(target, chosen, found, progress, required="images")
    read = {chosen.key: tables["bytes"]}
    for backup in others:
        done = _restore_one(replace(target, database=backup.database), backup, found, progress)
        read[backup.key] = done["bytes"]
    migrated = _migrate(target)
    lease_ids_from = _skip_used_lease_ids(target)
    seconds = time.monotonic() - clock
    restored = _photos(target)
    total = sum(read.values())
    return {
        "key": chosen.key,
        "stamp": chosen.stamp,
        "source": found.name,
        "bytes": tables["bytes"],
        "tables": tables["tables"],
        "databases": sorted([target.database, *(backup.database for backup in others)]),
        "kept": kept,
        "read": read,
        "migrated": migrated,
        "lease_ids_from": lease_ids_from,
        "photos": restored,
        "seconds": round(seconds, 3),
        "summary": f"{target.where} restored from {chosen.key} in {found.where}"
        + "".join(f", {backup.database} from {backup.key}" for backup in others)
        + f" ({total:,} bytes, {restored:,} photos) in {seconds:.1f}s",
    }


def _restore_one(
    target: DatabaseURL,
    backup: store.Backup,
    found: sources.Source,
    progress: ProgressLine | None,
    required: str | None = None,
) -> dict:
    """One database's backup loaded beside it and swapped in; nothing changed on a failure."""
    staging = target.database + RESTORE_SUFFIX
    _recreate(target, staging)
    try:
        body, size = found.open(backup)
        _load(target, staging, body, _Meter(progress, f"loading {target.database}", size))
        tables = _swap(target, staging, required)
    except BaseException:
        with contextlib.suppress(DatabaseError):
            _drop(target, staging)
        raise
    return {"tables": tables, "bytes": size}


def _skip_used_lease_ids(target: DatabaseURL) -> int:
    """Move the restored queue's lease ids LEASE_ID_GAP past the backup's, and return the
    next one. A restore rewinds `leases`' counter to the backup's, while the leases made
    after the backup left their manifests, `manifests/<day>/<lease id>.jsonl`, on storage
    (restore-photos puts them back from the backup target): a new lease with a used id would
    write its manifest over theirs, and their photos' attribution would be lost. Listing
    those manifests would need a key that can list `manifests/`, which db-1's catalog key
    cannot; a gap larger than any number of leases made between two backups needs none."""
    with _connection(target) as conn, conn.cursor() as cur:
        table = f"`{target.database}`.leases"
        # The dump's counter, or past the newest lease if it says less (pruning never
        # lowers it, but a dump made without table options would).
        cur.execute(
            f"SELECT GREATEST((SELECT COALESCE(MAX(id), 0) + 1 FROM {table}),"
            " (SELECT COALESCE(AUTO_INCREMENT, 1) FROM information_schema.tables"
            "  WHERE table_schema = %s AND table_name = 'leases'))",
            (target.database,),
        )
        start = int(cur.fetchone()[0]) + LEASE_ID_GAP
        cur.execute(f"ALTER TABLE {table} AUTO_INCREMENT = {start}")
        return start


def list_catalog_backups(
    storage: StorageSettings,
    prefix: str = store.PREFIX,
    source: str = "bucket",
    backup_target: BackupTargetSettings | None = None,
) -> list[dict]:
    found = sources.open_source(storage, backup_target or BackupTargetSettings(), prefix, source)
    return [dict(backup.as_dict(), source=found.name) for backup in found.backups]


def _chosen(backups: list[store.Backup], key: str | None, found: sources.Source) -> store.Backup:
    if not backups:
        raise BackupError(f"no catalog backup in {found.where}: nothing restored")
    if key is None:
        return backups[-1]
    for backup in backups:
        if backup.key == key:
            return backup
    raise BackupError(f"no catalog backup {key!r} in {found.where}")


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


def _swap(target: DatabaseURL, staging: str, required: str | None) -> list[str]:
    """The staging tables become the database's in one RENAME TABLE (atomic); the tables they
    replace are moved aside first in the same statement and dropped after."""
    aside = target.database + BEFORE_SUFFIX
    with _connection(target) as conn, conn.cursor() as cur:
        new = _tables(cur, staging)
        if required and required not in new:
            raise BackupError(f"the backup holds no {required} table: not a catalog backup")
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{target.database}`"
                    " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")  # fmt: skip
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
