"""The DigitalOcean simulator's API side, apart from HTTP: the tokens it accepts, its rate
limits (hourly and per minute, with DigitalOcean's headers), `links.pages` / `meta.total`
pagination, a parsed request, and the settings changed at run time (`DoSim`)."""

from __future__ import annotations

import collections
import hmac
import math
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from lab.sims.digitalocean.cloud import Cloud
from lab.sims.digitalocean.records import ApiError

DEFAULT_PER_PAGE = 20


@dataclass
class Limits:
    """Requests per token: DigitalOcean allows 5,000 an hour and 250 a minute. 0 lifts one."""

    per_hour: int = 5000
    per_minute: int = 250
    max_per_page: int = 200
    hour_seconds: float = 3600.0


@dataclass
class RateLimiter:
    limits: Limits
    seen: dict[str, collections.deque] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, token: str) -> tuple[bool, dict[str, str]]:
        """Count one request of `token` unless a budget is spent; (allowed, headers)."""
        now = time.time()
        with self.lock:
            times = self.seen.setdefault(token, collections.deque())
            window = self.limits.hour_seconds
            while times and times[0] <= now - window:
                times.popleft()
            in_minute = sum(1 for t in times if t > now - 60)
            hourly, burst = self.limits.per_hour, self.limits.per_minute
            allowed = not (hourly and len(times) >= hourly) and not (burst and in_minute >= burst)
            if allowed:
                times.append(now)
            if not hourly:
                return allowed, {}
            reset = times[0] + window if times else now + window
            return allowed, {
                "ratelimit-limit": str(hourly),
                "ratelimit-remaining": str(max(0, hourly - len(times))),
                "ratelimit-reset": str(int(reset)),
            }


def paginate(
    items: list[dict], key: str, query: dict[str, str], url: str, max_per_page: int
) -> dict:
    """One page of `items` as DigitalOcean pages lists: per_page is capped, `links.pages`
    holds absolute first/prev/next/last URLs (only those that apply), `meta.total` all."""
    per_page = min(max(int_param(query, "per_page", DEFAULT_PER_PAGE), 1), max_per_page)
    page = max(int_param(query, "page", 1), 1)
    last = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    others = {k: v for k, v in query.items() if k not in ("page", "per_page")}

    def link(number: int) -> str:
        return f"{url}?{urlencode({'page': number, 'per_page': per_page, **others})}"

    pages = {}
    if page > 1:
        pages["first"], pages["prev"] = link(1), link(min(page - 1, last))
    if page < last:
        pages["next"], pages["last"] = link(page + 1), link(last)
    return {key: chunk, "links": {"pages": pages} if pages else {}, "meta": {"total": len(items)}}


def int_param(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        return default


@dataclass
class Request:
    method: str
    path: str
    match: re.Match
    query: dict[str, str]
    body: dict
    base_url: str  # http://host:port/v2/

    def arg(self, index: int) -> str:
        return self.match.group(index)

    def page(self, sim: DoSim, items: list[dict], key: str) -> tuple[int, dict]:
        url = self.base_url + self.path.removeprefix("/v2/")
        return 200, paginate(items, key, self.query, url, sim.limits.max_per_page)


class DoSim:
    """The account, the limits and the tokens behind one server."""

    def __init__(
        self, cloud: Cloud, tokens: list[str], limits: Limits | None = None, verbose=False
    ) -> None:
        if not tokens or not all(tokens):
            raise ValueError("the simulator needs at least one non-empty token")
        self.cloud, self.tokens = cloud, tokens
        self.limits = limits or Limits()
        self.rate = RateLimiter(self.limits)
        self.verbose = verbose

    def authorized(self, header: str | None) -> str | None:
        """The token of a valid `Authorization: Bearer TOKEN`, else None."""
        if not header or not header.startswith("Bearer "):
            return None
        given = header.removeprefix("Bearer ").strip().encode()
        for token in self.tokens:
            if hmac.compare_digest(given, token.encode()):
                return token
        return None

    def control(self, body: dict) -> dict:
        """Settings changed at run time (a test shortens boot, lowers a limit...)."""
        settings, limits = self.cloud.settings, self.limits
        targets = {
            "boot_seconds": (settings, float),
            "action_seconds": (settings, float),
            "droplet_limit": (settings, int),
            "per_hour": (limits, int),
            "per_minute": (limits, int),
            "max_per_page": (limits, int),
            "hour_seconds": (limits, float),
        }
        unknown = sorted(set(body) - set(targets))
        if unknown:
            raise ApiError(422, "unprocessable_entity", f"unknown settings: {unknown}")
        try:
            values = {name: targets[name][1](value) for name, value in body.items()}
        except (TypeError, ValueError) as error:
            raise ApiError(422, "unprocessable_entity", str(error)) from None
        for name, value in values.items():
            setattr(targets[name][0], name, value)
        if body:
            self.rate.seen.clear()  # new limits start from a clean count
        return {"settings": {**vars(settings), **vars(limits)}}
