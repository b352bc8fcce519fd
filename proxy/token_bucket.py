"""A token bucket, fed the time: `rate` tokens a second, at most `burst` saved up. Miners' message
rate and connect rate (proxy.admission, proxy.server) and the coordinator's shares to one upstream
session (proxy.coordinator.throttle) are all limited with it."""


class TokenBucket:
    __slots__ = ("_at", "burst", "rate", "tokens")  # one per miner

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self._at = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take `cost` tokens if there are that many; False, taking none, if not."""
        self._refill(now)
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def wait_s(self, now: float) -> float:
        """Seconds until a token is there (0 when one is)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        """Whether the allowance is whole again: such a bucket can be forgotten."""
        return self.tokens + (now - self._at) * self.rate >= self.burst
