"""Variable difficulty per miner: aim for one share every `target_interval_s`.

Pure: fed share times, asked for a new difficulty. A retarget happens at most every
`retarget_every_s`, moves at most 4x per step (so one lucky burst cannot swing it) and not at all
while the observed interval is inside the variance band, which is what stops it oscillating.
"""

from dataclasses import dataclass, field

_MAX_STEP = 4.0


@dataclass
class Vardiff:
    difficulty: float
    minimum: float
    maximum: float
    target_interval_s: float
    retarget_every_s: float
    variance: float
    window_start: float = 0.0
    shares: int = field(default=0)
    fixed: bool = False
    """Set when the miner asked for a fixed difficulty (`d=` in the password)."""

    def start(self, now: float) -> None:
        self.window_start = now
        self.shares = 0

    def clamp(self, difficulty: float) -> float:
        return min(max(difficulty, self.minimum), self.maximum)

    def record_share(self, now: float) -> float | None:
        """Count an accepted share; returns a new difficulty when one is due."""
        self.shares += 1
        return self.maybe_retarget(now)

    def maybe_retarget(self, now: float) -> float | None:
        if self.fixed:
            return None
        elapsed = now - self.window_start
        if elapsed < self.retarget_every_s:
            return None
        if self.shares == 0:
            # Nothing found in a whole window: the difficulty is too high by at least this much.
            ratio = 1.0 / _MAX_STEP
        else:
            observed = elapsed / self.shares
            ratio = self.target_interval_s / observed
            if abs(1.0 - observed / self.target_interval_s) <= self.variance:
                self.start(now)
                return None
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
