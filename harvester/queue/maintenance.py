"""Maintenance mode: a switch in `queue_settings` every queue service process and harvester
worker reads (`harvester maintenance on|off`, `salt-run maintenance.on`): while it is on,
no photo is leased and no task claimed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Maintenance:
    on: bool
    retry_after: int  # seconds a worker is told to wait before asking again


DEFAULT_RETRY_AFTER = 300


def get_maintenance(conn) -> Maintenance:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT name, value FROM queue_settings"
            " WHERE name IN ('maintenance', 'maintenance_retry_after')"
        )
        values = dict(cur.fetchall())
    conn.commit()
    return Maintenance(
        on=values.get("maintenance") == "on",
        retry_after=int(values.get("maintenance_retry_after", DEFAULT_RETRY_AFTER)),
    )


def set_maintenance(conn, on: bool, retry_after: int = DEFAULT_RETRY_AFTER) -> Maintenance:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO queue_settings (name, value) VALUES (%s, %s)"
            " ON DUPLICATE KEY UPDATE value = VALUES(value)",
            [("maintenance", "on" if on else "off"), ("maintenance_retry_after", retry_after)],
        )
    conn.commit()
    return Maintenance(on, retry_after)
