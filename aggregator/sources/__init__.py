"""The collectors, all behind the `Source` protocol, and the list a configuration enables."""

from collections.abc import Mapping

from aggregator.config import DEFAULT_MIN_INTERVAL_S, AggregatorConfig, api_key
from aggregator.sources.base import Source
from aggregator.sources.binance import Binance
from aggregator.sources.coingecko import CoinGecko
from aggregator.sources.daemon import Daemon
from aggregator.sources.hashrate_no import HashrateNo
from aggregator.sources.minerstat import Minerstat, MinerstatHardware
from aggregator.sources.pools import Nanopool, TwoMiners
from aggregator.sources.whattomine import WhatToMine

__all__ = ["Source", "build_sources"]


def build_sources(config: AggregatorConfig, environ: Mapping[str, str] | None = None) -> list[Source]:
    """One source per enabled collector; per coin daemon and per pool API one source each."""
    coins = config.coins
    algorithms = tuple(sorted({c.algorithm for c in coins}))
    cfg = {name: config.effective(name) for name in DEFAULT_MIN_INTERVAL_S}
    minerstat_key = api_key("minerstat", cfg["minerstat"], environ)
    sources: list[Source] = []
    if cfg["coingecko"].enabled:
        sources.append(CoinGecko(cfg["coingecko"], coins, api_key("coingecko", cfg["coingecko"], environ)))
    if cfg["binance"].enabled:
        sources.append(Binance(cfg["binance"], coins))
    if cfg["whattomine"].enabled:
        sources.append(WhatToMine(cfg["whattomine"], coins))
    if cfg["minerstat"].enabled:
        sources.append(Minerstat(cfg["minerstat"], coins, minerstat_key))
    if cfg["minerstat_hardware"].enabled:
        key = api_key("minerstat_hardware", cfg["minerstat_hardware"], environ) or minerstat_key
        sources.append(MinerstatHardware(cfg["minerstat_hardware"], algorithms, config.hardware_type, key))
    if cfg["hashrate_no"].enabled:
        sources.append(
            HashrateNo(cfg["hashrate_no"], coins, api_key("hashrate_no", cfg["hashrate_no"], environ))
        )
    if cfg["daemon"].enabled:
        sources.extend(Daemon(cfg["daemon"], coin) for coin in coins if coin.daemon_url)
    for pool in config.pools:
        if pool.api == "twominers" and cfg["twominers"].enabled:
            sources.append(TwoMiners(cfg["twominers"], pool))
        elif pool.api == "nanopool" and cfg["nanopool"].enabled:
            sources.append(Nanopool(cfg["nanopool"], pool))
    return sources
