"""The payout schemes as pure functions over integers (a coin's smallest units, e.g. litoshis).

Every scheme answers a `Split`: what each account is credited, the operator's fee, and the
remainder that rounding down leaves with the pool; the three always add up to what was earned, so
no scheme can pay out more than came in. Exact arithmetic throughout (`Fraction`): floats are read
exactly as the binary numbers they are and rounding happens once, at the end, downwards.

- PPS: a share of share difficulty d found at network difficulty D earns
  reward × d ÷ (D × 65536) × (1 − fee): a scrypt share of difficulty d takes about d·2^16 hashes,
  a block about D·2^32.
- FPPS: PPS with reward = subsidy + the recent average of transaction fees (coinbase value − subsidy).
- PPLNS: a block's reward less the fee is split pro rata over the last shares before it whose
  difficulties add up to factor × D × 65536 (the share that crosses the boundary counts in part).
- SOLO: the finder takes the reward less the fee.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from math import floor

SHARE_DIFF1_HASHES = 65536
"""A block at network difficulty D takes D·2^32 hashes, a share of difficulty d about d·2^16:
the ratio of the two conventions (DESIGN.md, "Facts the code must get right")."""
DEFAULT_PPLNS_FACTOR = 2
SCHEMES = ("pps", "fpps", "pplns", "solo")


@dataclass(frozen=True, slots=True)
class Share:
    """One accepted share: who earned it, its share difficulty, and the network difficulty (and,
    for PPS, the block subsidy in smallest units) at the time it was found."""

    account: str
    difficulty: float
    network_difficulty: float = 0.0
    reward: int = 0


@dataclass(frozen=True, slots=True)
class Split:
    """How `total` smallest units were shared out: `credits + fee + remainder == total`."""

    total: int
    credits: Mapping[str, int] = field(default_factory=dict)
    fee: int = 0
    remainder: int = 0

    def __post_init__(self) -> None:
        paid = sum(self.credits.values())
        negative = min(self.fee, self.remainder, *self.credits.values(), 0) < 0
        if negative or paid + self.fee + self.remainder != self.total:
            raise ValueError(f"split does not add up: {paid} + {self.fee} + {self.remainder} != {self.total}")


def fee_fraction(fee_percent: Decimal | int | str | float) -> Fraction:
    """A fee in percent (0..100) as an exact fraction; a float is read as the decimal it prints as."""
    fraction = Fraction(Decimal(str(fee_percent))) / 100
    if not 0 <= fraction <= 1:
        raise ValueError(f"fee must be 0..100 percent, got {fee_percent}")
    return fraction


def _exact(value: float) -> Fraction:
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"difficulties must be positive and finite, got {value}")
    return Fraction(value)


def share_value(reward: int, difficulty: float, network_difficulty: float) -> Fraction:
    """The expected value of one share in smallest units, before the fee: reward × d ÷ (D × 65536)."""
    return reward * _exact(difficulty) / (_exact(network_difficulty) * SHARE_DIFF1_HASHES)


def _split(gross: Mapping[str, Fraction], total: int, fee: Fraction) -> Split:
    """Share `total` out in proportion to `gross` (exact per-account weights summing to at most
    `total`): the fee first, then each account's part of what is left, rounded down."""
    if total <= 0 or not gross:
        return Split(max(total, 0), {}, 0, max(total, 0))
    weight = sum(gross.values(), Fraction(0))
    fee_units = floor(total * fee)
    credits = {}
    for account in sorted(gross):
        units = floor(gross[account] / weight * total * (1 - fee)) if weight else 0
        if units > 0:
            credits[account] = units
    return Split(total, credits, fee_units, total - fee_units - sum(credits.values()))


def pps(shares: Iterable[Share], fee: Fraction) -> Split:
    """Pay-per-share: every share its expected value at its own network difficulty and reward.
    `total` is the sum of those values rounded down, what the pool owes for the period."""
    gross: dict[str, Fraction] = {}
    for s in shares:
        gross[s.account] = gross.get(s.account, Fraction(0)) + share_value(
            s.reward, s.difficulty, s.network_difficulty
        )
    exact_total = sum(gross.values(), Fraction(0))
    total = floor(exact_total)
    fee_units = floor(exact_total * fee)
    credits = {a: units for a in sorted(gross) if (units := floor(gross[a] * (1 - fee))) > 0}
    return Split(total, credits, fee_units, total - fee_units - sum(credits.values()))


def average_tx_fees(coinbase_values: Sequence[int], subsidies: Sequence[int]) -> int:
    """The recent average of transaction fees per block (coinbase value − subsidy), rounded down;
    0 with no blocks to average. Negative differences (a block that claimed less) count as 0."""
    if len(coinbase_values) != len(subsidies):
        raise ValueError("one subsidy per coinbase value")
    if not coinbase_values:
        return 0
    return sum(max(0, v - s) for v, s in zip(coinbase_values, subsidies, strict=True)) // len(coinbase_values)


def fpps(shares: Iterable[Share], tx_fees: int, fee: Fraction) -> Split:
    """Full pay-per-share: PPS on subsidy + `tx_fees` (from `average_tx_fees`)."""
    if tx_fees < 0:
        raise ValueError("tx_fees must be >= 0")
    return pps(
        (Share(s.account, s.difficulty, s.network_difficulty, s.reward + tx_fees) for s in shares), fee
    )


def pplns_window(
    shares: Sequence[Share], network_difficulty: float, factor: float = DEFAULT_PPLNS_FACTOR
) -> dict[str, Fraction]:
    """Each account's share difficulty among the last shares of `shares` (oldest first) that add
    up to factor × D × 65536; the share that crosses the boundary counts only up to it."""
    wanted = Fraction(factor) * _exact(network_difficulty) * SHARE_DIFF1_HASHES
    if wanted <= 0:
        raise ValueError("factor must be positive")
    window: dict[str, Fraction] = {}
    counted = Fraction(0)
    for s in reversed(shares):
        if counted >= wanted:
            break
        part = min(_exact(s.difficulty), wanted - counted)
        window[s.account] = window.get(s.account, Fraction(0)) + part
        counted += part
    return window


def pplns(
    shares: Sequence[Share],
    reward: int,
    network_difficulty: float,
    fee: Fraction,
    factor: float = DEFAULT_PPLNS_FACTOR,
) -> Split:
    """A block's `reward` (or a pool payment) split over the PPLNS window that ends at it. With no
    shares in the window everything stays with the pool."""
    if reward < 0:
        raise ValueError("reward must be >= 0")
    return _split(pplns_window(shares, network_difficulty, factor), reward, fee)


def solo(finder: str, reward: int, fee: Fraction) -> Split:
    """The account whose share found the block takes the reward less the fee."""
    if reward < 0:
        raise ValueError("reward must be >= 0")
    fee_units = floor(reward * fee)
    return Split(reward, {finder: reward - fee_units} if reward - fee_units else {}, fee_units, 0)
