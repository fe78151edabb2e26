"""The deterministic photo universe behind the Flickr simulator (pure Python, no HTTP): the
photos of `lab.sims.flickr.buckets`, and what a search of them returns.

A search walks buckets lazily from the sorted end and filters by upload time, license and
title words, and, for a caller that may not see every safety level, by the photo's safety
level (1 safe, 2 moderate, 3 restricted: a function of the seed and the photo id, with the
shares the universe is made with; both 0 by default, so every photo is safe). A count is
exact up to ~2,000 buckets and an expected value beyond (hot spots included). The ground
truth (every CC photo of a range) and the hot spots overlapping a range are what the
simulator's ``/_sim/`` pages show.
"""

from __future__ import annotations

from collections.abc import Iterator

from lab.sims.flickr.buckets import BUCKET_SECONDS, ID_STRIDE, Buckets, Photo, Plan, stable_hash
from lab.sims.flickr.changes import PhotoChanges
from lab.sims.flickr.tables import (
    ALL_SLOTS,
    CC_SLOTS,
    LICENSES_2025,
    NEW_LICENSE,
    NEW_LICENSE_FALLBACK,
    NEW_LICENSE_SLOT,
    SLOT_WEIGHTS,
    is_cc_url,
)

EXACT_COUNT_BUCKETS = 2000
SAFE, MODERATE, RESTRICTED = 1, 2, 3


def query_words(text: str | None) -> frozenset[str]:
    """The words a ``text=`` search needs in a title (case-insensitive, whitespace-split)."""
    return frozenset(text.lower().split()) if text else frozenset()


class Universe(Buckets):
    """All photos of a simulated Flickr, generated lazily from ``seed``."""

    def __init__(
        self, *, moderate_share: float = 0.0, restricted_share: float = 0.0, **options
    ) -> None:
        if moderate_share < 0 or restricted_share < 0 or moderate_share + restricted_share > 1:
            raise ValueError("moderate and restricted shares must be >= 0 and sum to at most 1")
        super().__init__(**options)
        self.moderate_share = moderate_share
        self.restricted_share = restricted_share
        self.changes = PhotoChanges()  # deleted, private, relabelled at run time

    def photo(self, photo_id: int) -> Photo | None:
        """The photo of that id as generated (before run-time changes), or None."""
        for p in self._bucket(photo_id // ID_STRIDE, self.new_license):
            if p.id == photo_id:
                return p
        return None

    def safety_of(self, p: Photo) -> int:
        """The photo's safety level, fixed by the seed and its id."""
        if not (self.moderate_share or self.restricted_share):
            return SAFE
        x = stable_hash(self.seed, "safety", p.id) / 2**64
        if x < self.restricted_share:
            return RESTRICTED
        return MODERATE if x < self.restricted_share + self.moderate_share else SAFE

    def hides(self, max_safety: int) -> bool:
        """Whether a caller that sees levels up to ``max_safety`` misses any photo."""
        return (max_safety < MODERATE and self.moderate_share > 0) or (
            max_safety < RESTRICTED and self.restricted_share > 0
        )

    def _visible_share(self, max_safety: int) -> float:
        hidden = self.restricted_share if max_safety < RESTRICTED else 0.0
        return 1.0 - hidden - (self.moderate_share if max_safety < MODERATE else 0.0)

    def licenses(self) -> list[dict]:
        rows = list(LICENSES_2025)
        if self.new_license:
            rows.append(NEW_LICENSE)
        return [{"id": i, "name": n, "url": u} for i, n, u in rows]

    def cc_license_ids(self) -> set[int]:
        return {row["id"] for row in self.licenses() if is_cc_url(row["url"])}

    def _slot_set(self, licenses: set[int] | None, new_license: bool) -> frozenset[int] | None:
        """License ids → the plan slots whose photos carry one of them (None = all)."""
        if licenses is None:
            return None
        slots = {s for s in licenses if 0 <= s < NEW_LICENSE_SLOT}
        if new_license and NEW_LICENSE_SLOT in licenses:
            slots.add(NEW_LICENSE_SLOT)
        if not new_license and NEW_LICENSE_FALLBACK in licenses:
            slots.add(NEW_LICENSE_SLOT)
        return frozenset(slots)

    def _clip(self, min_upload: int | None, max_upload: int | None) -> tuple[int, int]:
        lo = self.start if min_upload is None else max(self.start, min_upload)
        hi = self.end if max_upload is None else min(self.end, max_upload)
        return lo, hi

    def search(
        self,
        min_upload: int | None,
        max_upload: int | None,
        licenses: set[int] | None,
        text: str | None,
        sort: str = "date-posted-desc",
        max_safety: int = RESTRICTED,
    ) -> Iterator[Photo]:
        """Matching photos in sort order, walking buckets lazily from the sorted end."""
        hidden = self.hides(max_safety)
        lo, hi = self._clip(min_upload, max_upload)
        nl = self.new_license
        slots = self._slot_set(licenses, nl)
        words = query_words(text)
        if lo > hi or (slots is not None and not slots):
            return
        asc = sort == "date-posted-asc"
        b_lo, b_hi = lo // BUCKET_SECONDS, hi // BUCKET_SECONDS
        buckets = range(b_lo, b_hi + 1) if asc else range(b_hi, b_lo - 1, -1)
        title_words = self._title_words
        changes = self.changes
        changed = changes.by_id
        for b in buckets:
            no_slot = slots is not None and not self._plan(b).slot_count(slots)
            if no_slot and b not in changes.buckets:
                continue
            photos = self._bucket(b, nl)
            for p in photos if asc else reversed(photos):
                if p.dateupload < lo or p.dateupload > hi:
                    continue
                if changed and p.id in changed:  # a plain dict: this loop is the hot path
                    p = changes.apply(p)  # type: ignore[assignment]
                    if p is None:
                        continue
                if licenses is not None and p.license not in licenses:
                    continue
                if words and not words <= title_words[p.title]:
                    continue
                if hidden and self.safety_of(p) > max_safety:
                    continue
                yield p

    def count(
        self,
        min_upload: int | None,
        max_upload: int | None,
        licenses: set[int] | None = None,
        text: str | None = None,
        max_safety: int = RESTRICTED,
    ) -> int:
        """Matching photos: exact up to ~2,000 buckets, an expected value beyond."""
        lo, hi = self._clip(min_upload, max_upload)
        if lo > hi:
            return 0
        exact = hi // BUCKET_SECONDS - lo // BUCKET_SECONDS < EXACT_COUNT_BUCKETS
        if self.hides(max_safety):
            if exact:
                return sum(1 for _ in self.search(lo, hi, licenses, text, max_safety=max_safety))
            estimate = self._estimate_count(lo, hi, licenses, text)
            return round(estimate * self._visible_share(max_safety))
        if exact:
            return self._exact_count(lo, hi, licenses, text)
        return self._estimate_count(lo, hi, licenses, text)

    def _exact_count(self, lo: int, hi: int, licenses: set[int] | None, text: str | None) -> int:
        nl = self.new_license
        slots = self._slot_set(licenses, nl)
        if slots is not None and not slots:
            return 0
        if text and query_words(text):
            return sum(1 for _ in self.search(lo, hi, licenses, text))
        total = 0
        for b in range(lo // BUCKET_SECONDS, hi // BUCKET_SECONDS + 1):
            base = b * BUCKET_SECONDS
            if base >= lo and base + BUCKET_SECONDS - 1 <= hi:
                plan = self._plan(b)
                total += plan.slot_count(ALL_SLOTS if slots is None else slots)
            else:
                total += sum(
                    1
                    for p in self._bucket(b, nl)
                    if lo <= p.dateupload <= hi and (licenses is None or p.license in licenses)
                )
        return total

    def _estimate_count(self, lo: int, hi: int, licenses: set[int] | None, text: str | None) -> int:
        slots = self._slot_set(licenses, self.new_license)
        slots_t = ALL_SLOTS if slots is None else tuple(slots)
        p_license = sum(SLOT_WEIGHTS[s] for s in slots_t)
        words = query_words(text)
        p_text = 1.0
        if words:
            p_text = sum(1 for t in self.titles if words <= self._title_words[t]) / len(self.titles)
        expected = self.density * (hi - lo + 1) / BUCKET_SECONDS * p_license
        for b in self._hot_buckets(lo // BUCKET_SECONDS, hi // BUCKET_SECONDS):
            plan = self._plan(b)
            assert plan.hot is not None
            hot = sum(plan.hot[s] for s in slots_t)
            if plan.kind == "second":
                expected += hot if lo <= plan.hot_second <= hi else 0
            else:
                base = b * BUCKET_SECONDS
                inside = min(hi, base + BUCKET_SECONDS - 1) - max(lo, base) + 1
                expected += hot * inside / BUCKET_SECONDS
        return round(expected * p_text)

    def _hot_buckets(self, b_lo: int, b_hi: int) -> list[int]:
        """Every hot-spot bucket in ``[b_lo, b_hi]``, ascending."""
        found: set[int] = set()
        for every, offset in (
            (self.hot_window_every, self.hot_window_offset),
            (self.hot_second_every, self.hot_second_offset),
        ):
            if every:
                found.update(range(b_lo + (offset - b_lo) % every, b_hi + 1, every))
        return sorted(found)

    def truth(self, min_upload: int, max_upload: int, max_safety: int = RESTRICTED) -> list[int]:
        """Sorted ids of every CC photo (current license table) uploaded in the range, of the
        safety levels up to ``max_safety``."""
        cc = self.cc_license_ids()
        found = self.search(min_upload, max_upload, cc, None, "date-posted-asc", max_safety)
        return sorted(p.id for p in found)

    def truth_by_safety(self, min_upload: int, max_upload: int) -> dict[int, list[int]]:
        """`truth` of every safety level, by level (1 safe, 2 moderate, 3 restricted)."""
        cc = self.cc_license_ids()
        levels: dict[int, list[int]] = {SAFE: [], MODERATE: [], RESTRICTED: []}
        for p in self.search(min_upload, max_upload, cc, None, "date-posted-asc", RESTRICTED):
            levels[self.safety_of(p)].append(p.id)
        return {level: sorted(ids) for level, ids in levels.items()}

    def hotspots(self, min_upload: int, max_upload: int) -> list[dict]:
        """Hot windows and hot seconds overlapping the range (clipped to the universe)."""
        lo, hi = self._clip(min_upload, max_upload)
        if lo > hi:
            return []
        cc = self.cc_license_ids()
        out: list[dict] = []
        for b in self._hot_buckets(lo // BUCKET_SECONDS, hi // BUCKET_SECONDS):
            plan = self._plan(b)
            if plan.kind == "second":
                s = plan.hot_second
                start = end = s
            else:
                start, end = b * BUCKET_SECONDS, b * BUCKET_SECONDS + BUCKET_SECONDS - 1
            if end < lo or start > hi:
                continue
            n = self._hotspot_cc(b, plan, start, end, cc)
            if n:
                out.append({"kind": plan.kind, "start": start, "end": end, "cc_photos": n})
        return out

    def _hotspot_cc(self, b: int, plan: Plan, start: int, end: int, cc: set[int]) -> int:
        base = b * BUCKET_SECONDS
        if base >= self.start and base + BUCKET_SECONDS - 1 <= self.end and plan.hot:
            # CC-ness of a slot does not depend on new_license (slot 17 falls back to CC 11).
            if plan.kind == "second":
                return sum(plan.hot[s] for s in CC_SLOTS)
            return plan.slot_count(CC_SLOTS)
        return sum(
            1
            for p in self._bucket(b, self.new_license)
            if start <= p.dateupload <= end and p.license in cc
        )
