"""Per-client rate limit: an in-memory token bucket per client IP (per process; behind a proxy see
`bpd-rag serve --forwarded-allow-ips`)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

_MAX_CLIENTS = 10_000  # buckets kept before full (idle) ones are dropped


class TokenBucketLimiter:
    """Allows `per_minute` requests per key in a burst, refilled continuously at per_minute / 60 per second."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated_at)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def acquire(self, key: str) -> float:
        """Take a token for the key: 0.0 when allowed, else the seconds to wait before the next one."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, updated = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - updated) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                self._prune(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        if len(self._buckets) <= _MAX_CLIENTS:
            return
        full_after = self.capacity / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}


def retry_after_header(wait_s: float) -> str:
    """Whole seconds for the Retry-After header (at least 1)."""
    return str(max(1, math.ceil(wait_s)))
