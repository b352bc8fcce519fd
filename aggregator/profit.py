"""Profitability at a reference hashrate: per coin (solo, no fee) and per pool (after its fee).

coins/day = 86400 · H · reward / (D · 2^32) (mining.target.expected_coins_per_day);
USD/day = coins/day · price; net = USD/day · (1 − fee/100) − power cost, where
power cost/day = W · 24 / 1000 · USD/kWh. A pool that merge-mines (LTC with DOGE) pays every coin
for the same hashes, so its figures are the sums over its coins.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aggregator.model import CoinId
from mining.target import expected_coins_per_day


@dataclass(frozen=True)
class CoinEconomics:
    """A coin's fresh, reconciled inputs; price None when no fresh price exists."""

    coin: CoinId
    difficulty: float
    block_reward: float
    price_usd: float | None


@dataclass(frozen=True)
class Profitability:
    coin: CoinId
    """The coin mined (for a merged-mining pool, the parent chain's coin)."""
    pool: str | None
    """None: solo mining on the coin's own daemon."""
    hashrate_hs: float
    coins_per_day: float
    """Of `coin`, before the pool fee."""
    usd_per_day: float | None
    """Sum over every coin paid, before fee and power; None without the main coin's price."""
    fee_percent: float
    power_usd_per_day: float
    usd_per_day_net: float | None
    inputs: dict[str, Any]
    """Per coin: difficulty, block_reward, price_usd, coins_per_day, usd_per_day; plus missing."""

    @property
    def algorithm(self) -> str:
        return self.coin.algorithm


def power_cost_per_day(power_w: float, usd_per_kwh: float) -> float:
    return power_w * 24.0 / 1000.0 * usd_per_kwh


def profitability(
    coins: Sequence[CoinId],
    economics: Mapping[CoinId, CoinEconomics],
    *,
    hashrate_hs: float,
    pool: str | None = None,
    fee_percent: float = 0.0,
    power_usd_per_day: float = 0.0,
) -> Profitability | None:
    """Figures for mining `coins` together (the first is the main coin); None without its data.

    A merged coin without fresh data is left out of the sums and listed in inputs["missing"], so
    the figure errs low rather than counting a reward nobody can vouch for.
    """
    main = coins[0]
    if main not in economics:
        return None
    per_coin: dict[str, dict[str, float | None]] = {}
    missing: list[str] = []
    usd_total: float | None = 0.0
    main_per_day = 0.0
    for coin in coins:
        econ = economics.get(coin)
        if econ is None:
            missing.append(coin.symbol)
            continue
        per_day = expected_coins_per_day(hashrate_hs, econ.block_reward, econ.difficulty)
        usd = per_day * econ.price_usd if econ.price_usd is not None else None
        if coin == main:
            main_per_day = per_day
        per_coin[coin.symbol] = {
            "difficulty": econ.difficulty,
            "block_reward": econ.block_reward,
            "price_usd": econ.price_usd,
            "coins_per_day": per_day,
            "usd_per_day": usd,
        }
        if usd is None:
            if coin == main:
                usd_total = None
            else:
                missing.append(coin.symbol)
        elif usd_total is not None:
            usd_total += usd
    net = None if usd_total is None else usd_total * (1.0 - fee_percent / 100.0) - power_usd_per_day
    return Profitability(
        coin=main,
        pool=pool,
        hashrate_hs=hashrate_hs,
        coins_per_day=main_per_day,
        usd_per_day=usd_total,
        fee_percent=fee_percent,
        power_usd_per_day=power_usd_per_day,
        usd_per_day_net=net,
        inputs={"coins": per_coin, "missing": missing, "power_usd_per_day": power_usd_per_day},
    )
