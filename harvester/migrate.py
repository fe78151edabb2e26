"""Versioned SQL migrations: `harvester/migrations/NNNN_name.sql`, applied in order, once each.

The applied versions are recorded in `schema_migrations`. MariaDB cannot roll DDL back, so
each migration is written to be re-runnable (IF NOT EXISTS) and is recorded only after all of
its statements ran: a migration cut off midway is applied again on the next run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import pymysql

from ccmirror_common.cli import CommandError
from harvester.db import connect

MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        # Comments are whole lines starting with "--"; statements end with ";".
        text = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [stmt.strip() for stmt in text.split(";") if stmt.strip()]


def available_migrations() -> list[Migration]:
    folder = resources.files("harvester.migrations")
    found = []
    for entry in folder.iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


NO_SUCH_TABLE = 1146


def applied_versions(conn) -> set[int]:
    """The versions recorded; none on a database never migrated. Only reads, so a program
    checking the schema needs no CREATE privilege."""
    with conn.cursor() as cur:
        try:
            cur.execute("SELECT version FROM schema_migrations")
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != NO_SUCH_TABLE:
                raise
            return set()
        return {row[0] for row in cur.fetchall()}


def create_migrations_table(conn) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INT UNSIGNED NOT NULL PRIMARY KEY,"
            " name VARCHAR(200) NOT NULL,"
            " applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )


def migrate(conn) -> list[Migration]:
    """Apply every migration not applied yet; returns those applied by this call."""
    create_migrations_table(conn)
    done = applied_versions(conn)
    applied = []
    for migration in available_migrations():
        if migration.version in done:
            continue
        with conn.cursor() as cur:
            for statement in migration.statements():
                cur.execute(statement)
            cur.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
        conn.commit()
        applied.append(migration)
    return applied


def current_version(conn) -> int:
    return max(applied_versions(conn), default=0)


def unapplied(conn) -> list[Migration]:
    done = applied_versions(conn)
    return [m for m in available_migrations() if m.version not in done]


def open_database(db_url: str, *, migrated: bool = True, local_infile: bool = False):
    """A connection to the catalog; CommandError, with the connection closed, when `migrated`
    and a migration is not applied yet (every command but `migrate` needs the current schema)."""
    conn = connect(db_url, local_infile=local_infile)
    if migrated and unapplied(conn):
        conn.close()
        raise CommandError("the database schema is not up to date: run `harvester migrate`")
    return conn
