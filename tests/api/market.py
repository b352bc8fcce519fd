"""Moving the market under the API: new profitability runs derived from the aggregator's."""

import json
from collections.abc import Mapping
from datetime import datetime

import asyncpg

# The aggregator's figures for the fixtures at 1 GH/s (see test_strategies.py for the arithmetic).
LTC_USD = 0.1174863427877426
DOGE_USD = 2.123415470123291
MERGED_NET = (LTC_USD + DOGE_USD) * 0.98  # 2.196083776652813
TWOMINERS_NET = LTC_USD * 0.99  # 0.11631147935986517


async def new_run(
    conn: asyncpg.Connection,
    computed_at: datetime,
    *,
    prices: Mapping[str, float | None] | None = None,
    fees: Mapping[str, float] | None = None,
) -> None:
    """A profitability run at `computed_at` copied from the aggregator's first one, with some coin
    prices and pool fees changed. The API prices candidates from each row's inputs and fee, so
    the rows' own USD columns are copied unchanged."""
    rows = await conn.fetch(
        """
        SELECT p.*, pl.name AS pool_name FROM profitability p LEFT JOIN pools pl ON pl.id = p.pool_id
        WHERE p.algorithm = 'scrypt' AND p.computed_at = (SELECT min(computed_at) FROM profitability)
        """
    )
    assert rows, "the aggregator has not run"
    for row in rows:
        inputs = json.loads(row["inputs"])
        for symbol, price in (prices or {}).items():
            if symbol in inputs["coins"]:
                inputs["coins"][symbol]["price_usd"] = price
        fee = (fees or {}).get(row["pool_name"], row["fee_pct"])
        await conn.execute(
            """
            INSERT INTO profitability (computed_at, coin_id, pool_id, algorithm, hashrate_hs, coins_per_day,
                                       usd_per_day, fee_pct, usd_per_day_net, inputs)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
            """,
            computed_at,
            row["coin_id"],
            row["pool_id"],
            row["algorithm"],
            row["hashrate_hs"],
            row["coins_per_day"],
            row["usd_per_day"],
            fee,
            row["usd_per_day_net"],
            json.dumps(inputs),
        )
