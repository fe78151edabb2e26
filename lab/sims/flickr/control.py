"""What the Flickr simulator's operator sets and sees at run time: the accepted API keys, the
per-key rate limit (a token bucket), the fault settings, and the call counters of
``/_sim/stats`` (keys shown by their first 4 characters only)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

DEFAULT_KEY = "lab-flickr-key"
FAULT_KINDS = ("5xx", "105", "201", "malformed", "slow")
KNOWN_METHODS = ("flickr.photos.search", "flickr.photos.licenses.getInfo", "flickr.photos.getInfo")


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
        self.bad_signatures = 0  # signed calls refused (96, 98, unknown consumer key)

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
                "bad_signatures": self.bad_signatures,
            }
