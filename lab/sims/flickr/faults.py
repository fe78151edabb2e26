"""Faults the Flickr simulator injects on request (``fault_rate`` of the calls, of the kinds
and API methods chosen): a 502/503 HTML page, Flickr's codes 105 and 201, JSON cut in half,
or a slow answer. Drawn from their own seeded generator, so a run can be repeated."""

from __future__ import annotations

import random
import threading
import time

from lab.sims.flickr.control import FAULT_KINDS, Settings
from lab.sims.flickr.wire import ApiError, Reply, fail_reply

ERR_105 = "Service currently unavailable"
ERR_201 = "Sorry, the Flickr API service is not currently available."


def parse_faults(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown fault kinds {bad}; choose from {', '.join(FAULT_KINDS)}")
    return kinds


class FaultInjector:
    """Which fault, if any, hits a call; the early ones answer in its place."""

    def __init__(self, seed: int = 0) -> None:
        self._fault_rng = random.Random(seed)
        self._fault_lock = threading.Lock()

    def pick(self, settings: Settings, method: str) -> str | None:
        s = settings
        if s.fault_rate <= 0 or not s.faults:
            return None
        if s.fault_methods and method not in s.fault_methods:
            return None
        with self._fault_lock:
            if self._fault_rng.random() >= s.fault_rate:
                return None
            return self._fault_rng.choice(s.faults)

    def early(
        self, fault: str, params: dict[str, str], fmt: str, slow_seconds: float
    ) -> Reply | None:
        """The answer a fault gives instead of the call's (None: the call goes on, after
        sleeping for "slow"; "malformed" cuts the call's own answer afterwards)."""
        if fault == "5xx":
            with self._fault_lock:
                status = self._fault_rng.choice((502, 503))
            title = "502 Bad Gateway" if status == 502 else "503 Service Unavailable"
            html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
            return Reply(status, html.encode(), "text/html; charset=utf-8")
        if fault == "105":
            return fail_reply(params, fmt, ApiError(105, ERR_105))
        if fault == "201":
            return fail_reply(params, fmt, ApiError(201, ERR_201))
        if fault == "slow":
            time.sleep(slow_seconds)
        return None
