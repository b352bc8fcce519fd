"""Per-client token buckets: each IP may make `burst` requests at once and `rate` a second on
average; past that it gets a 429 with Retry-After."""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._swept_at = clock()

    def take(self, client: str) -> float:
        """Spend a token of `client`'s; 0 when allowed, else the seconds until one is back."""
        now = self._clock()
        self._sweep(now)
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _sweep(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: forget it, so one-off clients
        # (or a scan from many addresses) do not grow memory without bound.
        full_after = self.burst / self.rate
        if now - self._swept_at < full_after:
            return
        self._swept_at = now
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < full_after}


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; rounding down would invite a retry that is refused again."""
    return str(max(1, math.ceil(seconds)))
