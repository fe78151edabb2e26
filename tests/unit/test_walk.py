"""The walk of a task's results under the 4,000 cap, step by step."""

from __future__ import annotations

from harvester.search.tasks import ChildTask, Cursor, SearchTask
from harvester.search.walk import next_step

CC = [1, 2, 3, 4, 5, 6, 9, 10]


def task(lo=1000, hi=1599, cursor=None, licenses=None) -> SearchTask:
    return SearchTask(
        id=1, task_key="k", generation=1, source="timeslice", query_text=None, min_upload=lo,
        max_upload=hi, licenses=licenses, cursor=cursor or Cursor(hi), attempts=0,
    )  # fmt: skip


def step(t, page, uploads, pages=8, per_page=500):
    return next_step(
        t,
        cc_license_ids=CC,
        page=page,
        pages=pages,
        per_page=per_page,
        uploads=uploads,
        total_reported=3000,
    )


def spread(newest: int, oldest: int, n: int = 500) -> list[int]:
    """n upload times from newest down to oldest, the oldest appearing once."""
    return [newest - (newest - oldest) * i // (n - 1) for i in range(n)]


def test_short_last_page_ends_the_task():
    result = step(task(), page=1, uploads=spread(1500, 1010, 120), pages=1)
    assert result.done and not result.children and result.total_reported == 3000


def test_empty_page_ends_the_task():
    assert step(task(), page=3, uploads=[]).done


def test_short_page_before_the_reported_last_is_not_the_end():
    # Flickr sends short pages (hidden photos) in the middle of a result set.
    result = step(task(), page=1, uploads=spread(1599, 1500, 94), pages=5)
    assert not result.done and result.cursor.page == 2


def test_full_page_moves_to_the_next_page():
    result = step(task(), page=2, uploads=spread(1500, 1400))
    assert not result.done and result.cursor == Cursor(1599, 3, 500, 1400, 1)
    assert result.total_reported is None  # only page 1's total is recorded


def test_window_at_the_cap_narrows_to_the_oldest_second_seen():
    t = task(cursor=Cursor(1599, 8, 3500, 1300, 1))
    result = step(t, page=8, uploads=spread(1300, 1250))
    assert not result.done and not result.children
    assert result.cursor == Cursor(1250, 1, 0, None, 0)


def test_one_second_over_the_cap_is_split_by_license_halves_and_the_walk_goes_below_it():
    t = task(cursor=Cursor(1300, 8, 3500, 1300, 3500))
    result = step(t, page=8, uploads=[1300] * 500)
    assert result.children == (
        ChildTask(1300, 1300, (1, 2, 3, 4)),
        ChildTask(1300, 1300, (5, 6, 9, 10)),
    )
    assert not result.done and result.cursor == Cursor(1299, 1)


def test_a_second_with_a_page_of_results_is_split_off_before_walking_it():
    # 600 results seen in second 1290 at the cap: a window of it alone would only repeat.
    t = task(cursor=Cursor(1599, 8, 3500, 1290, 100))
    result = step(t, page=8, uploads=[1290] * 500)
    assert [c.min_upload for c in result.children] == [1290, 1290]
    assert result.cursor == Cursor(1289, 1)


def test_split_second_at_the_start_of_the_range_ends_the_task():
    t = task(cursor=Cursor(1000, 8, 3500, 1000, 3500))
    result = step(t, page=8, uploads=[1000] * 500)
    assert result.done and len(result.children) == 2


def test_one_license_one_second_over_the_cap_is_noted_not_split_again():
    t = task(lo=1300, hi=1300, cursor=Cursor(1300, 8, 3500, 1300, 3500), licenses=(4,))
    result = step(t, page=8, uploads=[1300] * 500)
    assert result.done and not result.children and "capped" in result.note


def test_a_one_second_task_walks_a_dense_second_and_splits_only_at_the_cap():
    t = task(lo=1300, hi=1300, cursor=Cursor(1300, 1), licenses=(1, 2, 3, 4))
    assert step(t, page=1, uploads=[1300] * 500).cursor.page == 2
    at_cap = task(lo=1300, hi=1300, cursor=Cursor(1300, 8, 3500, 1300, 3500), licenses=(1, 2, 3))
    result = step(at_cap, page=8, uploads=[1300] * 500)
    assert result.done and result.children == (
        ChildTask(1300, 1300, (1,)),
        ChildTask(1300, 1300, (2, 3)),
    )
