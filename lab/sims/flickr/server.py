"""A Flickr REST API simulator over HTTP, for tests, the lab and benchmarks.

Serves ``flickr.photos.search`` and ``flickr.photos.licenses.getInfo`` from a deterministic
:class:`lab.sims.flickr.universe.Universe`, with Flickr's awkward parts kept on purpose: the
4,000-result cap (later pages repeat the last page within the cap), misreported totals,
string/int type quirks, ``\\/``-escaped JSON, HTTP-200 errors, API keys, a per-key rate limit
and injectable faults (5xx, codes 105/201, truncated JSON, slow answers).

Run it in the foreground::

    python -m lab.sims.flickr.server --host 127.0.0.1 --port 0 --seed 1

It prints one line, ``flickr_sim listening on http://HOST:PORT/services/rest/``, when ready and
exits 0 on SIGTERM/SIGINT. Ground truth and run-time control live under ``/_sim/`` (no key).
API keys are never logged or echoed in full.
"""

from __future__ import annotations

import argparse
import calendar
import json
import math
import random
import re
import signal
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from json.encoder import encode_basestring_ascii as _encode_str  # type: ignore[attr-defined]
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import quoteattr

from lab.sims.flickr.universe import (
    DEFAULT_START,
    OWN_SECRET_SIZES,
    SIZES,
    Photo,
    Universe,
    query_words,
    size_secret,
    stable_hash,
    today_midnight_utc,
)

CAP = 4000  # Flickr returns at most the first 4,000 results of any search
EXACT_TOTAL_BELOW = 3000  # totals from here up are misreported by a factor in [0.8, 1.2]
MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 100
DEFAULT_KEY = "lab-flickr-key"
FAULT_KINDS = ("5xx", "105", "201", "malformed", "slow")
QUERY_CACHE_SIZE = 256  # queries
QUERY_CACHE_PHOTOS = 200_000  # photo references kept alive by cached results, all queries
KNOWN_METHODS = ("flickr.photos.search", "flickr.photos.licenses.getInfo")

ERR_KEY_INVALID = "Invalid API Key (Key has invalid format)"
ERR_KEY_NOT_FOUND = "Invalid API Key (Key not found)"
ERR_105 = "Service currently unavailable"
ERR_201 = "Sorry, the Flickr API service is not currently available."
ERR_PARAMETERLESS = (
    "Parameterless searches have been disabled. Please use flickr.photos.getRecent instead."
)
JSON_OK = "application/json"
JSON_FAIL = "text/plain; charset=utf-8"
XML_TYPE = "text/xml; charset=utf-8"
_HEX32 = re.compile(r"[0-9a-f]{32}")
_CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.]{0,63}")


# ---------------------------------------------------------------------------- plumbing
@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = JSON_OK
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """A Flickr ``stat:fail`` answer (HTTP 200)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Settings:
    """What ``/_sim/control`` may change at run time."""

    keys: frozenset[str] = frozenset({DEFAULT_KEY})
    rate_limit: int = 3600
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULT_KINDS
    fault_methods: tuple[str, ...] = ()  # the API methods faults hit; empty: all of them
    slow_seconds: float = 5.0

    def public(self, new_license: bool) -> dict:
        return {
            "fault_rate": self.fault_rate,
            "faults": list(self.faults),
            "fault_methods": list(self.fault_methods),
            "new_license": new_license,
            "rate_limit": self.rate_limit,
            "slow_seconds": self.slow_seconds,
        }


def key_label(key: str) -> str:
    """How a key appears in stats: its first 4 characters only."""
    return key[:4] + "…"


def flickr_json(obj: object) -> str:
    """JSON the way Flickr writes it: compact, ``\\uXXXX`` escapes and ``\\/``."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/")


def parse_date(value: str | None) -> int | None:
    """Unix seconds, or a MySQL datetime/date in UTC; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return calendar.timegm(datetime.strptime(value, fmt).timetuple())
        except ValueError:
            continue
    return None


def parse_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class RateLimiter:
    """A token bucket per key: ``per_hour`` calls an hour, bursts up to ``per_hour``."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the call may go ahead, else the seconds until it could."""
        if self.per_hour <= 0:
            return 0.0
        rate = self.per_hour / 3600.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.per_hour), now))
            tokens = min(float(self.per_hour), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.calls_by_key: Counter[str] = Counter()
        self.faults = 0
        self.rate_limited = 0

    def call(self, method: str, key: str | None) -> None:
        with self._lock:
            self.calls[method if method in KNOWN_METHODS else "other"] += 1
            if key is not None:
                self.calls_by_key[key_label(key)] += 1

    def bump(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "calls": dict(self.calls),
                "calls_by_key": dict(self.calls_by_key),
                "faults": self.faults,
                "rate_limited": self.rate_limited,
            }


# ---------------------------------------------------------------------------- search
@dataclass(frozen=True)
class Query:
    """The filters of one search: what the 4,000 cap and the total are keyed by."""

    min_upload: int | None
    max_upload: int | None
    licenses: frozenset[int] | None
    words: tuple[str, ...]
    sort: str
    new_license: bool

    @classmethod
    def from_params(cls, params: dict[str, str], new_license: bool) -> Query:
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


_STRING_LONG_EDGE = frozenset({"n", "c", "h", "k", "3k", "4k", "5k", "6k"})


def _dims(key: str, w: int, h: int) -> tuple[int | str, int | str]:
    """(width, height) typed as the fixtures show for that size: ``sq`` ints; ``n``, ``c``,
    ``h``, ``k`` (and the newer ``3k`` … ``6k``) the long edge a string and the other edge an
    int; the rest strings."""
    if key == "sq":
        return w, h
    if key in _STRING_LONG_EDGE:
        return (str(w), h) if w >= h else (w, str(h))
    return str(w), str(h)


def _datetaken(p: Photo) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(p.datetaken))


def _description(p: Photo) -> str:
    return f"Photo by {p.ownername}" if int(p.secret, 16) % 7 == 0 else ""


def _icon(p: Photo) -> int:
    return int(p.owner.split("@")[0]) % 8000 + 1


def _tags(p: Photo) -> str:
    return " ".join(w.lower() for w in p.title.split() if w.isalnum())


def _lastupdate(p: Photo) -> int:
    return p.dateupload + int(p.secret, 16) % 5_000_000


def _views(p: Photo) -> int:
    return int(p.secret, 16) % 5000


def _js(text: str) -> str:
    """A JSON string literal as Flickr writes it."""
    return _encode_str(text).replace("/", "\\/")


def parse_extras(raw: str | None) -> frozenset[str]:
    return frozenset(e.strip() for e in (raw or "").split(",") if e.strip())


class PhotoRenderer:
    """Turns a Photo into what Flickr returns for a set of extras.

    ``render`` builds the dict (the reference, also used for XML); ``render_json`` writes the
    same thing straight to Flickr-style JSON text, several times faster than json.dumps of
    the dict (tests check the two agree).
    """

    def __init__(self, universe: Universe) -> None:
        self.u = universe
        self._base = universe.image_base.replace("/", "\\/")
        self._sizes: dict[frozenset[str], tuple[_SizeSpec, ...]] = {}

    def _wanted_sizes(self, extras: frozenset[str]) -> tuple[_SizeSpec, ...]:
        sizes = self._sizes.get(extras)
        if sizes is None:
            sizes = tuple(_size_spec(self.u, *s) for s in SIZES if "url_" + s[0] in extras)
            if len(self._sizes) < 1024:
                self._sizes[extras] = sizes
        return sizes

    def render(self, p: Photo, extras: frozenset[str]) -> dict:
        d: dict = {
            "id": str(p.id),
            "owner": p.owner,
            "secret": p.secret,
            "server": p.server,
            "farm": p.farm,
            "title": p.title,
            "ispublic": 1,
            "isfriend": 0,
            "isfamily": 0,
        }
        if not extras:
            return d
        if "description" in extras:
            d["description"] = {"_content": _description(p)}
        if "license" in extras:
            d["license"] = str(p.license)
        if "date_upload" in extras:
            d["dateupload"] = str(p.dateupload)
        if "date_taken" in extras:
            d["datetaken"] = _datetaken(p)
            d["datetakengranularity"] = "0"
            d["datetakenunknown"] = "0"
        if "owner_name" in extras:
            d["ownername"] = p.ownername
        if "icon_server" in extras:
            d["iconserver"] = str(_icon(p))
            d["iconfarm"] = _icon(p) // 1000 + 1
        if "original_format" in extras and p.allow_original:
            d["originalsecret"] = p.originalsecret
            d["originalformat"] = p.originalformat
        if "last_update" in extras:
            d["lastupdate"] = str(_lastupdate(p))
        if "tags" in extras:
            d["tags"] = _tags(p)
        if "machine_tags" in extras:
            d["machine_tags"] = ""
        if "o_dims" in extras and p.allow_original:
            d["o_width"] = str(p.width)
            d["o_height"] = str(p.height)
        if "views" in extras:
            d["views"] = str(_views(p))
        if "media" in extras:
            d["media"] = "photo"
            d["media_status"] = "ready"
        if "path_alias" in extras:
            d["pathalias"] = None
        for key, url, w, h in self.u.photo_urls(p):
            if "url_" + key in extras:
                width, height = _dims(key, w, h)
                d["url_" + key] = url
                d["height_" + key] = height
                d["width_" + key] = width
        return d

    def render_json(self, p: Photo, extras: frozenset[str]) -> str:
        out = [
            f'{{"id":"{p.id}","owner":"{p.owner}","secret":"{p.secret}",'
            f'"server":"{p.server}","farm":{p.farm},"title":{_js(p.title)},'
            '"ispublic":1,"isfriend":0,"isfamily":0'
        ]
        if extras:
            self._json_extras(p, extras, out)
            self._json_urls(p, extras, out)
        out.append("}")
        return "".join(out)

    @staticmethod
    def _json_extras(p: Photo, extras: frozenset[str], out: list[str]) -> None:
        if "description" in extras:
            out.append(f',"description":{{"_content":{_js(_description(p))}}}')
        if "license" in extras:
            out.append(f',"license":"{p.license}"')
        if "date_upload" in extras:
            out.append(f',"dateupload":"{p.dateupload}"')
        if "date_taken" in extras:
            out.append(
                f',"datetaken":"{_datetaken(p)}","datetakengranularity":"0","datetakenunknown":"0"'
            )
        if "owner_name" in extras:
            out.append(f',"ownername":{_js(p.ownername)}')
        if "icon_server" in extras:
            icon = _icon(p)
            out.append(f',"iconserver":"{icon}","iconfarm":{icon // 1000 + 1}')
        if "original_format" in extras and p.allow_original:
            out.append(
                f',"originalsecret":"{p.originalsecret}","originalformat":"{p.originalformat}"'
            )
        if "last_update" in extras:
            out.append(f',"lastupdate":"{_lastupdate(p)}"')
        if "tags" in extras:
            out.append(f',"tags":{_js(_tags(p))}')
        if "machine_tags" in extras:
            out.append(',"machine_tags":""')
        if "o_dims" in extras and p.allow_original:
            out.append(f',"o_width":"{p.width}","o_height":"{p.height}"')
        if "views" in extras:
            out.append(f',"views":"{_views(p)}"')
        if "media" in extras:
            out.append(',"media":"photo","media_status":"ready"')
        if "path_alias" in extras:
            out.append(',"pathalias":null')

    def _json_urls(self, p: Photo, extras: frozenset[str], out: list[str]) -> None:
        sizes = self._wanted_sizes(extras)
        if not sizes:
            return
        w, h = p.width, p.height
        wide = w >= h
        long_edge, short_edge = (w, h) if wide else (h, w)
        secret = p.secret
        bits = int(secret, 16)
        prefix = f"{self._base}\\/{p.server}\\/{p.id}_"
        for suffix, edge, salt, landscape, portrait in sizes:
            if edge > 0:
                if long_edge < edge:
                    continue
                other = round(short_edge * edge / long_edge)  # as universe.scaled()
                url = f"{prefix}{size_secret(bits, salt) if salt else secret}{suffix}.jpg"
                if wide:
                    out.append(landscape.format(url, other, edge))
                else:
                    out.append(portrait.format(url, edge, other))
            elif edge < 0:
                out.append(landscape.format(f"{prefix}{secret}{suffix}.jpg", -edge, -edge))
            elif p.allow_original and p.originalsecret:
                url = f"{prefix}{p.originalsecret}_o.{p.originalformat}"
                out.append(landscape.format(url, h, w))


# (URL suffix, long edge, own-secret salt or 0, JSON template landscape, template portrait)
_SizeSpec = tuple[str, int, int, str, str]


def _size_spec(universe: Universe, key: str, suffix: str, edge: int) -> _SizeSpec:
    """A size's JSON templates (args: url, height, width) for landscape and portrait photos,
    quoting each number the way ``_dims`` types it."""

    def template(w_str: bool, h_str: bool) -> str:
        hq, wq = ('"' if h_str else ""), ('"' if w_str else "")
        return f',"url_{key}":"{{}}","height_{key}":{hq}{{}}{hq},"width_{key}":{wq}{{}}{wq}'

    salt = universe.size_salt(key) if key in OWN_SECRET_SIZES else 0
    if key == "sq":
        both = template(False, False)
        return suffix, edge, salt, both, both
    if key in _STRING_LONG_EDGE:
        return suffix, edge, salt, template(True, False), template(False, True)
    both = template(True, True)
    return suffix, edge, salt, both, both


# ---------------------------------------------------------------------------- the app
class FlickrSim:
    """The simulator's logic, independent of the HTTP plumbing."""

    def __init__(
        self,
        universe: Universe,
        settings: Settings,
        fault_seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.u = universe
        self.settings = settings
        self.verbose = verbose
        self.stats = Stats()
        self.limiter = RateLimiter(settings.rate_limit)
        self.renderer = PhotoRenderer(universe)
        self.searches = SearchCache(self._run_query)
        self._fault_rng = random.Random(fault_seed)
        self._fault_lock = threading.Lock()
        self._control_lock = threading.Lock()

    # ---- API
    def api(self, params: dict[str, str]) -> Reply:
        started = time.perf_counter()
        method = params.get("method", "")
        reply = self._api(params, method)
        if self.verbose:
            shown = method if method in KNOWN_METHODS else "other"
            ms = (time.perf_counter() - started) * 1000
            print(f"flickr_sim: {shown} {reply.status} {ms:.1f}ms", file=sys.stderr, flush=True)
        return reply

    def _api(self, params: dict[str, str], method: str) -> Reply:
        fmt = params.get("format", "rest") or "rest"
        key = params.get("api_key", "")
        valid = key in self.settings.keys
        self.stats.call(method, key if valid else None)
        if not valid:
            msg = ERR_KEY_NOT_FOUND if _HEX32.fullmatch(key) else ERR_KEY_INVALID
            return self._fail(params, fmt, ApiError(100, msg))
        wait = self.limiter.take(key)
        if wait > 0:
            self.stats.bump("rate_limited")
            body = b'{"stat":"fail","code":429,"message":"Too Many Requests"}'
            return Reply(429, body, JSON_FAIL, {"Retry-After": str(max(1, math.ceil(wait)))})
        fault = self._pick_fault(method)
        if fault is not None:
            self.stats.bump("faults")
            early = self._early_fault(fault, params, fmt)
            if early is not None:
                return early
        reply = self._dispatch(params, fmt, method)
        if fault == "malformed":
            reply.body = reply.body[: len(reply.body) // 2]
        return reply

    def _pick_fault(self, method: str) -> str | None:
        s = self.settings
        if s.fault_rate <= 0 or not s.faults:
            return None
        if s.fault_methods and method not in s.fault_methods:
            return None
        with self._fault_lock:
            if self._fault_rng.random() >= s.fault_rate:
                return None
            return self._fault_rng.choice(s.faults)

    def _early_fault(self, fault: str, params: dict[str, str], fmt: str) -> Reply | None:
        if fault == "5xx":
            with self._fault_lock:
                status = self._fault_rng.choice((502, 503))
            title = "502 Bad Gateway" if status == 502 else "503 Service Unavailable"
            html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
            return Reply(status, html.encode(), "text/html; charset=utf-8")
        if fault == "105":
            return self._fail(params, fmt, ApiError(105, ERR_105))
        if fault == "201":
            return self._fail(params, fmt, ApiError(201, ERR_201))
        if fault == "slow":
            time.sleep(self.settings.slow_seconds)
        return None

    def _dispatch(self, params: dict[str, str], fmt: str, method: str) -> Reply:
        if fmt not in ("json", "rest"):
            return self._fail(params, "rest", ApiError(111, f'Format "{fmt}" not found'))
        try:
            if method == "flickr.photos.search":
                if fmt == "json":
                    return Reply(200, self._wrap(params, self.search_json(params)), JSON_OK)
                return self._ok(params, fmt, self.search(params))
            if method == "flickr.photos.licenses.getInfo":
                return self._ok(params, fmt, self.licenses_payload())
            raise ApiError(112, f'Method "{method}" not found')
        except ApiError as err:
            return self._fail(params, fmt, err)

    def licenses_payload(self) -> dict:
        rows = [{"id": str(r["id"]), "name": r["name"], "url": r["url"]} for r in self.u.licenses()]
        return {"licenses": {"license": rows}}

    def search_page(self, params: dict[str, str]) -> SearchPage:
        """One page of ``flickr.photos.search``, with the 4,000 cap and the total's quirks."""
        q = Query.from_params(params, self.u.new_license)
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

    def search(self, params: dict[str, str]) -> dict:
        """The search answer as a dict (the reference form; XML is written from it)."""
        sp = self.search_page(params)
        return {
            "photos": {
                "page": sp.page,
                "pages": sp.pages,
                "perpage": sp.perpage,
                "total": str(sp.total),
                "photo": [self.renderer.render(p, sp.extras) for p in sp.photos],
            }
        }

    def search_json(self, params: dict[str, str]) -> str:
        """The same answer written straight to Flickr-style JSON (the fast path)."""
        sp = self.search_page(params)
        render = self.renderer.render_json
        photos = ",".join([render(p, sp.extras) for p in sp.photos])
        return (
            f'{{"photos":{{"page":{sp.page},"pages":{sp.pages},"perpage":{sp.perpage},'
            f'"total":"{sp.total}","photo":[{photos}]}},"stat":"ok"}}'
        )

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
        for p in self.u.search(q.min_upload, q.max_upload, licenses, q.text, q.sort):
            photos.append(p)
            if len(photos) >= CAP:
                break
        if len(photos) < CAP:
            return Result(photos, len(photos))
        count = self.u.count(q.min_upload, q.max_upload, licenses, q.text)
        return Result(photos, max(count, CAP))

    # ---- encoding
    def _ok(self, params: dict[str, str], fmt: str, payload: dict) -> Reply:
        if fmt == "rest":
            return Reply(200, xml_ok(payload), XML_TYPE)
        return Reply(200, self._wrap(params, flickr_json({**payload, "stat": "ok"})), JSON_OK)

    def _fail(self, params: dict[str, str], fmt: str, err: ApiError) -> Reply:
        if fmt != "json":
            return Reply(200, xml_fail(err), XML_TYPE)
        body = flickr_json({"stat": "fail", "code": err.code, "message": err.message})
        return Reply(200, self._wrap(params, body), JSON_FAIL)

    @staticmethod
    def _wrap(params: dict[str, str], body: str) -> bytes:
        if params.get("nojsoncallback") == "1":
            return body.encode("ascii")
        callback = params.get("jsoncallback", "")
        name = callback if _CALLBACK.fullmatch(callback) else "jsonFlickrApi"
        return f"{name}({body})".encode("ascii")

    # ---- /_sim
    def sim_get(self, path: str, query: dict[str, str]) -> Reply:
        lo = parse_date(query.get("min_upload_date"))
        hi = parse_date(query.get("max_upload_date"))
        if path == "/_sim/truth":
            if lo is None or hi is None:  # the whole universe would take hours
                return plain_json(400, {"error": "min_upload_date and max_upload_date needed"})
            ids = self.u.truth(lo, hi)
            return plain_json(200, {"count": len(ids), "ids": ids})
        if path == "/_sim/hotspots":
            lo = self.u.start if lo is None else lo
            hi = self.u.end if hi is None else hi
            return plain_json(200, {"hotspots": self.u.hotspots(lo, hi)})
        if path == "/_sim/stats":
            return plain_json(200, self.stats.snapshot())
        if path == "/_sim/control":
            return plain_json(200, self.settings.public(self.u.new_license))
        if path == "/_sim/licenses":
            return plain_json(200, {"licenses": self.u.licenses()})
        return plain_json(404, {"error": "not found"})

    def control(self, body: bytes) -> Reply:
        try:
            changes = json.loads(body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("body must be a JSON object")
            with self._control_lock:
                self._apply(changes)
        except (ValueError, TypeError) as exc:
            return plain_json(400, {"error": str(exc)})
        return plain_json(200, self.settings.public(self.u.new_license))

    def _apply(self, changes: dict) -> None:
        unknown = set(changes) - {
            "fault_rate",
            "faults",
            "fault_methods",
            "new_license",
            "rate_limit",
            "slow_seconds",
        }
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        s = self.settings
        fault_rate = float(changes.get("fault_rate", s.fault_rate))
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be in [0, 1]")
        faults = changes.get("faults", list(s.faults))
        faults = parse_faults(faults if isinstance(faults, str) else ",".join(faults))
        rate_limit = int(changes.get("rate_limit", s.rate_limit))
        slow = float(changes.get("slow_seconds", s.slow_seconds))
        if rate_limit < 0 or slow < 0:
            raise ValueError("rate_limit and slow_seconds must be >= 0")
        s.fault_rate, s.faults, s.slow_seconds = fault_rate, faults, slow
        if "fault_methods" in changes:
            s.fault_methods = tuple(str(m) for m in changes["fault_methods"])
        if rate_limit != s.rate_limit:
            s.rate_limit = rate_limit
            self.limiter = RateLimiter(rate_limit)
        if "new_license" in changes:
            self.u.new_license = bool(changes["new_license"])


def plain_json(status: int, obj: object) -> Reply:
    return Reply(status, json.dumps(obj, separators=(",", ":")).encode(), JSON_OK)


def parse_faults(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown fault kinds {bad}; choose from {', '.join(FAULT_KINDS)}")
    return kinds


# ---------------------------------------------------------------------------- XML (format=rest)
def _xml_attrs(d: dict) -> str:
    return "".join(
        f" {k}={quoteattr(str(v))}"
        for k, v in d.items()
        if not isinstance(v, dict) and v is not None
    )


def xml_ok(payload: dict) -> bytes:
    head = '<?xml version="1.0" encoding="utf-8" ?>\n<rsp stat="ok">\n'
    if "licenses" in payload:
        rows = "".join(f"\t<license{_xml_attrs(r)} />\n" for r in payload["licenses"]["license"])
        inner = f"<licenses>\n{rows}</licenses>\n"
    else:
        photos = payload["photos"]
        attrs = _xml_attrs({k: v for k, v in photos.items() if k != "photo"})
        rows = "".join(_xml_photo(p) for p in photos["photo"])
        inner = f"<photos{attrs}>\n{rows}</photos>\n"
    return (head + inner + "</rsp>\n").encode()


def _xml_photo(p: dict) -> str:
    desc = p.get("description")
    if desc is None:
        return f"\t<photo{_xml_attrs(p)} />\n"
    text = desc["_content"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"\t<photo{_xml_attrs(p)}>\n\t\t<description>{text}</description>\n\t</photo>\n"


def xml_fail(err: ApiError) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8" ?>\n<rsp stat="fail">\n'
        f"\t<err code={quoteattr(str(err.code))} msg={quoteattr(err.message)} />\n</rsp>\n"
    ).encode()


# ---------------------------------------------------------------------------- HTTP
class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: FlickrSim) -> None:
        super().__init__(address, SimHandler)
        self.app = app


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "flickr_sim"
    sys_version = ""
    server: SimServer

    def log_message(self, format: str, *args: object) -> None:
        """No access log: request lines can carry API keys."""

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = parse_int(self.headers.get("Content-Length"), 0)
        self._handle(self.rfile.read(length) if length > 0 else b"")

    def _handle(self, body: bytes) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        query = _flat(parse_qs(url.query, keep_blank_values=True))
        try:
            if url.path in ("/services/rest/", "/services/rest"):
                if self.command == "POST" and body:
                    query.update(
                        _flat(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
                    )
                reply = app.api(query)
            elif url.path == "/_sim/control" and self.command == "POST":
                reply = app.control(body)
            elif url.path.startswith("/_sim/"):
                reply = app.sim_get(url.path, query)
            else:
                reply = Reply(404, b"Not Found", "text/plain; charset=utf-8")
        except Exception as exc:  # keep serving; report the bug as a 500
            reply = Reply(500, f"internal error: {type(exc).__name__}".encode(), "text/plain")
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _flat(parsed: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[-1] for k, v in parsed.items()}


# ---------------------------------------------------------------------------- CLI
def _day(text: str) -> int:
    value = parse_date(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD) or unix time: {text!r}")
    return value


def _fault_list(text: str) -> tuple[str, ...]:
    try:
        return parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("--fault-rate must be in [0, 1]")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lab.sims.flickr.server", description=__doc__.split("\n")[0]
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=_day, default=DEFAULT_START, help="YYYY-MM-DD (UTC)")
    p.add_argument(
        "--end",
        type=_day,
        default=None,
        help="YYYY-MM-DD: the universe ends at 00:00:00 UTC that day (default today)",
    )
    p.add_argument("--density", type=float, default=40.0, help="mean photos per 10 minutes")
    p.add_argument("--hot-window-every", type=int, default=2016, help="buckets; 0 = none")
    p.add_argument("--hot-second-every", type=int, default=20160, help="buckets; 0 = none")
    p.add_argument("--originals-disallowed-fraction", type=float, default=0.25)
    p.add_argument("--new-license", action="store_true", help="add license 17 (CC BY 5.0)")
    p.add_argument("--image-base", default="https://live.staticflickr.com")
    p.add_argument("--keys", default=DEFAULT_KEY, help="accepted API keys, comma-separated")
    p.add_argument("--rate-limit", type=int, default=3600, help="calls/hour/key; 0 = unlimited")
    p.add_argument("--fault-rate", type=_rate, default=0.0)
    p.add_argument(
        "--faults",
        type=_fault_list,
        default=FAULT_KINDS,
        help="comma list of " + ",".join(FAULT_KINDS),
    )
    p.add_argument("--slow-seconds", type=float, default=5.0)
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument(
        "--verbose",
        action="store_true",
        help="log method, status and duration of each API call to stderr",
    )
    return p


def make_app(args: argparse.Namespace) -> FlickrSim:
    universe = Universe(
        seed=args.seed,
        start=args.start,
        end=today_midnight_utc() if args.end is None else args.end,
        density=args.density,
        hot_window_every=args.hot_window_every,
        hot_second_every=args.hot_second_every,
        originals_disallowed_fraction=args.originals_disallowed_fraction,
        new_license=args.new_license,
        image_base=args.image_base,
    )
    keys = frozenset(k.strip() for k in args.keys.split(",") if k.strip())
    settings = Settings(
        keys=keys,
        rate_limit=max(0, args.rate_limit),
        fault_rate=args.fault_rate,
        faults=tuple(args.faults),
        slow_seconds=args.slow_seconds,
    )
    return FlickrSim(universe, settings, fault_seed=args.fault_seed, verbose=args.verbose)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    server = SimServer((args.host, args.port), make_app(args))
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="flickr_sim", daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]
    print(f"flickr_sim listening on http://{host}:{port}/services/rest/", flush=True)
    while not stop.wait(0.2):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
