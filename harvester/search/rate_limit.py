"""A token bucket per API key: Flickr allows 3,600 calls an hour per key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`acquire()` blocks until a call is allowed; a rate of 0 means no limit.

    The bucket holds at most a minute's worth of calls, so a worker that was idle cannot
    burst past what Flickr tolerates.
    """

    def __init__(
        self,
        per_hour: float,
        stop: threading.Event | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.rate = per_hour / 3600.0
        self.capacity = max(1.0, per_hour / 60.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.stop = stop or threading.Event()
        self.lock = threading.Lock()
        self.on_wait = on_wait  # told the seconds of each wait (the budget's cost in time)

    def acquire(self) -> bool:
        """Take one token, waiting as needed; False when the stop event ended the wait."""
        if self.rate <= 0:
            return True
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return True
                wait = (1.0 - self.tokens) / self.rate
            started = time.monotonic()
            stopped = self.stop.wait(wait)
            if self.on_wait is not None:
                self.on_wait(time.monotonic() - started)
            if stopped:
                return False
