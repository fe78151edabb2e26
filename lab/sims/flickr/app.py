"""The Flickr simulator's logic, independent of the HTTP plumbing (`lab.sims.flickr.server`):
API keys, OAuth 1.0a signatures (`lab.sims.flickr.oauth`: a signed call sees the safety
levels its ``safe_search`` asks for, an unsigned one safe photos only), the rate limit and
injected faults before each call, the methods
(``flickr.photos.search``, ``flickr.photos.licenses.getInfo``, ``flickr.photos.getInfo``),
and the ``/_sim/`` pages: ground truth, hot spots, stats and run-time control (settings, and
photos deleted, made private or relabelled: `lab.sims.flickr.changes`)."""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time

from lab.sims.flickr.changes import parse_changes
from lab.sims.flickr.control import KNOWN_METHODS, RateLimiter, Settings, Stats
from lab.sims.flickr.faults import FaultInjector, parse_faults
from lab.sims.flickr.info import photo_info
from lab.sims.flickr.oauth import Credentials, HttpRequest, OAuthDesk, Signed
from lab.sims.flickr.render import PhotoRenderer
from lab.sims.flickr.search import Searcher
from lab.sims.flickr.universe import RESTRICTED, SAFE, Universe
from lab.sims.flickr.wire import (
    JSON_FAIL,
    JSON_OK,
    ApiError,
    Reply,
    fail_reply,
    ok_reply,
    parse_date,
    parse_int,
    plain_json,
    wrap_json,
)

ERR_KEY_INVALID = "Invalid API Key (Key has invalid format)"
ERR_KEY_NOT_FOUND = "Invalid API Key (Key not found)"
_HEX32 = re.compile(r"[0-9a-f]{32}")


class FlickrSim:
    """The simulator's logic, independent of the HTTP plumbing."""

    def __init__(
        self,
        universe: Universe,
        settings: Settings,
        fault_seed: int = 0,
        verbose: bool = False,
        credentials: Credentials | None = None,
    ) -> None:
        self.u = universe
        self.settings = settings
        self.verbose = verbose
        self.stats = Stats()
        self.limiter = RateLimiter(settings.rate_limit)
        self.renderer = PhotoRenderer(universe)
        self.searcher = Searcher(universe)
        self.faults = FaultInjector(fault_seed)
        self._control_lock = threading.Lock()
        self.oauth = OAuthDesk(credentials or Credentials())

    def api(self, params: dict[str, str], request: HttpRequest | None = None) -> Reply:
        """One REST call; `request` (method, URL, headers, body) is what a signature covers."""
        started = time.perf_counter()
        method = params.get("method", "")
        reply = self._api(params, method, request)
        if self.verbose:
            shown = method if method in KNOWN_METHODS else "other"
            ms = (time.perf_counter() - started) * 1000
            print(f"flickr_sim: {shown} {reply.status} {ms:.1f}ms", file=sys.stderr, flush=True)
        return reply

    def _api(self, params: dict[str, str], method: str, request: HttpRequest | None) -> Reply:
        fmt = params.get("format", "rest") or "rest"
        try:
            signed = self.oauth.check_call(request) if request is not None else None
        except ApiError as err:
            self.stats.bump("bad_signatures")
            return fail_reply(params, fmt, err)
        key = signed.consumer_key if signed else params.get("api_key", "")
        valid = key in self.settings.keys or key in self.oauth.credentials.secrets
        self.stats.call(method, key if valid else None)
        if not valid:
            msg = ERR_KEY_NOT_FOUND if _HEX32.fullmatch(key) else ERR_KEY_INVALID
            return fail_reply(params, fmt, ApiError(100, msg))
        wait = self.limiter.take(key)
        if wait > 0:
            self.stats.bump("rate_limited")
            body = b'{"stat":"fail","code":429,"message":"Too Many Requests"}'
            return Reply(429, body, JSON_FAIL, {"Retry-After": str(max(1, math.ceil(wait)))})
        fault = self.faults.pick(self.settings, method)
        if fault is not None:
            self.stats.bump("faults")
            early = self.faults.early(fault, params, fmt, self.settings.slow_seconds)
            if early is not None:
                return early
        reply = self._dispatch(params, fmt, method, visible_safety(params, signed))
        if fault == "malformed":
            reply.body = reply.body[: len(reply.body) // 2]
        return reply

    def _dispatch(self, params: dict[str, str], fmt: str, method: str, safety: int) -> Reply:
        if fmt not in ("json", "rest"):
            return fail_reply(params, "rest", ApiError(111, f'Format "{fmt}" not found'))
        try:
            if method == "flickr.photos.search":
                if fmt == "json":
                    body = self.search_json(params, safety)
                    return Reply(200, wrap_json(params, body), JSON_OK)
                return ok_reply(params, fmt, self.search(params, safety))
            if method == "flickr.photos.licenses.getInfo":
                return ok_reply(params, fmt, self.licenses_payload())
            if method == "flickr.photos.getInfo":
                return ok_reply(params, fmt, photo_info(self.u, params))
            raise ApiError(112, f'Method "{method}" not found')
        except ApiError as err:
            return fail_reply(params, fmt, err)

    def licenses_payload(self) -> dict:
        rows = [{"id": str(r["id"]), "name": r["name"], "url": r["url"]} for r in self.u.licenses()]
        return {"licenses": {"license": rows}}

    def search(self, params: dict[str, str], safety: int = RESTRICTED) -> dict:
        """The search answer as a dict (the reference form; XML is written from it)."""
        sp = self.searcher.search_page(params, safety)
        return {
            "photos": {
                "page": sp.page,
                "pages": sp.pages,
                "perpage": sp.perpage,
                "total": str(sp.total),
                "photo": [self.renderer.render(p, sp.extras) for p in sp.photos],
            }
        }

    def search_json(self, params: dict[str, str], safety: int = RESTRICTED) -> str:
        """The same answer written straight to Flickr-style JSON (the fast path)."""
        sp = self.searcher.search_page(params, safety)
        render = self.renderer.render_json
        photos = ",".join([render(p, sp.extras) for p in sp.photos])
        return (
            f'{{"photos":{{"page":{sp.page},"pages":{sp.pages},"perpage":{sp.perpage},'
            f'"total":"{sp.total}","photo":[{photos}]}},"stat":"ok"}}'
        )

    def sim_get(self, path: str, query: dict[str, str]) -> Reply:
        lo = parse_date(query.get("min_upload_date"))
        hi = parse_date(query.get("max_upload_date"))
        if path == "/_sim/truth":
            if lo is None or hi is None:  # the whole universe would take hours
                return plain_json(400, {"error": "min_upload_date and max_upload_date needed"})
            # ?safe_search=1: the CC photos an unsigned harvest can see (default: all of them)
            ids = self.u.truth(lo, hi, visible_level(query.get("safe_search"), RESTRICTED))
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

    def oauth_endpoint(self, path: str, query: dict[str, str], request: HttpRequest) -> Reply:
        """Flickr's token flow: /services/oauth/request_token, authorize, access_token."""
        step = path.rstrip("/").rsplit("/", 1)[-1]
        if step == "request_token":
            return self.oauth.request_token(request)
        if step == "authorize":
            return self.oauth.authorize(query)
        if step == "access_token":
            return self.oauth.access_token(request)
        return Reply(404, b"Not Found", "text/plain; charset=utf-8")

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

    def change_photos(self, body: bytes) -> Reply:
        """``POST /_sim/photos``: delete photos, make them private or public, relabel them."""
        try:
            known = {int(row["id"]) for row in self.u.licenses()}
            changes = parse_changes(json.loads(body or b"{}"), known)
            missing = [i for i in changes if self.u.photo(i) is None]
            if missing:
                raise ValueError(f"no such photo: {missing[:5]}")
        except ValueError as exc:  # json's errors are ValueErrors too
            return plain_json(400, {"error": str(exc)})
        for photo_id, what in changes.items():
            self.u.changes.set(photo_id, what)
        return plain_json(200, {"changed": len(changes)})

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


def visible_level(raw: str | None, default: int) -> int:
    level = parse_int(raw, default)
    return level if SAFE <= level <= RESTRICTED else default


def visible_safety(params: dict[str, str], signed: Signed | None) -> int:
    """The highest safety level a call sees. Unsigned: safe only, whatever it asks ("Un-authed
    calls can only see Safe content", Flickr's safe_search docs). Signed: what `safe_search`
    asks; without it Flickr applies the user's own SafeSearch preference, which for the
    simulator's user is Flickr's default, safe only."""
    if signed is None:
        return SAFE
    return visible_level(params.get("safe_search"), SAFE)
