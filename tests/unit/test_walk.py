"""The walk of a task's results under the 4,000 cap, step by step."""

from __future__ import annotations

from harvester.search_tasks import ChildTask, Cursor, SearchTask
from harvester.walk import next_step

CC = [1, 2, 3, 4, 5, 6, 9, 10]


def task(lo=1000, hi=1599, cursor=None, license_id=None) -> SearchTask:
    return SearchTask(1, "k", "timeslice", None, lo, hi, license_id, cursor or Cursor(hi), 0)


def step(t, page, returned, oldest, pages=8, per_page=500):
    return next_step(t, cc_license_ids=CC, page=page, pages=pages, per_page=per_page,
                     returned=returned, oldest_upload=oldest, total_reported=3000)  # fmt: skip


def test_short_last_page_ends_the_task():
    result = step(task(), page=1, returned=120, oldest=1010, pages=1)
    assert result.done and not result.children and result.total_reported == 3000


def test_empty_page_ends_the_task():
    assert step(task(), page=3, returned=0, oldest=None).done


def test_short_page_before_the_reported_last_is_not_the_end():
    # Flickr sends short pages (hidden photos) in the middle of a result set.
    result = step(task(), page=1, returned=94, oldest=1500, pages=5)
    assert not result.done and result.cursor.page == 2


def test_full_page_moves_to_the_next_page():
    result = step(task(), page=2, returned=500, oldest=1400)
    assert not result.done and result.cursor == Cursor(1599, 3, 500, 1400)
    assert result.total_reported is None  # only page 1's total is recorded


def test_window_at_the_cap_narrows_to_the_oldest_second_seen():
    t = task(cursor=Cursor(1599, 8, 3500, 1300))
    result = step(t, page=8, returned=500, oldest=1250)
    assert not result.done and result.cursor == Cursor(1250, 1, 0, None)


def test_one_second_over_the_cap_is_split_by_license_and_the_walk_goes_below_it():
    t = task(cursor=Cursor(1300, 8, 3500, 1300))
    result = step(t, page=8, returned=500, oldest=1300)
    assert result.children == tuple(ChildTask(1300, 1300, lic) for lic in CC)
    assert not result.done and result.cursor == Cursor(1299, 1, 0, None)


def test_split_second_at_the_start_of_the_range_ends_the_task():
    t = task(cursor=Cursor(1000, 8, 3500, 1000))
    result = step(t, page=8, returned=500, oldest=1000)
    assert result.done and len(result.children) == len(CC)


def test_one_license_one_second_over_the_cap_is_noted_not_split_again():
    t = task(lo=1300, hi=1300, cursor=Cursor(1300, 8, 3500, 1300), license_id=4)
    result = step(t, page=8, returned=500, oldest=1300)
    assert result.done and not result.children and "capped" in result.note
