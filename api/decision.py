"""The switching rule: given what a profile holds and its ranked options, stay or move. Pure.

Moving miners costs shares in flight and the pool's warm-up, and profitability figures are noisy,
so a profile moves only when the best option beats the current one by at least
`threshold_pct` AND the current one has been held at least `min_dwell_s`. Stale data never moves
anyone (the verdict says it is stale, so it cannot pass for fresh), a tie keeps the current
choice, and figures that cannot be compared (the current option has no price) keep it too. The
one move that ignores the dwell is away from a choice the profile no longer allows at all.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Choice:
    coin: str
    pool: str | None
    """None: solo mining on the coin's own daemon."""

    def __str__(self) -> str:
        return f"{self.coin} on {self.pool}" if self.pool is not None else f"{self.coin} solo"


@dataclass(frozen=True)
class Option:
    choice: Choice
    usd_per_day_net: float | None
    """None when the figures are unknown (no price for the coin mined)."""


@dataclass(frozen=True)
class Held:
    """The persisted current choice and when it was made (the dwell is counted from then)."""

    choice: Choice
    since: datetime


@dataclass(frozen=True)
class Rule:
    threshold_pct: float = 5.0
    min_dwell_s: float = 600.0
    max_data_age_s: float = 1800.0


@dataclass(frozen=True)
class Verdict:
    choice: Choice | None
    """What to mine now; None when nothing was ever chosen and nothing can be."""
    switch: bool
    """True when `choice` differs from what was held: persist it and tell the proxy."""
    since: datetime | None
    """When `choice` was made: now for a switch, else the held one's."""
    chosen: Option | None
    """`choice`'s option among those given (None when it is not among them)."""
    runner_up: Option | None
    """The best priced option other than `choice`."""
    margin_usd_per_day: float | None
    margin_pct: float | None
    """`choice` over the runner-up; negative while holding a worse choice."""
    gain_pct: float | None
    """For a switch, how much the new choice beats the old one by."""
    stale: bool
    data_age_s: float | None
    reason: str
    recheck_at: datetime | None
    """When the same options could yield another verdict (the dwell ending, the data going
    stale); None when only new options can change it. Re-deciding earlier is wasted work."""


def gain_pct(new: float, old: float) -> float:
    """How much `new` beats `old` by, relative to |old| (a loss shrinking counts as a gain)."""
    if old == 0:
        return math.inf if new > 0 else (-math.inf if new < 0 else 0.0)
    return (new - old) / abs(old) * 100.0


def decide(
    held: Held | None,
    options: Sequence[Option],
    *,
    data_as_of: datetime | None,
    now: datetime,
    rule: Rule,
    pin: Choice | None = None,
) -> Verdict:
    """Stay or move. `options` are what the profile's strategy allows, in any order. A `pin` (a
    `fixed` profile) is an instruction, not an estimate: it holds with or without market data, and
    a changed pin moves at once."""
    age = None if data_as_of is None else (now - data_as_of).total_seconds()
    stale_at = now if data_as_of is None else data_as_of + timedelta(seconds=rule.max_data_age_s)
    priced = sorted(
        (o for o in options if o.usd_per_day_net is not None), key=lambda o: -(o.usd_per_day_net or 0.0)
    )
    by_choice = {o.choice: o for o in options}
    current = by_choice.get(held.choice) if held else None

    def verdict(
        choice: Choice | None,
        reason: str,
        *,
        switch: bool = False,
        stale: bool = False,
        gain: float | None = None,
        recheck_at: datetime | None = None,
    ) -> Verdict:
        chosen = by_choice.get(choice) if choice else None
        runner_up = next((o for o in priced if o.choice != choice), None)
        ours = chosen.usd_per_day_net if chosen else None
        theirs = runner_up.usd_per_day_net if runner_up else None
        margin = margin_pct = None
        if ours is not None and theirs is not None:
            margin, margin_pct = ours - theirs, _finite(gain_pct(ours, theirs))
        return Verdict(
            choice=choice,
            switch=switch,
            since=now if switch else (held.since if held else None),
            chosen=chosen,
            runner_up=runner_up,
            margin_usd_per_day=margin,
            margin_pct=margin_pct,
            gain_pct=None if gain is None else _finite(gain),
            stale=stale,
            data_age_s=age,
            reason=reason,
            recheck_at=None if stale else min(recheck_at or stale_at, stale_at),
        )

    keeping = f"keeping {held.choice}" if held else "nothing chosen yet"
    held_choice = held.choice if held else None
    if pin is not None:
        moving = held_choice != pin
        reason = f"pinned to {pin} by the profile" + (": moving" if moving else "")
        return replace(verdict(pin, reason, switch=moving), recheck_at=None)
    if data_as_of is None:
        return verdict(held_choice, f"no profitability data: {keeping}", stale=True)
    if now > stale_at:
        limit = f"{rule.max_data_age_s:.0f} s"
        return verdict(
            held_choice, f"data from {_iso(data_as_of)} is older than {limit}: {keeping}", stale=True
        )
    if not options:
        return verdict(held_choice, f"no option this profile allows: {keeping}")
    if not priced:
        return verdict(held_choice, f"no option has a price: {keeping}")
    best = priced[0]
    best_net = best.usd_per_day_net or 0.0
    if held is None:
        return verdict(best.choice, f"first choice: {best.choice} at {best_net:.4f} USD/day net", switch=True)
    if current is None:
        reason = (
            f"{held.choice} is no longer allowed by the profile or in the data: "
            f"moving to {best.choice} at {best_net:.4f} USD/day net"
        )
        return verdict(best.choice, reason, switch=True)
    if current.usd_per_day_net is None:
        return verdict(held.choice, f"no price for the current {held.choice}: nothing to compare, {keeping}")
    if best.choice == held.choice:
        return verdict(held.choice, f"{held.choice} is the best: {keeping}")
    if best_net <= current.usd_per_day_net:
        return verdict(held.choice, f"{held.choice} ties with the best: {keeping}")
    gain = gain_pct(best_net, current.usd_per_day_net)
    held_s = (now - held.since).total_seconds()
    better = f"{best.choice} beats {held.choice} by {_pct(gain)}"
    if gain < rule.threshold_pct:
        return verdict(held.choice, f"{better}, under the {rule.threshold_pct:g} % threshold: {keeping}")
    if held_s < rule.min_dwell_s:
        until = held.since + timedelta(seconds=rule.min_dwell_s)
        return verdict(
            held.choice,
            f"{better}, but {held.choice} is held until {_iso(until)} "
            f"({rule.min_dwell_s:.0f} s minimum): {keeping}",
            recheck_at=until,
        )
    return verdict(
        best.choice,
        f"{better} (threshold {rule.threshold_pct:g} %) after {held_s:.0f} s held: moving",
        switch=True,
        gain=gain,
    )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _pct(value: float) -> str:
    return f"{value:.2f} %" if math.isfinite(value) else "an unbounded margin (from zero)"
