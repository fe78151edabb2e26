"""A private MariaDB server for tests and the lab: its own datadir, socket and port.

Tests must not depend on a machine's own database service, so this starts `mariadbd` on a
datadir of its own (created with `mariadb-install-db` on first use) and reuses it while it
answers. Root connects over the unix socket without a password (unix_socket auth), and a
TCP account `ccmirror` with a generated throw-away password is created for URL-based access.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pymysql


class MariaDBError(RuntimeError):
    """The private server could not be installed or started."""


@dataclass
class LocalMariaDB:
    """A mariadbd bound to 127.0.0.1:`port` with everything under `base_dir`."""

    base_dir: Path
    port: int = 13306

    @property
    def datadir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket(self) -> Path:
        return self.base_dir / "mysqld.sock"

    @property
    def pidfile(self) -> Path:
        return self.base_dir / "mysqld.pid"

    @property
    def password_file(self) -> Path:
        return self.base_dir / "ccmirror.password"

    def url(self, database: str) -> str:
        """A CCMIRROR_DB_URL for `database` through the TCP account."""
        password = self.password_file.read_text().strip()
        return f"mysql://ccmirror:{password}@127.0.0.1:{self.port}/{database}"

    def fresh_database(self, name: str) -> str:
        """An empty database `name` (dropped first if it exists); its URL."""
        with self.root_connection() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self.root_connection() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")

    def set_globals(self, **values: int) -> None:
        """SET GLOBAL each server variable, e.g. innodb_buffer_pool_size=8 << 30."""
        with self.root_connection() as conn, conn.cursor() as cur:
            for variable, value in values.items():
                cur.execute(f"SET GLOBAL {variable} = {int(value)}")

    def root_connection(self, **kwargs) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True, **kwargs)

    def answers(self) -> bool:
        try:
            self.root_connection(connect_timeout=2).close()
        except pymysql.err.MySQLError:
            return False
        return True

    def ensure_running(self, timeout: float = 60.0) -> bool:
        """Start the server unless it answers already; True when this call started it."""
        if self.answers():
            self._ensure_account()
            return False
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not (self.datadir / "mysql").is_dir():
            self._install_datadir()
        self._start(timeout)
        self._ensure_account()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        _reap(pid)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def _install_datadir(self) -> None:
        shutil.rmtree(self.datadir, ignore_errors=True)
        cmd = [
            _binary("mariadb-install-db", "mysql_install_db"),
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            *self._user_args(),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise MariaDBError(f"mariadb-install-db failed: {result.stderr.strip()[-500:]}")

    def _start(self, timeout: float) -> None:
        log = open(self.base_dir / "mysqld.log", "ab")  # noqa: SIM115 - handed to the daemon
        cmd = [
            _binary("mariadbd", "mysqld"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.pidfile}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            "--innodb-buffer-pool-size=256M",
            "--innodb-log-file-size=256M",
            "--innodb-flush-log-at-trx-commit=2",
            # Interleaved auto-increment: a bulk INSERT ... SELECT (reconcile) holds no
            # table-wide lock, so batches on other id ranges run beside it.
            "--innodb-autoinc-lock-mode=2",
            "--max-connections=500",
            "--local-infile=1",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            *self._user_args(),
        ]
        # Its own session: the server outlives a test run killed with ^C and is reused.
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                return
            if proc.poll() is not None:
                tail = (self.base_dir / "mysqld.log").read_text(errors="replace")[-800:]
                raise MariaDBError(f"mariadbd exited with {proc.returncode}: {tail}")
            time.sleep(0.2)
        raise MariaDBError(f"mariadbd did not answer on {self.socket} within {timeout:.0f}s")

    def _ensure_account(self) -> None:
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(18) + "\n")
            self.password_file.chmod(0o600)
        password = self.password_file.read_text().strip()
        with self.root_connection() as conn, conn.cursor() as cur:
            for host in ("127.0.0.1", "localhost"):
                cur.execute(
                    "CREATE USER IF NOT EXISTS 'ccmirror'@%s IDENTIFIED BY %s", (host, password)
                )
                cur.execute("ALTER USER 'ccmirror'@%s IDENTIFIED BY %s", (host, password))
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'ccmirror'@%s", (host,))

    @staticmethod
    def _user_args() -> list[str]:
        # mariadbd refuses to run as root unless told so; the datadir is ours alone.
        return ["--user=root"] if os.geteuid() == 0 else []


def _binary(*names: str) -> str:
    for name in names:
        for folder in ("", "/usr/sbin/", "/usr/bin/"):
            path = shutil.which(folder + name) if folder else shutil.which(name)
            if path:
                return path
    raise MariaDBError(f"{names[0]} not found: install mariadb-server (make deps does)")


def _reap(pid: int) -> None:
    """Collect the server's exit status when this process started it: until then the
    finished server stays a zombie that `kill(pid, 0)` still finds."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
