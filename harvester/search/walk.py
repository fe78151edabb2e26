"""How a task walks its results under Flickr's 4,000-results-per-query cap.

Results are requested newest first (`date-posted-desc`). A window [task.min, cursor.max] is
paged until it ends; if it reaches the cap instead, the next window ends at the oldest upload
second seen (that second is read again, since the cap may have cut it). Every call but the
boundary re-reads returns new photos, which is how a harvest stays near the ideal
ceil(n / 500) calls however dense a slice is, and `total` (which Flickr misreports near the
cap) is never trusted for anything but progress.

A window whose results all share one second cannot be narrowed by time. So as soon as a page's
worth of results is seen in one second, that second is split off by license (the license set
halved, down to one license) into child tasks, and the walk goes on below it; this costs at
most a page or two of repeats where waiting for the cap would cost a whole window. A single
second with more than 4,000 photos of one license cannot be split further; the task notes it.
"""

from __future__ import annotations

from harvester.search.tasks import ChildTask, Cursor, PageResult, SearchTask

RESULT_CAP = 4000
DENSE_SECOND = 500  # results in one second that mark it as likely over the cap


def next_step(
    task: SearchTask,
    *,
    cc_license_ids: list[int],
    page: int,
    pages: int,
    per_page: int,
    uploads: list[int],
    total_reported: int | None = None,
) -> PageResult:
    """The cursor after a page whose results have these upload times."""
    cursor = task.cursor
    seen = cursor.window_seen + len(uploads)
    oldest, oldest_count = _oldest(cursor, uploads)
    total = total_reported if page == 1 else None
    if not uploads or (len(uploads) < per_page and page >= pages):
        end = Cursor(cursor.max_upload, page, seen, oldest, oldest_count)
        return PageResult(end, True, (), None, total)
    licenses = task.licenses or tuple(sorted(cc_license_ids))
    below = Cursor(oldest - 1, 1)
    done_below = oldest - 1 < task.min_upload
    multi_second = task.min_upload < task.max_upload
    if multi_second and oldest_count >= DENSE_SECOND and len(licenses) > 1:
        # A page's worth of results in one second: walking it would cost a window of repeats
        # if it holds over 4,000. Split it off by license and go on below it.
        return PageResult(below, done_below, split_licenses(oldest, licenses), None, total)
    if page * per_page < RESULT_CAP:
        following = Cursor(cursor.max_upload, page + 1, seen, oldest, oldest_count)
        return PageResult(following, False, (), None, total)
    # The window reached the cap: narrow it to end at the oldest second seen...
    if oldest < cursor.max_upload:
        return PageResult(Cursor(oldest, 1), False, (), None, total)
    # ...or, when it is one second already, split that second by license.
    if len(licenses) > 1:
        return PageResult(below, done_below, split_licenses(oldest, licenses), None, total)
    note = f"capped: over {RESULT_CAP} results in second {oldest} for license {licenses[0]}"
    return PageResult(below, done_below, (), note, total)


def split_licenses(second: int, licenses: tuple[int, ...]) -> tuple[ChildTask, ...]:
    half = len(licenses) // 2
    return (ChildTask(second, second, licenses[:half]), ChildTask(second, second, licenses[half:]))


def _oldest(cursor: Cursor, uploads: list[int]) -> tuple[int | None, int]:
    """The window's oldest upload second and how many results were seen in it."""
    if not uploads:
        return cursor.window_oldest, cursor.window_oldest_count
    page_oldest = min(uploads)
    page_count = uploads.count(page_oldest)
    if cursor.window_oldest is None or page_oldest < cursor.window_oldest:
        return page_oldest, page_count
    if page_oldest == cursor.window_oldest:
        return page_oldest, cursor.window_oldest_count + page_count
    return cursor.window_oldest, cursor.window_oldest_count
