"""``flickr.photos.search`` on the universe, with Flickr's quirks: any query returns at most
its first 4,000 results (a page past them is the last page within them, again), totals from
3,000 up are off by a factor in [0.8, 1.2] fixed per query, ``per_page`` is clipped to 500,
and a search with no filter at all is refused. Each query's first 4,000 results are cached."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from lab.sims.flickr.buckets import Photo, stable_hash
from lab.sims.flickr.render import parse_extras
from lab.sims.flickr.universe import RESTRICTED, Universe, query_words
from lab.sims.flickr.wire import ApiError, parse_date, parse_int

CAP = 4000  # Flickr returns at most the first 4,000 results of any search
EXACT_TOTAL_BELOW = 3000  # totals from here up are misreported by a factor in [0.8, 1.2]
MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 100
QUERY_CACHE_SIZE = 256  # queries
QUERY_CACHE_PHOTOS = 200_000  # photo references kept alive by cached results, all queries
ERR_PARAMETERLESS = (
    "Parameterless searches have been disabled. Please use flickr.photos.getRecent instead."
)


@dataclass(frozen=True)
class Query:
    """The filters of one search: what the 4,000 cap and the total are keyed by."""

    min_upload: int | None
    max_upload: int | None
    licenses: frozenset[int] | None
    words: tuple[str, ...]
    sort: str
    new_license: bool
    max_safety: int = RESTRICTED  # the highest safety level the caller may see
    changes: int = 0  # the universe's run-time changes (their version) the results reflect

    @classmethod
    def from_params(
        cls, params: dict[str, str], new_license: bool, max_safety: int = RESTRICTED
    ) -> Query:
        licenses: frozenset[int] | None = None
        raw = params.get("license", "").strip()
        if raw:
            licenses = frozenset(int(x) for x in raw.split(",") if x.strip().lstrip("-").isdigit())
        sort = params.get("sort", "date-posted-desc")
        if sort not in ("date-posted-desc", "date-posted-asc"):
            sort = "date-posted-desc"
        return cls(
            parse_date(params.get("min_upload_date")),
            parse_date(params.get("max_upload_date")),
            licenses,
            tuple(sorted(query_words(params.get("text")))),
            sort,
            new_license,
            max_safety,
        )

    @property
    def text(self) -> str | None:
        return " ".join(self.words) or None


@dataclass
class SearchPage:
    page: int
    pages: int
    perpage: int
    total: int
    photos: list[Photo]
    extras: frozenset[str]


@dataclass
class Result:
    photos: list[Photo]  # the first CAP results in sort order
    count: int  # the true (or, for huge ranges, estimated) number of matches


class SearchCache:
    """LRU of query → first-4,000 results, bounded in queries and in photos held (results pin
    their photos even after the universe's bucket cache drops them). One computation per
    query at a time."""

    def __init__(
        self,
        compute: Callable[[Query], Result],
        size: int = QUERY_CACHE_SIZE,
        photos: int = QUERY_CACHE_PHOTOS,
    ) -> None:
        self._compute = compute
        self._size = size
        self._max_photos = photos
        self._photos = 0
        self._data: OrderedDict[Query, Result] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[Query, threading.Lock] = {}

    def get(self, q: Query) -> Result:
        with self._lock:
            hit = self._data.get(q)
            if hit is not None:
                self._data.move_to_end(q)
                return hit
            gate = self._inflight.setdefault(q, threading.Lock())
        with gate:
            with self._lock:
                hit = self._data.get(q)
            if hit is None:
                hit = self._compute(q)
                with self._lock:
                    replaced = self._data.pop(q, None)
                    if replaced is not None:
                        self._photos -= len(replaced.photos)
                    self._data[q] = hit
                    self._photos += len(hit.photos)
                    while len(self._data) > 1 and (
                        len(self._data) > self._size or self._photos > self._max_photos
                    ):
                        _, old = self._data.popitem(last=False)
                        self._photos -= len(old.photos)
        with self._lock:
            self._inflight.pop(q, None)
        return hit


class Searcher:
    """Pages of ``flickr.photos.search`` over one universe."""

    def __init__(self, universe: Universe) -> None:
        self.u = universe
        self.searches = SearchCache(self._run_query)

    def search_page(self, params: dict[str, str], max_safety: int = RESTRICTED) -> SearchPage:
        """One page of ``flickr.photos.search``, with the 4,000 cap and the total's quirks,
        of the photos up to safety level ``max_safety``."""
        q = Query.from_params(params, self.u.new_license, max_safety)
        q = dataclasses.replace(q, changes=self.u.changes.version)
        if q.min_upload is None and q.max_upload is None and not q.words:
            raise ApiError(3, ERR_PARAMETERLESS)
        result = self.searches.get(q)
        per_page = parse_int(params.get("per_page"), DEFAULT_PER_PAGE)
        per_page = DEFAULT_PER_PAGE if per_page < 1 else min(per_page, MAX_PER_PAGE)
        page = max(1, parse_int(params.get("page"), 1))
        total = self.reported_total(q, result.count)
        start = (page - 1) * per_page
        if start >= CAP:  # past the cap: the last page within the cap, again
            start = ((CAP - 1) // per_page) * per_page
        chunk = result.photos[start : min(start + per_page, CAP)]
        pages = math.ceil(total / per_page)
        return SearchPage(page, pages, per_page, total, chunk, parse_extras(params.get("extras")))

    def reported_total(self, q: Query, count: int) -> int:
        """Exact under 3,000; above, off by a factor in [0.8, 1.2] fixed per query."""
        if count < EXACT_TOTAL_BELOW:
            return count
        h = stable_hash(
            self.u.seed,
            "total",
            q.min_upload,
            q.max_upload,
            sorted(q.licenses) if q.licenses is not None else None,
            q.words,
        )
        return round(count * (0.8 + 0.4 * h / 2**64))

    def _run_query(self, q: Query) -> Result:
        licenses = set(q.licenses) if q.licenses is not None else None
        photos: list[Photo] = []
        for p in self.u.search(q.min_upload, q.max_upload, licenses, q.text, q.sort, q.max_safety):
            photos.append(p)
            if len(photos) >= CAP:
                break
        if len(photos) < CAP:
            return Result(photos, len(photos))
        count = self.u.count(q.min_upload, q.max_upload, licenses, q.text, q.max_safety)
        return Result(photos, max(count, CAP))
