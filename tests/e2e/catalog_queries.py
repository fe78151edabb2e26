"""What the e2e test reads of the lab's catalog (MariaDB on db-1) while it runs and after."""

from __future__ import annotations

from lab.mission import stages as mission


def rows(m: mission.Mission, sql: str, args: tuple = ()) -> list[tuple]:
    """A query's rows from the lab's catalog."""
    with m.catalog() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def value(m: mission.Mission, sql: str, args: tuple = ()) -> object:
    """The first column of a query's first row; None when it has no row."""
    found = rows(m, sql, args)
    return found[0][0] if found else None


def stored(m: mission.Mission) -> int:
    return value(m, "SELECT COUNT(*) FROM stored_images")


def stored_paths(m: mission.Mission) -> list[str]:
    return [path for (path,) in rows(m, "SELECT path FROM stored_images ORDER BY image_id")]


def active_leases(m: mission.Mission) -> int:
    return value(m, "SELECT COUNT(*) FROM leases WHERE state = 'active'")


def task_between_pages(m: mission.Mission) -> tuple[int, int] | None:
    found = rows(
        m,
        "SELECT id, cursor_page FROM search_tasks"
        " WHERE state = 'running' AND photos_seen > 0 LIMIT 1",
    )
    return found[0] if found else None


def task_states(m: mission.Mission) -> dict[int, tuple[str, int]]:
    return {
        row[0]: (row[1], row[2])
        for row in rows(m, "SELECT id, state, completions FROM search_tasks")
    }


def lease_held_by(m: mission.Mission, worker: str) -> int | None:
    return value(
        m,
        "SELECT id FROM leases WHERE worker = %s AND state = 'active' AND reported = 0"
        " ORDER BY id DESC LIMIT 1",
        (worker,),
    )


def lease_state(m: mission.Mission, lease: int) -> str:
    return value(m, "SELECT state FROM leases WHERE id = %s", (lease,))


def downloaded_or_zero(m: mission.Mission) -> int:
    """Photos the downloaders stored (not the import's); 0 while the database restarts."""
    try:
        return value(m, "SELECT COUNT(*) FROM stored_images WHERE lease_id <> 0")
    except Exception:  # noqa: BLE001 - the database restarting: asked again
        return 0


def pending(m: mission.Mission) -> int:
    return value(m, "SELECT COUNT(*) FROM images WHERE state = 'pending'")


def lease_photos_by_worker(m: mission.Mission, lease: int) -> dict[str, int]:
    """The photos of `lease` by who stored them, or by state when not stored."""
    photos = value(m, "SELECT item_ids FROM leases WHERE id = %s", (lease,))
    return dict(
        rows(
            m,
            "SELECT COALESCE(s.worker, i.state), COUNT(*) FROM images i"
            f" LEFT JOIN stored_images s ON s.image_id = i.id WHERE i.id IN ({photos})"
            " GROUP BY 1",
        )
    )
