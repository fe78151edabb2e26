"""How a task walks its results under Flickr's 4,000-results-per-query cap.

Results are requested newest first (`date-posted-desc`). A window [task.min, cursor.max] is
paged until it ends; if it reaches the cap instead, the next window ends at the oldest upload
second seen (that second is read again, since the cap may have cut it). Every call but the
boundary re-reads returns new photos, which is how a harvest stays near the ideal
ceil(n / 500) calls however dense a slice is, and `total` (which Flickr misreports near the
cap) is never trusted for anything but progress.

A window whose results all share one second cannot be narrowed by time: that second is split
off into one child task per CC license, and the walk goes on below it. A single second with
more than 4,000 photos of one license cannot be split further; the task notes it.
"""

from __future__ import annotations

from harvester.search_tasks import ChildTask, Cursor, PageResult, SearchTask

RESULT_CAP = 4000


def next_step(
    task: SearchTask,
    *,
    cc_license_ids: list[int],
    page: int,
    pages: int,
    per_page: int,
    returned: int,
    oldest_upload: int | None,
    total_reported: int | None = None,
) -> PageResult:
    """The cursor after a page of `returned` results whose oldest upload is `oldest_upload`."""
    cursor = task.cursor
    seen = cursor.window_seen + returned
    oldest = _min(cursor.window_oldest, oldest_upload)
    total = total_reported if page == 1 else None
    window_ended = returned == 0 or (returned < per_page and page >= pages)
    if window_ended:
        return PageResult(Cursor(cursor.max_upload, page, seen, oldest), True, (), None, total)
    if page * per_page < RESULT_CAP:
        return PageResult(Cursor(cursor.max_upload, page + 1, seen, oldest), False, (), None,
                          total)  # fmt: skip
    # The window reached the cap: narrow it to end at the oldest second seen.
    if oldest is not None and oldest < cursor.max_upload:
        return PageResult(Cursor(oldest, 1, 0, None), False, (), None, total)
    second = cursor.max_upload
    children: tuple[ChildTask, ...] = ()
    note = None
    if task.license_id is None and len(cc_license_ids) > 1:
        children = tuple(ChildTask(second, second, lic) for lic in sorted(cc_license_ids))
    else:
        note = f"capped: over {RESULT_CAP} results in second {second}"
    done = second - 1 < task.min_upload
    return PageResult(Cursor(second - 1, 1, 0, None), done, children, note, total)


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
