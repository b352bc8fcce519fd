"""The aggregator's configuration: the `[aggregator]` TOML section, one frozen dataclass per table.

Every field has a working default, so an empty section runs the public sources for Litecoin and
Dogecoin. `qscrypt.settings.load_section` maps the section onto these classes unchanged.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from aggregator.model import normalize_algorithm

# Spacing between two requests each API asks for (or tolerates) on its free tier: CoinGecko's
# keyless tier about 30 a minute, Minerstat 12 a minute; the others are polite defaults.
DEFAULT_MIN_INTERVAL_S = {
    "coingecko": 2.0, "binance": 0.1, "whattomine": 1.0, "minerstat": 5.0, "minerstat_hardware": 5.0,
    "hashrate_no": 1.0, "daemon": 0.0, "twominers": 0.5, "nanopool": 0.5,
}  # fmt: skip


@dataclass(frozen=True)
class SourceConfig:
    """How one external source is reached. Every source has its own table with these keys."""

    enabled: bool = True
    """Fetch this source on each run."""
    base_url: str = ""
    """Scheme and host (and path prefix) of the API; empty uses the public address. Tests point
    this at a local server."""
    api_key: str = ""
    """API key; empty falls back to the environment variable QSCRYPT_<SOURCE>_API_KEY (for
    example QSCRYPT_COINGECKO_API_KEY), and to no key when that is unset too."""
    timeout_s: float = 10.0
    """Limit for one HTTP request, connection to last byte."""
    retries: int = 2
    """Extra attempts after a timeout, a connection error, a 5xx or a 429."""
    backoff_s: float = 1.0
    """First retry waits about this long; each further retry doubles it, with ±50 % jitter."""
    max_retry_after_s: float = 60.0
    """A `Retry-After` longer than this is not waited for: the source fails this run instead."""
    min_interval_s: float | None = None
    """Rate limit: at least this long between the starts of two requests to this source; unset,
    the source's own published limit (DEFAULT_MIN_INTERVAL_S)."""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if min(self.retries, self.backoff_s, self.max_retry_after_s, self.min_interval_s or 0.0) < 0:
            raise ValueError("retries, backoff_s, min_interval_s and max_retry_after_s must be >= 0")


@dataclass(frozen=True)
class CoinConfig:
    """A coin to track. Its identity across sources is (symbol, algorithm)."""

    symbol: str
    """Ticker, as sources spell it: "LTC"."""
    algorithm: str = "scrypt"
    """Proof-of-work algorithm; compared case- and punctuation-insensitively ("Scrypt" == "scrypt")."""
    name: str = ""
    block_time_s: float = 0.0
    """Protocol target block time; used for the daemon's observation (the daemon reports none)."""
    coingecko_id: str = ""
    """CoinGecko coin id ("litecoin"); empty leaves the coin out of CoinGecko requests."""
    binance_symbol: str = ""
    """Binance spot pair quoted in a USD stablecoin ("LTCUSDT"); empty leaves it out."""
    whattomine_id: int = 0
    """WhatToMine coin id (4 for Litecoin), fetched as /coins/<id>.json; 0 leaves it out."""
    daemon_url: str = ""
    """JSON-RPC URL of the coin's own node (http://127.0.0.1:9332/); empty: no daemon source."""
    daemon_user: str = ""
    daemon_password: str = ""
    daemon_rules: tuple[str, ...] = ("mweb", "segwit")
    """`rules` for getblocktemplate: Litecoin Core insists on mweb and segwit."""

    def __post_init__(self) -> None:
        if not self.symbol:
            raise ValueError("coin symbol is required")


@dataclass(frozen=True)
class PoolConfig:
    """A pool miners can be sent to. Its stats come from its API (`api`) or from here alone."""

    name: str
    """Unique name, used as the pool's key in the database."""
    coins: tuple[str, ...] = ("LTC",)
    """Symbols the pool pays; more than one means merged mining (LTC and DOGE for one hashrate),
    whose profitability is the sum over the coins."""
    algorithm: str = "scrypt"
    fee_percent: float = 0.0
    """Pool fee in percent of the reward (pool APIs do not publish it)."""
    stratum_url: str = ""
    api: Literal["none", "twominers", "nanopool"] = "none"
    """Which stats API the pool speaks; "none" for a pool known only from this table."""
    api_url: str = ""
    """Base URL of that API (https://ltc.2miners.com or https://api.nanopool.org)."""
    api_coin: str = ""
    """Coin path segment for multi-coin APIs (Nanopool: "etc")."""
    hashrate_unit_hs: float = 1.0
    """H/s per unit of the hashrate the API reports (Nanopool reports MH/s for Ethash: 1e6)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("pool name is required")
        if not self.coins:
            raise ValueError(f"pool {self.name}: coins must name at least one coin")
        if not 0 <= self.fee_percent < 100:
            raise ValueError(f"pool {self.name}: fee_percent must be in [0, 100)")
        if self.api != "none" and not self.api_url:
            raise ValueError(f"pool {self.name}: api = {self.api!r} needs api_url")


LITECOIN = CoinConfig(
    symbol="LTC", name="Litecoin", block_time_s=150.0, coingecko_id="litecoin",
    binance_symbol="LTCUSDT", whattomine_id=4,
)  # fmt: skip
DOGECOIN = CoinConfig(
    symbol="DOGE", name="Dogecoin", block_time_s=60.0, coingecko_id="dogecoin",
    binance_symbol="DOGEUSDT", whattomine_id=6, daemon_rules=(),
)  # fmt: skip
TWOMINERS_LTC = PoolConfig(
    name="2miners-ltc", coins=("LTC",), fee_percent=1.0, stratum_url="stratum+tcp://ltc.2miners.com:8080",
    api="twominers", api_url="https://ltc.2miners.com",
)  # fmt: skip


@dataclass(frozen=True)
class AggregatorConfig:
    """The `[aggregator]` section."""

    coins: tuple[CoinConfig, ...] = (LITECOIN, DOGECOIN)
    """Coins to track; data about any other coin is dropped."""
    pools: tuple[PoolConfig, ...] = (TWOMINERS_LTC,)
    """Pools to rank. Pools with an `api` are fetched by the twominers or nanopool source."""
    coingecko: SourceConfig = SourceConfig()
    """Prices, /api/v3/simple/price (the keyless tier allows about 30 requests a minute)."""
    binance: SourceConfig = SourceConfig()
    """Prices, /api/v3/ticker/price, one request per pair."""
    whattomine: SourceConfig = SourceConfig()
    """Network data, /coins/<id>.json per coin."""
    minerstat: SourceConfig = SourceConfig()
    """Network data and USD price, /v2/coins (needs an API key: X-API-Key)."""
    minerstat_hardware: SourceConfig = SourceConfig()
    """Hashrate and power per algorithm, /v2/hardware (falls back to minerstat's key)."""
    hashrate_no: SourceConfig = SourceConfig()
    """Hashrate and power estimates, /v1/asicEstimates (needs an API key: apiKey=)."""
    daemon: SourceConfig = SourceConfig(timeout_s=5.0, retries=1)
    """The coins' own nodes over JSON-RPC (coins[].daemon_url); authoritative when configured."""
    twominers: SourceConfig = SourceConfig()
    """Pools with api = "twominers": /api/stats."""
    nanopool: SourceConfig = SourceConfig()
    """Pools with api = "nanopool": /v1/<coin>/pool/hashrate and /pool/activeminers."""
    hardware_type: str = "asic"
    """Hardware category asked of minerstat_hardware ("asic", "gpu"; "" for all): scrypt is
    mined by ASICs."""
    reference_hashrate_hs: float = 1e9
    """Hashrate the profitability table is computed for, in H/s (1 GH/s)."""
    reference_power_w: float = 0.0
    """Power drawn at the reference hashrate, in W; with power_cost_usd_per_kwh it gives a daily
    power cost that is subtracted. 0 leaves power out."""
    power_cost_usd_per_kwh: float = 0.0
    """Electricity price for that power cost, in USD per kWh."""
    history_retention_days: float = 90.0
    """coin_history, pool_history and profitability rows older than this are deleted at each run."""
    stale_after_s: float = 1800.0
    """A value not refreshed for this long is marked stale and left out of reconciliation."""
    outlier_band: float = 0.25
    """A source's value further than this fraction from the median of all sources is rejected
    (and logged) as an outlier. With only two sources that disagree by more, neither is used."""
    solo_merged: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Coins solo mining on a coin's own daemon earns besides it by merged mining, by the coin:
    {"LTC": ["DOGE"]} when the proxy's solo LTC upstream has a DOGE `[[proxy.upstreams.aux]]`.
    `qscrypt run` fills it from the proxy's upstreams (proxy.config.ProxyConfig.solo_earnings),
    so the solo rows count what the proxy earns; like a merged pool's, they sum over the coins."""
    interval_s: float = 300.0
    """Period of `qscrypt aggregator --every` when no period is given on the command line."""
    user_agent: str = "qscrypt-aggregator/0.1"
    """User-Agent of every request (some APIs refuse requests without one)."""

    def __post_init__(self) -> None:
        symbols = [c.symbol for c in self.coins]
        if len(symbols) != len(set(symbols)):
            raise ValueError("coins: symbols must be unique")
        names = [p.name for p in self.pools]
        if len(names) != len(set(names)):
            raise ValueError("pools: names must be unique")
        tracked = {(c.symbol.upper(), normalize_algorithm(c.algorithm)) for c in self.coins}
        for pool in self.pools:
            for symbol in pool.coins:
                if (symbol.upper(), normalize_algorithm(pool.algorithm)) not in tracked:
                    raise ValueError(f"pool {pool.name}: coin {symbol}/{pool.algorithm} is not among coins")
        for main, merged in self.solo_merged.items():
            for symbol in (main, *merged):
                if symbol.upper() not in {s.upper() for s, _ in tracked}:
                    raise ValueError(f"solo_merged: coin {symbol} is not among coins")
        if self.reference_hashrate_hs <= 0:
            raise ValueError("reference_hashrate_hs must be positive")
        if not 0 < self.outlier_band < 1:
            raise ValueError("outlier_band must be in (0, 1)")
        if self.history_retention_days <= 0 or self.stale_after_s <= 0 or self.interval_s <= 0:
            raise ValueError("history_retention_days, stale_after_s and interval_s must be positive")
        if self.reference_power_w < 0 or self.power_cost_usd_per_kwh < 0:
            raise ValueError("reference_power_w and power_cost_usd_per_kwh must be >= 0")

    def effective(self, name: str) -> SourceConfig:
        """Source `name`'s settings with its own rate limit filled in where none is set."""
        config: SourceConfig = getattr(self, name)
        if config.min_interval_s is None:
            return replace(config, min_interval_s=DEFAULT_MIN_INTERVAL_S[name])
        return config

    def coin(self, symbol: str) -> CoinConfig | None:
        return next((c for c in self.coins if c.symbol == symbol), None)


def api_key(name: str, config: SourceConfig, environ: Mapping[str, str] | None = None) -> str:
    """The key from the config, else from QSCRYPT_<NAME>_API_KEY; "" when neither is set."""
    if config.api_key:
        return config.api_key
    env = os.environ if environ is None else environ
    return env.get(f"QSCRYPT_{name.upper()}_API_KEY", "")
