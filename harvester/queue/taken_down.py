"""The queue's part in a takedown (harvester/takedown/): a photo taken down while a lease held
it keeps its `lease_id`, and the lease's `stored` report of it is logged here rather than
making it stored (its bytes landed: `harvester takedown apply` moves them out of the public
prefix)."""

from __future__ import annotations

TAKEN_DOWN = "taken_down"  # images.state of a photo taken down: nothing sets it back


def stored_after_takedown(cur, ids: str, worker: str, lease_id: int) -> tuple[list[int], int]:
    """Log the `stored` reports among catalog ids `ids` (checked ints, comma-separated) of
    photos taken down, and settle those this lease held: (their ids, how many it held)."""
    cur.execute(f"SELECT id FROM images WHERE id IN ({ids}) AND state = '{TAKEN_DOWN}'")
    down = [int(row[0]) for row in cur.fetchall()]
    if not down:
        return [], 0
    listed = ",".join(map(str, down))
    cur.execute(
        "INSERT INTO takedown_log (photo_id, step, actor, detail) SELECT photo_id,"
        f" 'stored_after_takedown', %s, CONCAT('lease ', %s) FROM images WHERE id IN ({listed})",
        (worker, lease_id),
    )
    cur.execute(
        f"UPDATE images SET lease_id = 0 WHERE id IN ({listed}) AND lease_id = %s", (lease_id,)
    )
    return down, cur.rowcount
