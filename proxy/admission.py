"""Who may connect: connection caps (total and per IP), temporary bans, and how fast one IP may
open new connections. Pure bookkeeping, fed the time; kept by whichever process accepts miners —
the single proxy's server, or the supervisor of several workers, so the limits hold across all.
"""

from collections import Counter

from proxy.config import LimitsConfig
from proxy.token_bucket import TokenBucket

_MAX_RATE_ENTRIES = 100_000
"""IPs whose connect rate is remembered; beyond this, those whose allowance is full again go."""


class BanPolicy:
    """Which IPs to ban for invalid shares: judged over their recent shares (counts halve as they
    grow, so old behaviour fades), once `ban_min_shares` are in. Pure: fed shares, answers."""

    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self._counts: dict[str, list[int]] = {}  # ip -> [valid, invalid]

    def share(self, ip: str, valid: bool) -> bool:
        """Count one share of `ip`'s; True when that makes the IP one to ban now."""
        counts = self._counts.setdefault(ip, [0, 0])
        counts[0 if valid else 1] += 1
        total = counts[0] + counts[1]
        if total < self.limits.ban_min_shares:
            return False
        ban = counts[1] / total >= self.limits.ban_invalid_ratio
        # Judge recent behaviour, not a miner's whole history.
        if total >= 4 * self.limits.ban_min_shares:
            counts[0] //= 2
            counts[1] //= 2
        return ban

    def forget(self, ip: str) -> None:
        self._counts.pop(ip, None)


class Admission:
    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self.per_ip: Counter[str] = Counter()
        self.banned: dict[str, float] = {}
        self.operator_banned: frozenset[str] = frozenset()
        """IPs the operator banned (proxy.bans), until lifted."""
        self._connects: dict[str, TokenBucket] = {}

    @property
    def connections(self) -> int:
        return self.per_ip.total()

    def refusal(self, ip: str, now: float) -> str | None:
        """Why a new connection from `ip` is refused now, or None (then it counts as one attempt)."""
        if ip in self.operator_banned:
            return "IP banned by the pool operator"
        if self.is_banned(ip, now):
            return "IP temporarily banned for invalid shares"
        if self.connections >= self.limits.max_connections:
            return "proxy full: connection limit reached"
        if self.per_ip[ip] >= self.limits.max_connections_per_ip:
            return "too many connections from this IP"
        bucket = self._connects.get(ip)
        if bucket is None:
            if len(self._connects) >= _MAX_RATE_ENTRIES:
                self._forget_rested(now)
            bucket = self._connects[ip] = TokenBucket(self.limits.connects_per_ip_per_s,
                                                      self.limits.connect_burst_per_ip, now)
        if not bucket.take(now):
            return "connecting too often from this IP"
        return None

    def _forget_rested(self, now: float) -> None:
        for ip in [ip for ip, bucket in self._connects.items() if bucket.full(now)]:
            del self._connects[ip]

    def is_banned(self, ip: str, now: float) -> bool:
        until = self.banned.get(ip)
        if until is None:
            return False
        if until > now:
            return True
        del self.banned[ip]
        return False

    def ban(self, ip: str, seconds: float, now: float) -> None:
        self.banned[ip] = now + seconds

    def admitted(self, ip: str) -> None:
        self.per_ip[ip] += 1

    def released(self, ip: str, count: int = 1) -> None:
        left = self.per_ip[ip] - count
        if left > 0:
            self.per_ip[ip] = left
        else:
            del self.per_ip[ip]
