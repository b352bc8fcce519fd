"""Profiles: what a group of miners wants mined, validated from JSON bodies. Pure, no I/O.

A body mirrors the `profiles` table: strategy, `params` (the strategy's settings and the
hardware the profile stands for), allow/deny lists and limits. Every problem is reported
naming the field (`params.coin`, `allow_coins[1]`), and unknown fields are refused rather than
ignored: a typo must not silently change what miners mine.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, cast

from api.params import TEXT_PATTERN, text
from api.problems import invalid

Strategy = Literal["max_usd", "max_coin", "fixed"]
STRATEGIES: tuple[Strategy, ...] = ("max_usd", "max_coin", "fixed")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
SYMBOL_PATTERN = r"^[A-Za-z0-9]{1,16}$"
ALGORITHM_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,31}$"
MAX_HASHRATE_HS = 1e21
MAX_POWER_W = 1e9
_MAX_LIST = 256
# Which params each strategy takes, and which of them it needs.
_HARDWARE = frozenset({"algorithm", "hashrate_hs", "power_w"})
_PARAMS: dict[Strategy, tuple[frozenset[str], frozenset[str]]] = {
    "max_usd": (_HARDWARE | {"include_solo"}, frozenset()),
    "max_coin": (_HARDWARE | {"include_solo", "coin"}, frozenset({"coin"})),
    "fixed": (_HARDWARE | {"coin", "pool"}, frozenset({"coin", "pool"})),
}
_FIELDS = frozenset(
    {
        "name",
        "strategy",
        "params",
        "allow_coins",
        "deny_coins",
        "allow_pools",
        "deny_pools",
        "max_fee_pct",
        "min_pool_hashrate",
        "power_cost_kwh",
    }
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


def parse_profile(body: Any, name: str | None = None) -> Profile:
    """A Profile from a request body; `name` (from the URL of a PUT) must agree with the body's."""
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    for key in body:
        if key not in _FIELDS:
            raise invalid(str(key), f"unknown field (known: {', '.join(sorted(_FIELDS))})")
    if name is None:
        if "name" not in body:
            raise invalid("name", "is required")
        name = _string(body, "name", NAME_PATTERN)
    elif "name" in body and body["name"] != name:
        raise invalid("name", f"must be {name!r} as in the URL (profiles are not renamed)")
    if "strategy" not in body:
        raise invalid("strategy", "is required")
    strategy = body["strategy"]
    if strategy not in STRATEGIES:
        raise invalid("strategy", f"must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    params = _params(cast(Strategy, strategy), body.get("params", {}))
    return Profile(
        name=name,
        strategy=cast(Strategy, strategy),
        **params,
        allow_coins=_list(body, "allow_coins", SYMBOL_PATTERN, upper=True),
        deny_coins=_list(body, "deny_coins", SYMBOL_PATTERN, upper=True),
        allow_pools=_list(body, "allow_pools"),
        deny_pools=_list(body, "deny_pools"),
        max_fee_pct=_number(body, "max_fee_pct", 0.0, 100.0, nullable=True),
        min_pool_hashrate=_number(body, "min_pool_hashrate", 0.0, MAX_HASHRATE_HS, nullable=True),
        power_cost_kwh=_number(body, "power_cost_kwh", 0.0, 1e6, nullable=True),
    )


def profile_from_row(row: Mapping[str, Any]) -> Profile:
    """A stored profile, held to the same rules as a request body: rows can be written by hand,
    and one the API cannot make sense of must be refused, not guessed at. Raises Problem."""
    body = {key: row[key] for key in _FIELDS if key != "name"}
    for key in ("allow_coins", "deny_coins", "allow_pools", "deny_pools"):
        body[key] = list(body[key])
    return replace(parse_profile(body, row["name"]), updated_at=row["updated_at"])


def _params(strategy: Strategy, params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise invalid("params", "must be a JSON object")
    allowed, required = _PARAMS[strategy]
    for key in params:
        if key not in allowed:
            raise invalid(
                f"params.{key}",
                f"not a parameter of strategy {strategy} (it takes: {', '.join(sorted(allowed))})",
            )
    for key in sorted(required):
        if key not in params:
            raise invalid(f"params.{key}", f"is required by strategy {strategy}")
    out: dict[str, Any] = {}
    if "algorithm" in params:
        out["algorithm"] = _string(params, "algorithm", ALGORITHM_PATTERN, prefix="params.")
    out["hashrate_hs"] = _number(
        params, "hashrate_hs", 0.0, MAX_HASHRATE_HS, nullable=True, exclusive_min=True, prefix="params."
    )
    out["power_w"] = _number(params, "power_w", 0.0, MAX_POWER_W, prefix="params.") or 0.0
    if "coin" in params:
        out["coin"] = _string(params, "coin", SYMBOL_PATTERN, prefix="params.").upper()
    if "pool" in params and params["pool"] is not None:
        out["pool"] = _string(params, "pool", prefix="params.")
    if "include_solo" in params:
        if not isinstance(params["include_solo"], bool):
            raise invalid("params.include_solo", f"must be true or false, got {params['include_solo']!r}")
        out["include_solo"] = params["include_solo"]
    return out


def _string(data: dict[str, Any], key: str, pattern: str = TEXT_PATTERN, *, prefix: str = "") -> str:
    value = data[key]
    if not isinstance(value, str):
        raise invalid(prefix + key, f"must be a string, got {_json_type(value)}")
    return text(prefix + key, value, pattern)


def _list(
    data: dict[str, Any], key: str, pattern: str = TEXT_PATTERN, *, upper: bool = False
) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise invalid(key, f"must be a list of strings, got {_json_type(value)}")
    if len(value) > _MAX_LIST:
        raise invalid(key, f"at most {_MAX_LIST} entries")
    items = []
    for i, item in enumerate(value):
        text = _string({f"{key}[{i}]": item}, f"{key}[{i}]", pattern)
        items.append(text.upper() if upper else text)
    return tuple(dict.fromkeys(items))


def _number(
    data: dict[str, Any],
    key: str,
    low: float,
    high: float,
    *,
    nullable: bool = False,
    exclusive_min: bool = False,
    prefix: str = "",
) -> float | None:
    if key not in data or (nullable and data[key] is None):
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(prefix + key, f"must be a number, got {_json_type(value)}")
    if value < low or value > high or (exclusive_min and value == low):
        bound = ">" if exclusive_min else ">="
        raise invalid(prefix + key, f"must be {bound} {low:g} and <= {high:g}, got {value!r}")
    return float(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
