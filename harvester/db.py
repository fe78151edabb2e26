"""MariaDB connections from a `mysql://user:pass@host:port/db` URL (`?unix_socket=` allowed)."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql
from pymysql.constants import CLIENT

LOCK_ERRORS = (1205, 1213)  # lock wait timeout, deadlock: the transaction may be run again
# A connection MariaDB dropped (a restart, a failover): a daemon reconnects (`reconnect`).
DATABASE_GONE = (pymysql.err.OperationalError, pymysql.err.InterfaceError)

log = logging.getLogger(__name__)


class DatabaseError(RuntimeError):
    """The database cannot be reached or used; the message never holds the password."""


@dataclass(frozen=True)
class DatabaseURL:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    unix_socket: str | None = None

    @property
    def where(self) -> str:
        """Where the database is, for messages (no credentials)."""
        place = self.unix_socket or f"{self.host}:{self.port}"
        return f"{place}/{self.database}"


def parse_db_url(url: str) -> DatabaseURL:
    if not url:
        raise DatabaseError("no database URL: set CCMIRROR_DB_URL or db_url in the config")
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        raise DatabaseError("database URL must start with mysql:// (or mariadb://)")
    database = parts.path.lstrip("/")
    if not database:
        raise DatabaseError("database URL names no database (mysql://user:pass@host:port/DB)")
    query = parse_qs(parts.query)
    try:
        port = parts.port or 3306
    except ValueError:
        raise DatabaseError("database URL has an invalid port") from None
    return DatabaseURL(
        host=parts.hostname or "localhost",
        port=port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=unquote(database),
        unix_socket=query.get("unix_socket", [None])[0],
    )


def connect(
    url: str | DatabaseURL,
    *,
    autocommit: bool = False,
    timeout: float = 10.0,
    found_rows: bool = True,
    local_infile: bool = False,
):
    """A PyMySQL connection; `DatabaseError` with a one-line reason when it cannot be made.

    With `found_rows` (the default) an UPDATE counts the rows it matched, so a lease check
    sees its row even when the values written are the same; without it an upsert counts 1
    per inserted row, 2 per changed row and 0 per row left as it was.

    `local_infile` lets `LOAD DATA LOCAL INFILE` read a file of this machine. PyMySQL sends
    whichever file the server's answer names, so it stays off except where a program loads
    files it wrote itself (the YFCC importer, the storage audit): a SQL injection or a
    hostile server elsewhere cannot read the client's files."""
    target = parse_db_url(url) if isinstance(url, str) else url
    try:
        return pymysql.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            database=target.database,
            unix_socket=target.unix_socket,
            charset="utf8mb4",
            autocommit=autocommit,
            connect_timeout=timeout,
            client_flag=CLIENT.FOUND_ROWS if found_rows else 0,
            local_infile=local_infile,
        )
    except pymysql.err.OperationalError as exc:
        code, message = (exc.args + ("",))[:2]
        raise DatabaseError(
            f"cannot connect to the database at {target.where}: {message or exc} (error {code})"
        ) from None


@dataclass(frozen=True)
class UpsertCounts:
    """What an `INSERT ... ON DUPLICATE KEY UPDATE` did, row by row."""

    new: int
    changed: int
    unchanged: int


# The info message of an INSERT ... SELECT or LOAD DATA: "Records: N  Duplicates: D  ...".
_INSERT_INFO = re.compile(rb"Records: (\d+)\s+Duplicates: (\d+)")


def upsert_counts(cur, affected: int) -> UpsertCounts | None:
    """Split the `affected` rows of the upsert `cur` just ran, read from the server's info
    message, with no second pass over the rows; None if the server sent no such message.

    The connection must count changed rows, not found ones (`connect(found_rows=False)`):
    `affected` is then 1 per new row and 2 per changed row. Records are every row the
    upsert was given, Duplicates the existing rows it changed."""
    message = getattr(getattr(cur, "_result", None), "message", None) or b""
    info = _INSERT_INFO.search(message)
    if info is None:
        return None
    records, changed = int(info[1]), int(info[2])
    new = affected - 2 * changed
    return UpsertCounts(new, changed, records - new - changed)


class ConnectionPool:
    """At most `size` connections shared by threads (the queue service's request threads).

    A connection that failed with a connection error is closed, not reused, so a restarted
    server costs one failed request per stale connection and nothing more."""

    def __init__(self, url: str, size: int, *, session_sql: tuple[str, ...] = ()) -> None:
        self.target = parse_db_url(url)
        self.session_sql = session_sql
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self, wait: float = 10.0):
        if not self._slots.acquire(timeout=wait):
            raise DatabaseError(f"every database connection stayed busy for {wait:.0f}s")
        conn = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._open()
            yield conn
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
            if conn is not None and exc.args and exc.args[0] not in LOCK_ERRORS:
                with contextlib.suppress(pymysql.err.Error):
                    conn.close()
                conn = None
            raise
        finally:
            if conn is not None:
                with self._lock:
                    self._idle.append(conn)
            self._slots.release()

    def _open(self):
        conn = connect(self.target)
        with conn.cursor() as cur:
            for statement in self.session_sql:
                cur.execute(statement)
        return conn

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def with_retry(conn, work, attempts: int = 5):
    """Run `work(cur)` as one transaction, again when it loses a deadlock."""
    for attempt in range(attempts):
        try:
            with conn.cursor() as cur:
                result = work(cur)
            conn.commit()
            return result
        except pymysql.err.OperationalError as exc:
            conn.rollback()
            if exc.args[0] not in LOCK_ERRORS or attempt == attempts - 1:
                raise
        except BaseException:
            conn.rollback()
            raise
    raise AssertionError("unreachable")


def reconnect(url: str, stop: threading.Event, give_up_after: float, lost: Exception, old=None):
    """MariaDB went away (`lost`, one of DATABASE_GONE): a new connection once it answers
    again, tried with a growing wait; DatabaseError after `give_up_after` seconds (the
    daemon's unit starts it again), None when `stop` is set first."""
    log.warning("database connection lost (%s); reconnecting", lost.args[-1] if lost.args else lost)
    if old is not None:
        with contextlib.suppress(Exception):
            old.close()
    deadline = time.monotonic() + give_up_after
    delay = 0.5
    while not stop.is_set():
        try:
            conn = connect(url)
        except DatabaseError:
            if time.monotonic() > deadline:
                raise
            stop.wait(delay)
            delay = min(delay * 2, 30.0)
            continue
        log.info("database connection back")
        return conn
    return None
