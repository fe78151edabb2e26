"""Tests of the simulated Flickr photo universe (lab.sims.flickr.universe), no HTTP involved."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import yaml

from lab.sims.flickr.buckets import BUCKET_SECONDS, Photo
from lab.sims.flickr.tables import LICENSES_2025, is_cc_url
from lab.sims.flickr.universe import Universe

FIXTURES = Path(os.environ.get("CCMIRROR_FIXTURES", "/work/shared/fixtures")) / "flickr"
END = 1735689600  # 2025-01-01
JUNE_2024 = 1717200000  # 2024-06-01
DAY = 86400


@pytest.fixture(scope="module")
def universe() -> Universe:
    return Universe(seed=7, end=END)


def bucket_range(t0: int, n: int) -> range:
    return range(t0 // BUCKET_SECONDS, t0 // BUCKET_SECONDS + n)


def photos_between(u: Universe, t0: int, n_buckets: int) -> list[Photo]:
    return [p for b in bucket_range(t0, n_buckets) for p in u.photos_in_bucket(b)]


def first_hotspot(u: Universe, kind: str, lo: int = JUNE_2024, days: int = 150) -> dict:
    return next(h for h in u.hotspots(lo, lo + days * DAY) if h["kind"] == kind)


def test_same_seed_same_photos_other_seed_other_photos() -> None:
    a, b, c = Universe(seed=3, end=END), Universe(seed=3, end=END), Universe(seed=4, end=END)
    pa, pb, pc = (photos_between(x, JUNE_2024, 30) for x in (a, b, c))
    assert pa == pb
    assert [p.id for p in pa] != [p.id for p in pc]
    span = (JUNE_2024, JUNE_2024 + 30 * DAY)
    assert a.hotspots(*span) == b.hotspots(*span)


def test_ids_unique_and_increasing_with_upload_time(universe: Universe) -> None:
    photos = photos_between(universe, JUNE_2024, 300)
    ids = [p.id for p in photos]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    by_id = sorted(photos, key=lambda p: p.id)
    uploads = [p.dateupload for p in by_id]
    assert uploads == sorted(uploads)
    assert all(0 < i < 2**63 for i in ids)


def test_search_bounds_are_inclusive(universe: Universe) -> None:
    photos = photos_between(universe, JUNE_2024, 3)
    p = photos[len(photos) // 2]
    t = p.dateupload
    assert p.id in {x.id for x in universe.search(t, t, None, None)}
    assert p.id not in {x.id for x in universe.search(t + 1, t + 10, None, None)}
    assert p.id not in {x.id for x in universe.search(t - 10, t - 1, None, None)}
    everything = list(universe.search(t - 100, t + 100, None, None))
    assert all(t - 100 <= x.dateupload <= t + 100 for x in everything)
    assert {x.dateupload for x in everything} >= {t}


def test_photos_only_exist_inside_universe_bounds() -> None:
    start, end = JUNE_2024 + 250, JUNE_2024 + 3 * DAY + 17
    u = Universe(seed=2, start=start, end=end)
    found = list(u.search(None, None, None, None))
    assert found
    assert all(start <= p.dateupload <= end for p in found)
    assert not u.photos_in_bucket((end + 3600) // BUCKET_SECONDS)
    assert u.count(None, None) == len(found)


def test_sort_orders(universe: Universe) -> None:
    lo, hi = JUNE_2024, JUNE_2024 + 7200
    desc = list(universe.search(lo, hi, None, None))
    asc = list(universe.search(lo, hi, None, None, sort="date-posted-asc"))
    assert asc == desc[::-1]
    keys = [(p.dateupload, p.id) for p in desc]
    assert keys == sorted(keys, reverse=True)


def test_search_walks_lazily(universe: Universe) -> None:
    u = Universe(seed=11, end=END)
    cc = u.cc_license_ids()
    first = [p for _, p in zip(range(4000), u.search(None, None, cc, None), strict=False)]
    assert len(first) == 4000
    assert u._bucket.cache_info().currsize < 2000  # only the newest buckets were built
    assert first[0].dateupload <= END


def test_license_table_and_cc_ids(universe: Universe) -> None:
    table = universe.licenses()
    assert [r["id"] for r in table] == [i for i, _, _ in LICENSES_2025]
    assert {r["id"] for r in table} == set(range(17))
    names = {r["id"]: r["name"] for r in table}
    assert names[0] == "All Rights Reserved" and names[11] == "CC BY 4.0"
    assert names[9] == "Public Domain Dedication (CC0)" and names[10] == "Public Domain Mark"
    assert universe.cc_license_ids() == {1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16}
    assert is_cc_url("https://creativecommons.org/publicdomain/zero/1.0/")
    assert not is_cc_url("https://www.flickr.com/commons/usage/")


def test_license_table_is_flickrs_2025_table() -> None:
    cassette = FIXTURES / "xml_cassettes" / "licenses_getinfo_2025.yml"
    if not cassette.exists():
        pytest.skip(f"fixture {cassette} not available")
    body = yaml.safe_load(cassette.read_text())["interactions"][0]["response"]["body"]["string"]
    rows = [
        (int(e.get("id")), e.get("name"), e.get("url")) for e in ET.fromstring(body).iter("license")
    ]
    assert rows == list(LICENSES_2025)


def test_license_mix(universe: Universe) -> None:
    photos = photos_between(universe, JUNE_2024 + 2 * DAY, 400)
    share = {k: v / len(photos) for k, v in Counter(p.license for p in photos).items()}
    assert 0.45 < share[0] < 0.55
    assert 0.03 < share[7] < 0.07 and 0.03 < share[8] < 0.07
    assert set(share) <= set(range(17))
    assert all(share.get(i, 0) > 0 for i in universe.cc_license_ids())


def test_hot_window_has_over_4000_cc_photos_in_one_bucket(universe: Universe) -> None:
    hot = first_hotspot(universe, "window")
    b = hot["start"] // BUCKET_SECONDS
    assert universe.hot_kind(b) == "window"
    assert b % universe.hot_window_every == universe.hot_window_offset
    cc = universe.cc_license_ids()
    photos = [p for p in universe.photos_in_bucket(b) if p.license in cc]
    assert 4500 <= len(photos) <= 7000
    assert hot["cc_photos"] == len(photos)
    per_second = Counter(p.dateupload for p in photos)
    assert max(per_second.values()) < 4000
    assert len(per_second) > 500  # spread over the whole 10 minutes


def test_hot_second_over_4000_cc_but_under_4000_per_license(universe: Universe) -> None:
    hot = first_hotspot(universe, "second")
    assert hot["start"] == hot["end"]
    s = hot["start"]
    b = s // BUCKET_SECONDS
    assert universe.hot_kind(b) == "second"
    in_second = [p for p in universe.photos_in_bucket(b) if p.dateupload == s]
    assert 4500 <= len(in_second) <= 7000
    cc = universe.cc_license_ids()
    cc_count = sum(1 for p in in_second if p.license in cc)
    assert cc_count > 4000 and cc_count == hot["cc_photos"]
    assert max(Counter(p.license for p in in_second).values()) < 4000
    assert len(list(universe.search(s, s, cc, None))) == cc_count


def test_hotspot_placement_is_exposed(universe: Universe) -> None:
    lo, hi = JUNE_2024, JUNE_2024 + 60 * DAY
    for h in universe.hotspots(lo, hi):
        b = h["start"] // BUCKET_SECONDS
        every = universe.hot_window_every if h["kind"] == "window" else universe.hot_second_every
        offset = universe.hot_window_offset if h["kind"] == "window" else universe.hot_second_offset
        assert b % every == offset
    assert Universe(seed=7, end=END, hot_window_every=0, hot_second_every=0).hotspots(lo, hi) == []


def test_owners_who_disallow_originals_have_no_original(universe: Universe) -> None:
    disallowed = [o for o in universe.owners if not o.allow_original]
    assert len(disallowed) == round(len(universe.owners) * 0.25)
    photos = photos_between(universe, JUNE_2024, 200)
    blocked = {o.nsid for o in disallowed}
    hidden = [p for p in photos if p.owner in blocked]
    assert hidden and all(
        not p.allow_original and p.originalsecret is None and p.originalformat is None
        for p in hidden
    )
    assert all(p.originalsecret and p.originalformat for p in photos if p.owner not in blocked)
    for p in hidden[:50]:
        assert "o" not in {size for size, *_ in universe.photo_urls(p)}


def test_owner_names_include_awkward_characters(universe: Universe) -> None:
    names = {o.name for o in universe.owners}
    assert any(not n.isascii() for n in names)
    assert any(ch in n for n in names for ch in "&<'\"")
    assert all("@N" in o.nsid for o in universe.owners)


def test_sizes_follow_flickr_suffixes(universe: Universe) -> None:
    photos = [p for p in photos_between(universe, JUNE_2024, 50) if p.allow_original]
    for p in photos[:200]:
        urls = {key: (url, w, h) for key, url, w, h in universe.photo_urls(p)}
        long_edge = max(p.width, p.height)
        assert urls["sq"][1:] == (75, 75) and urls["q"][1:] == (150, 150)
        assert urls["m"][0].endswith(f"/{p.server}/{p.id}_{p.secret}.jpg")
        assert urls["s"][0].endswith(f"_{p.secret}_m.jpg")
        if long_edge >= 1024:
            assert urls["l"][0].endswith(f"_{p.secret}_b.jpg")
        assert urls["o"] == (
            f"https://live.staticflickr.com/{p.server}/{p.id}_{p.originalsecret}_o."
            f"{p.originalformat}",
            p.width,
            p.height,
        )
        for key, edge in (
            ("z", 640),
            ("c", 800),
            ("l", 1024),
            ("h", 1600),
            ("k", 2048),
            ("3k", 3072),
            ("4k", 4096),
            ("5k", 5120),
            ("6k", 6144),
        ):
            assert (key in urls) == (long_edge >= edge)
            if key in urls:
                assert max(urls[key][1:]) == edge
        assert len(p.secret) == 10 and int(p.secret, 16) >= 0


def test_new_license_relabels_five_percent_as_17() -> None:
    old = Universe(seed=5, end=END)
    new = Universe(seed=5, end=END, new_license=True)
    row = new.licenses()[-1]
    assert row == {
        "id": 17,
        "name": "CC BY 5.0 (simulated)",
        "url": "https://creativecommons.org/licenses/by/5.0/",
    }
    assert 17 in new.cc_license_ids() and 17 not in old.cc_license_ids()
    p_old, p_new = photos_between(old, JUNE_2024, 200), photos_between(new, JUNE_2024, 200)
    assert [p.id for p in p_old] == [p.id for p in p_new]
    moved = [(a, b) for a, b in zip(p_old, p_new, strict=True) if b.license == 17]
    normal = [p for p in p_new if new.hot_kind(p.dateupload // BUCKET_SECONDS) is None]
    assert 0.03 < sum(1 for p in normal if p.license == 17) / len(normal) < 0.07
    assert all(a.license == 11 for a, _ in moved)  # CC BY 4.0 before the new license existed
    hard_coded = set(range(1, 7)) | set(range(9, 17))
    lo, hi = JUNE_2024, JUNE_2024 + 6 * 3600
    assert new.truth(lo, hi) == old.truth(lo, hi)
    missed = set(new.truth(lo, hi)) - {p.id for p in new.search(lo, hi, hard_coded, None)}
    assert missed and missed == {p.id for p in new.search(lo, hi, {17}, None)}
    assert not list(old.search(lo, hi, {17}, None))


def test_truth_equals_cc_photos_from_search(universe: Universe) -> None:
    lo, hi = JUNE_2024 + 123, JUNE_2024 + DAY - 77
    cc = universe.cc_license_ids()
    everything = list(universe.search(lo, hi, None, None))
    assert universe.truth(lo, hi) == sorted(p.id for p in everything if p.license in cc)


def test_count_is_exact_for_small_ranges(universe: Universe) -> None:
    lo, hi = JUNE_2024 + 301, JUNE_2024 + 2 * DAY + 7
    for licenses, text in ((None, None), ({4, 11}, None), (None, "sunset"), ({0}, "cat")):
        expected = sum(1 for _ in universe.search(lo, hi, licenses, text))
        assert universe.count(lo, hi, licenses, text) == expected


def test_count_estimate_for_huge_ranges_is_plausible(universe: Universe) -> None:
    lo, hi = JUNE_2024, JUNE_2024 + 60 * DAY
    estimate = universe.count(lo, hi, universe.cc_license_ids())
    exact = sum(
        universe._plan(b).slot_count((1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 17))
        for b in range(lo // BUCKET_SECONDS, hi // BUCKET_SECONDS + 1)
    )
    assert 0.8 * exact < estimate < 1.2 * exact


def test_text_search_matches_every_word_case_insensitively(universe: Universe) -> None:
    lo, hi = JUNE_2024, JUNE_2024 + DAY
    hits = list(universe.search(lo, hi, None, "SUNSET"))
    assert hits and all("sunset" in p.title.lower().split() for p in hits)
    two = list(universe.search(lo, hi, None, "sunset  river"))
    assert all({"sunset", "river"} <= set(p.title.lower().split()) for p in two)
    titles = [p.title for p in photos_between(universe, JUNE_2024, 200)]
    assert "" in titles and any(not t.isascii() for t in titles)


SHARES = {"moderate_share": 0.10, "restricted_share": 0.05}


def test_safety_levels_follow_the_seed_and_the_shares() -> None:
    u = Universe(seed=7, end=END, **SHARES)
    photos = photos_between(u, JUNE_2024, 300)
    levels = Counter(u.safety_of(p) for p in photos)

    again, other_seed, default = (
        Universe(seed=7, end=END, **SHARES),
        Universe(seed=8, end=END, **SHARES),
        Universe(seed=7, end=END),
    )
    assert [u.safety_of(p) for p in photos] == [again.safety_of(p) for p in photos]
    assert [u.safety_of(p) for p in photos] != [other_seed.safety_of(p) for p in photos]
    assert abs(levels[2] / len(photos) - 0.10) < 0.02, levels
    assert abs(levels[3] / len(photos) - 0.05) < 0.015, levels
    assert {default.safety_of(p) for p in photos} == {1}  # no share given: every photo safe


def test_a_search_up_to_a_level_leaves_out_the_photos_above_it() -> None:
    u = Universe(seed=7, end=END, **SHARES)
    lo, hi = JUNE_2024, JUNE_2024 + 6 * 3600 - 1
    every = list(u.search(lo, hi, None, None))
    safe = list(u.search(lo, hi, None, None, max_safety=1))
    moderate = list(u.search(lo, hi, None, None, max_safety=2))

    assert safe == [p for p in every if u.safety_of(p) == 1]
    assert moderate == [p for p in every if u.safety_of(p) <= 2]
    assert u.count(lo, hi, None, None, max_safety=1) == len(safe)
    assert u.count(lo, hi) == len(every)
    assert set(u.truth(lo, hi, max_safety=1)) == {
        p.id for p in safe if p.license in u.cc_license_ids()
    }


def test_the_truth_by_safety_level_splits_the_truth_by_each_photos_level() -> None:
    u = Universe(seed=7, end=END, **SHARES)
    lo, hi = JUNE_2024, JUNE_2024 + 6 * 3600 - 1
    by_level = u.truth_by_safety(lo, hi)

    assert sorted(by_level[1] + by_level[2] + by_level[3]) == u.truth(lo, hi)
    assert by_level[1] == u.truth(lo, hi, max_safety=1)
    assert sorted(by_level[1] + by_level[2]) == u.truth(lo, hi, max_safety=2)
    assert by_level[2] and by_level[3]


def test_shares_beyond_the_whole_are_refused() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        Universe(seed=7, end=END, moderate_share=0.7, restricted_share=0.4)
