"""What a hashrate earns on each coin × pool of the latest aggregator run: pure, no I/O.

The aggregator stores, per run, one profitability row for each pool and one per coin for solo
mining, with the inputs it used (difficulty, block reward and price of every coin the row pays).
The figures here are recomputed from those inputs for the caller's hashrate with
`mining.target.expected_coins_per_day`, so they agree with the aggregator's at its reference
hashrate and stay exact at any other. A merged-mining pool (LTC with DOGE) pays every coin for
the same hashes: its USD/day is the sum over them.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mining.target import expected_coins_per_day


@dataclass(frozen=True)
class CoinInputs:
    symbol: str
    difficulty: float
    block_reward: float
    price_usd: float | None


@dataclass(frozen=True)
class Candidate:
    """Somewhere to point hashrate: a pool, or a coin's own daemon (solo) when `pool` is None."""

    coin: str
    """The coin mined (the parent chain of a merged-mining pool)."""
    pool: str | None
    fee_pct: float
    coins: tuple[CoinInputs, ...]
    """Every coin paid with fresh inputs, the mined coin first."""
    missing: tuple[str, ...] = ()
    """Coins the pool pays for which the run had no fresh data: left out of the sums."""
    endpoints: tuple[str, ...] = ()
    """Stratum URLs of the pool."""
    pool_hashrate_hs: float | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.coin, self.pool)


@dataclass(frozen=True)
class Market:
    """The latest aggregator run for one algorithm."""

    algorithm: str
    computed_at: datetime
    reference_hashrate_hs: float
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class Payout:
    coin: str
    coins_per_day: float
    usd_per_day: float | None


@dataclass(frozen=True)
class Figures:
    candidate: Candidate
    hashrate_hs: float
    payouts: tuple[Payout, ...]
    usd_per_day: float | None
    """Gross: every priced coin paid, before fee and power; None without the mined coin's price."""
    usd_per_day_after_fee: float | None
    power_usd_per_day: float
    usd_per_day_net: float | None
    """After the pool fee and the power cost; negative when mining loses money."""


def power_cost_per_day(watts: float, usd_per_kwh: float) -> float:
    return watts * 24.0 / 1000.0 * usd_per_kwh


def figures(candidate: Candidate, hashrate_hs: float, power_usd_per_day: float = 0.0) -> Figures:
    payouts = []
    gross: float | None = 0.0
    for coin in candidate.coins:
        per_day = expected_coins_per_day(hashrate_hs, coin.block_reward, coin.difficulty)
        usd = None if coin.price_usd is None else per_day * coin.price_usd
        payouts.append(Payout(coin.symbol, per_day, usd))
        if usd is None:
            # Without the mined coin's price nothing can be said; a merged coin's is left out.
            if coin.symbol == candidate.coin:
                gross = None
        elif gross is not None:
            gross += usd
    after_fee = None if gross is None else gross * (1.0 - candidate.fee_pct / 100.0)
    net = None if after_fee is None else after_fee - power_usd_per_day
    return Figures(candidate, hashrate_hs, tuple(payouts), gross, after_fee, power_usd_per_day, net)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


def candidate_from_row(row: Mapping[str, Any]) -> Candidate | None:
    """A profitability row (joined with its coin and pool) as a Candidate; None when the row
    lacks the mined coin's difficulty or reward, which the aggregator never writes."""
    inputs: dict[str, Any] = row["inputs"]
    per_coin: dict[str, Any] = inputs.get("coins", {})
    symbols = [row["symbol"], *(row["merged_coins"] or ())]
    coins = []
    missing = [str(s) for s in inputs.get("missing", ())]
    for symbol in symbols:
        data = per_coin.get(symbol)
        if not data or not _positive(data.get("difficulty")) or data.get("block_reward") is None:
            if symbol == row["symbol"]:
                return None
            if symbol not in missing:
                missing.append(symbol)
            continue
        price = data.get("price_usd")
        coins.append(
            CoinInputs(
                symbol,
                float(data["difficulty"]),
                float(data["block_reward"]),
                None if price is None else float(price),
            )
        )
    endpoints: Sequence[Any] = row["endpoints"] or ()
    return Candidate(
        coin=row["symbol"],
        pool=row["pool"],
        fee_pct=float(row["fee_pct"] or 0.0),
        coins=tuple(coins),
        missing=tuple(missing),
        endpoints=tuple(str(e["url"]) for e in endpoints if isinstance(e, dict) and e.get("url")),
        pool_hashrate_hs=row["pool_hashrate_hs"],
    )
