"""Strategies: which candidates a profile weighs, with its figures, best first. Pure functions.

Every strategy prices candidates for the profile's hashrate, fee and power cost
(`api.market.figures`: merged mining counts every coin a pool pays) and keeps only those the
profile's lists and limits allow; they differ in what they consider at all:
- `max_usd`: every pool (and, with `include_solo`, every coin's daemon);
- `max_coin`: only the profile's coin, on whichever pool pays best for it;
- `fixed`: only the pinned coin and pool.
The decision rule (`api.decision`) then says whether to move.
"""

from collections.abc import Callable

from api.market import Candidate, Figures, Market, figures, power_cost_per_day
from api.models import Strategy
from api.profiles import Profile


def allowed(profile: Profile, candidate: Candidate) -> bool:
    """The profile's lists and limits. A candidate pays every coin it mines together, so each of
    them must be allowed; pool rules bind pools, not a coin's own daemon."""
    paid = {candidate.coin, *(c.symbol for c in candidate.coins), *candidate.missing}
    if profile.allow_coins and not paid <= set(profile.allow_coins):
        return False
    if paid & set(profile.deny_coins):
        return False
    if candidate.pool is None:
        return True
    if profile.allow_pools and candidate.pool not in profile.allow_pools:
        return False
    if candidate.pool in profile.deny_pools:
        return False
    if profile.max_fee_pct is not None and candidate.fee_pct > profile.max_fee_pct:
        return False
    if profile.min_pool_hashrate is not None:
        # A pool that publishes no hashrate cannot show it meets the minimum.
        hashrate = candidate.pool_hashrate_hs
        return hashrate is not None and hashrate >= profile.min_pool_hashrate
    return True


def _priced(profile: Profile, market: Market, wanted: Callable[[Candidate], bool]) -> list[Figures]:
    hashrate = profile.hashrate_hs or market.reference_hashrate_hs
    power = power_cost_per_day(profile.power_w, profile.power_cost_kwh or 0.0)
    priced = [figures(c, hashrate, power) for c in market.candidates if wanted(c) and allowed(profile, c)]
    # Unknown figures last; equal ones in a stable order so answers do not flap between requests.
    priced.sort(
        key=lambda f: (
            f.usd_per_day_net is None,
            -(f.usd_per_day_net or 0.0),
            f.candidate.coin,
            f.candidate.pool or "",
        )
    )
    return priced


def max_usd(profile: Profile, market: Market) -> list[Figures]:
    return _priced(profile, market, lambda c: c.pool is not None or profile.include_solo)


def max_coin(profile: Profile, market: Market) -> list[Figures]:
    return _priced(
        profile, market, lambda c: c.coin == profile.coin and (c.pool is not None or profile.include_solo)
    )


def fixed(profile: Profile, market: Market) -> list[Figures]:
    return _priced(profile, market, lambda c: c.key == (profile.coin, profile.pool))


STRATEGY_FUNCTIONS: dict[Strategy, Callable[[Profile, Market], list[Figures]]] = {
    "max_usd": max_usd,
    "max_coin": max_coin,
    "fixed": fixed,
}


def rank(profile: Profile, market: Market) -> list[Figures]:
    """The candidates `profile` weighs, priced for it, best net USD/day first."""
    return STRATEGY_FUNCTIONS[profile.strategy](profile, market)
