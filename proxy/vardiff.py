"""Variable difficulty per miner: aim for one share every `target_interval_s`.

Pure: fed share times, asked for a new difficulty. Shares are a Poisson process, so a window of
three shares says little: a retarget happens only when the observed interval is outside both the
variance band and the window's own noise (2/√shares), otherwise the window keeps growing and the
estimate sharpens. Steps are capped at 4x. Together that is what stops it oscillating.
"""

import math
from dataclasses import dataclass, field

_MAX_STEP = 4.0
_EMPTY_INTERVALS = 6
"""With no share at all, wait this many target intervals (a 0.25 % chance at the right difficulty)."""
_CONFIDENT_SHARES = 16
_BURST_SHARES = 64
_MAX_WINDOWS = 16
"""A window that never called for a retarget restarts after this many retarget periods."""
_FLOOD_SHARES = 8
"""Shares before a rate above `max_share_rate` is believed (8 in a burst is no accident)."""
_MIN_ELAPSED_S = 0.001
_BURST_WINDOW_S = 5.0
"""The share rate watched for flooding is that of the last few seconds."""


@dataclass(slots=True)
class Vardiff:
    difficulty: float
    minimum: float
    maximum: float
    target_interval_s: float
    retarget_every_s: float
    variance: float
    window_start: float = 0.0
    shares: float = field(default=0)
    """Shares in the window, in shares of the current difficulty: one found at an older, lower
    difficulty (a job the miner had before a change) counts for that much less."""
    fixed: bool = False
    """Set when the miner asked for a fixed difficulty (`d=` in the password)."""
    max_share_rate: float = math.inf
    """Shares per second no miner may be asked for: past it a miner runs into the message-rate
    limit and is disconnected. Caps a pinned difficulty too."""
    _burst_from: float | None = None
    _burst_shares: float = 0.0
    """The share rate watched for flooding: shares (weighted as `shares`) since `_burst_from`, the
    time of the first of them — not the window's start, which may be long before a first share."""

    def start(self, now: float) -> None:
        self.window_start = now
        self.shares = 0

    def clamp(self, difficulty: float) -> float:
        return min(max(difficulty, self.minimum), self.maximum)

    def record_share(self, now: float, difficulty: float | None = None) -> float | None:
        """Count an accepted share (found at `difficulty`, default the current one); returns a new
        difficulty when one is due."""
        self.count(now, difficulty)
        return self.maybe_retarget(now)

    def count(self, now: float, difficulty: float | None = None) -> None:
        weight = 1.0 if difficulty is None else difficulty / self.difficulty
        self.shares += weight
        if self._burst_from is None or now - self._burst_from > _BURST_WINDOW_S:
            self._burst_from, self._burst_shares = now, 0.0
        self._burst_shares += weight

    def pin(self, difficulty: float) -> float:
        """A fixed difficulty the miner asked for, within [minimum, maximum]; what it got."""
        self.difficulty = self.clamp(difficulty)
        self.fixed = True
        return self.difficulty

    def flooding(self, now: float) -> float | None:
        """The difficulty that brings a miner sending shares faster than `max_share_rate` back to
        half of it — at once and past the usual 4x step, since the message-rate limit will not wait.
        None while the rate is fine."""
        if self._burst_shares < _FLOOD_SHARES or self._burst_from is None:
            return None
        # n shares from the first: n - 1 intervals.
        rate = (self._burst_shares - 1) / max(now - self._burst_from, _MIN_ELAPSED_S)
        if rate <= self.max_share_rate:
            return None
        new = min(self.difficulty * rate / (self.max_share_rate / 2), self.maximum)
        self.start(now)
        self._burst_from = None
        if new <= self.difficulty:
            return None
        self.difficulty = new
        return new

    def maybe_retarget(self, now: float) -> float | None:
        flood = self.flooding(now)
        if flood is not None or self.fixed:
            return flood
        elapsed = now - self.window_start
        # A flood of shares is evidence enough without waiting out the period (a fast miner
        # that starts far too easy would otherwise take minutes to climb 4x per period).
        if elapsed < self.retarget_every_s and self.shares < _BURST_SHARES:
            return None
        if self.shares == 0:
            if elapsed < _EMPTY_INTERVALS * self.target_interval_s:
                return None
            ratio = self.target_interval_s / elapsed
        else:
            observed = elapsed / self.shares
            deviation = abs(observed / self.target_interval_s - 1.0)
            if deviation <= max(self.variance, 2.0 / math.sqrt(self.shares)):
                if elapsed >= _MAX_WINDOWS * self.retarget_every_s:
                    self.start(now)
                return None
            ratio = self.target_interval_s / observed
            if self.shares < _CONFIDENT_SHARES:
                # Few shares: the estimate is rough, so go half way (in log terms) and look again.
                ratio = math.sqrt(ratio)
        ratio = min(max(ratio, 1.0 / _MAX_STEP), _MAX_STEP)
        new = self.clamp(self.difficulty * ratio)
        self.start(now)
        if new == self.difficulty:
            return None
        self.difficulty = new
        return new

    def suggest(self, difficulty: float, now: float) -> float:
        """A miner's `mining.suggest_difficulty`: honoured within bounds, then vardiff goes on."""
        self.difficulty = self.clamp(difficulty)
        self.start(now)
        return self.difficulty
