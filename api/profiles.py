"""Profiles: what a group of miners wants mined. Pure, no I/O.

A body mirrors the `profiles` table: strategy, `params` (the strategy's settings and the
hardware the profile stands for), allow/deny lists and limits; `api/models.py` declares its
shape per strategy, and a stored row is held to the same declaration as a request body.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from api.inputs import Body
from api.models import (
    FixedInput,
    FixedParams,
    MaxCoinInput,
    MaxCoinParams,
    MaxUsdInput,
    MaxUsdParams,
    ProfileReplace,
    Strategy,
)

REPLACE = Body(ProfileReplace)
"""A whole profile, named elsewhere (a PUT's URL, a row's name column)."""
_COLUMNS = (
    "strategy",
    "params",
    "allow_coins",
    "deny_coins",
    "allow_pools",
    "deny_pools",
    "max_fee_pct",
    "min_pool_hashrate",
    "power_cost_kwh",
)


@dataclass(frozen=True)
class Profile:
    name: str
    strategy: Strategy
    algorithm: str = "scrypt"
    hashrate_hs: float | None = None
    """The hashrate decided for; None: the aggregator's reference hashrate."""
    power_w: float = 0.0
    coin: str | None = None
    """max_coin and fixed: the coin to stay on."""
    pool: str | None = None
    """fixed: the pool pinned (None: solo on the coin's daemon)."""
    include_solo: bool = False
    """max_usd and max_coin: also weigh solo mining on the coins' own daemons."""
    allow_coins: tuple[str, ...] = ()
    deny_coins: tuple[str, ...] = ()
    allow_pools: tuple[str, ...] = ()
    deny_pools: tuple[str, ...] = ()
    max_fee_pct: float | None = None
    min_pool_hashrate: float | None = None
    power_cost_kwh: float | None = None
    updated_at: datetime | None = None

    def params(self) -> dict[str, Any]:
        """The `params` object: only what is set, so defaults can change without a migration."""
        params: dict[str, Any] = {}
        if self.algorithm != "scrypt":
            params["algorithm"] = self.algorithm
        if self.hashrate_hs is not None:
            params["hashrate_hs"] = self.hashrate_hs
        if self.power_w:
            params["power_w"] = self.power_w
        if self.strategy in ("max_coin", "fixed"):
            params["coin"] = self.coin
        if self.strategy == "fixed":
            params["pool"] = self.pool
        if self.include_solo:
            params["include_solo"] = True
        return params

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "strategy": self.strategy,
            "params": self.params(),
            "allow_coins": list(self.allow_coins),
            "deny_coins": list(self.deny_coins),
            "allow_pools": list(self.allow_pools),
            "deny_pools": list(self.deny_pools),
            "max_fee_pct": self.max_fee_pct,
            "min_pool_hashrate": self.min_pool_hashrate,
            "power_cost_kwh": self.power_cost_kwh,
            "updated_at": self.updated_at,
        }


def profile_from_input(body: MaxUsdInput | MaxCoinInput | FixedInput, name: str) -> Profile:
    """The Profile a validated body describes, named `name`."""
    params = body.params
    return Profile(
        name=name,
        strategy=body.strategy,
        algorithm=params.algorithm,
        hashrate_hs=params.hashrate_hs,
        power_w=params.power_w,
        coin=params.coin if isinstance(params, MaxCoinParams | FixedParams) else None,
        pool=params.pool if isinstance(params, FixedParams) else None,
        include_solo=params.include_solo if isinstance(params, MaxUsdParams) else False,
        allow_coins=tuple(dict.fromkeys(body.allow_coins)),
        deny_coins=tuple(dict.fromkeys(body.deny_coins)),
        allow_pools=tuple(dict.fromkeys(body.allow_pools)),
        deny_pools=tuple(dict.fromkeys(body.deny_pools)),
        max_fee_pct=body.max_fee_pct,
        min_pool_hashrate=body.min_pool_hashrate,
        power_cost_kwh=body.power_cost_kwh,
    )


def profile_from_row(row: Mapping[str, Any]) -> Profile:
    """A stored profile, held to the same rules as a request body: rows can be written by hand,
    and one the API cannot make sense of must be refused, not guessed at. Raises Problem."""
    body = {key: row[key] for key in _COLUMNS}
    for key in ("allow_coins", "deny_coins", "allow_pools", "deny_pools"):
        body[key] = list(body[key])
    return replace(profile_from_input(REPLACE.read(body), row["name"]), updated_at=row["updated_at"])
