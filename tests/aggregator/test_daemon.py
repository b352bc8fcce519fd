"""The coin-daemon source against real Litecoin Core regtest nodes."""

from dataclasses import replace

import aiohttp
import asyncpg
import pytest

from aggregator import run_once
from aggregator.config import LITECOIN, AggregatorConfig, CoinConfig, SourceConfig
from aggregator.http import FetchError, HttpClient
from aggregator.sources.daemon import Daemon
from qscrypt.devnet.litecoind import RegtestPair

OFF = SourceConfig(enabled=False)


def daemon_coin(pair: RegtestPair, password: str | None = None) -> CoinConfig:
    return replace(LITECOIN, daemon_url=pair.rpc_url(0), daemon_user=pair.user,
                   daemon_password=pair.password if password is None else password)  # fmt: skip


async def test_daemon_values_are_the_nodes_own(litecoin_pair: RegtestPair) -> None:
    coin = daemon_coin(litecoin_pair)
    daemon = Daemon(SourceConfig(timeout_s=5.0, retries=0), coin)
    async with aiohttp.ClientSession() as session:
        data = await daemon.fetch(HttpClient(session, daemon.name, daemon.config))
    info = await litecoin_pair.arpc(0, "getmininginfo")
    template = await litecoin_pair.arpc(0, "getblocktemplate", {"rules": ["mweb", "segwit"]})
    got = {o.quantity: o.value for o in data.observations}
    assert got["difficulty"] == info["difficulty"]
    assert got["block_reward"] == template["coinbasevalue"] / 100_000_000
    assert got["height"] == template["height"] - 1 == info["blocks"]
    assert got["block_time_s"] == 150.0
    assert data.warnings == ()


async def test_a_run_with_the_daemon_writes_its_values_as_authoritative(
    litecoin_pair: RegtestPair, pg_dsn: str
) -> None:
    config = AggregatorConfig(
        coins=(daemon_coin(litecoin_pair),), pools=(), coingecko=OFF, binance=OFF, whattomine=OFF,
        minerstat=OFF, minerstat_hardware=OFF, hashrate_no=OFF, twominers=OFF, nanopool=OFF,
        daemon=SourceConfig(timeout_s=5.0, retries=0),
    )  # fmt: skip
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        report = await run_once(config, pool)
        row = await pool.fetchrow("SELECT * FROM coins WHERE symbol = 'LTC'")
        profit = await pool.fetchrow("SELECT * FROM profitability WHERE computed_at = $1", report.started_at)
    finally:
        await pool.close()
    assert report.ok, report.summary()
    template = await litecoin_pair.arpc(0, "getblocktemplate", {"rules": ["mweb", "segwit"]})
    difficulty = (await litecoin_pair.arpc(0, "getmininginfo"))["difficulty"]
    assert row["difficulty"] == difficulty
    assert float(row["block_reward"]) == template["coinbasevalue"] / 100_000_000
    assert row["height"] == template["height"] - 1
    assert row["stale"] is True  # no price source is enabled
    # No price: coins per day only. Regtest difficulty is tiny, so 1 GH/s earns a great deal.
    expected = 86400 * 1e9 * (template["coinbasevalue"] / 1e8) / (difficulty * 2**32)
    assert profit["coins_per_day"] == pytest.approx(expected)
    assert profit["usd_per_day"] is None


async def test_wrong_rpc_credentials_fail_the_source(litecoin_pair: RegtestPair) -> None:
    daemon = Daemon(SourceConfig(timeout_s=5.0, retries=0), daemon_coin(litecoin_pair, password="wrong"))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(FetchError, match="HTTP 401"):
            await daemon.fetch(HttpClient(session, daemon.name, daemon.config))
