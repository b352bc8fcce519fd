"""The `[payouts]` TOML section: how each coin's miners are paid (`[payouts.coins.LTC]`), mapped by
`qscrypt.settings.load_section` onto `PayoutsConfig`. Amounts are in coin units (e.g. 0.01 LTC)."""

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from mining.coins import coin as coin_by_symbol
from qscrypt.settings import ConfigError

UNITS_PER_COIN = 10**8
"""Smallest units per coin (litoshis per LTC, koinu per DOGE): every scrypt coin here has 8 decimals."""
_HALVING = {"main": 840_000, "test": 840_000, "regtest": 150}


def to_units(amount: Decimal | float | str) -> int:
    """Coin units (a decimal) to smallest units; more than 8 decimals is an error, not a rounding."""
    exact = Decimal(str(amount)) * UNITS_PER_COIN
    if exact != exact.to_integral_value():
        raise ValueError(f"{amount} has more than 8 decimals")
    return int(exact)


def to_coins(units: int) -> str:
    """Smallest units as a decimal string in coin units with all 8 decimals: 12500000 -> "0.12500000"."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), UNITS_PER_COIN)
    return f"{sign}{whole}.{frac:08d}"


@dataclass(frozen=True)
class CoinPayouts:
    mode: Literal["solo", "pool"] = "solo"
    """solo: blocks found through the proxy's daemon upstreams earn; pool: what upstream pools pay."""
    scheme: Literal["solo", "pps", "fpps", "pplns"] = "solo"
    network: Literal["main", "test", "regtest"] = "main"
    fee_percent: float = 1.0
    """The operator's fee, 0..100; PUT /v1/fees/{coin} overrides it."""
    minimum: float = 0.01
    """An account is paid once its balance reaches this many coins."""
    approval_threshold: float = 0.0
    """Payouts above this many coins wait for POST /v1/payouts/{id}/approve; 0: none wait."""
    pplns_factor: float = 2.0
    maturity: int = 0
    """Confirmations before a block's reward can be paid; 0: the coin's own coinbase maturity
    (Litecoin 100 on every network; Dogecoin 240, regtest 60)."""
    confirmations: int = 1
    """Confirmations before a payout counts as confirmed."""
    upstreams: list[str] = field(default_factory=list)
    """Names of the proxy upstreams whose shares earn this coin; empty: every upstream."""
    pps_period_s: int = 3600
    """PPS/FPPS credit shares per period of this length, once it has ended."""
    pps_settle_s: int = 120
    """... and this long after, so shares still on their way to the database count."""
    fpps_blocks: int = 100
    """FPPS: transaction fees are averaged over this many recent blocks."""
    initial_subsidy: float = 50.0
    halving_interval: int = 0
    """Blocks between subsidy halvings; 0: the network's (840,000; regtest 150)."""
    rpc_url: str = ""
    rpc_user: str = ""
    rpc_password: str = ""
    rpc_cookie_file: Path | None = None
    wallet: str = ""
    """The daemon wallet payouts are sent from (its /wallet/NAME endpoint); empty: the default."""
    tx_fee: Literal["pool", "miners"] = "pool"
    """Who pays the transaction fee: the pool's wallet, or the recipients (subtracted equally)."""
    max_outputs: int = 1000
    """Recipients per sendmany; more accounts due go out in several transactions."""

    def check(self, key: str) -> None:
        if not 0 <= self.fee_percent <= 100:
            raise ConfigError(f"{key}.fee_percent", "must be 0..100")
        for name in ("minimum", "approval_threshold"):
            try:
                units = to_units(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"{key}.{name}", str(exc)) from None
            if units < 0:
                raise ConfigError(f"{key}.{name}", "must be >= 0")
        if to_units(self.minimum) == 0:
            raise ConfigError(f"{key}.minimum", "must be more than 0")
        if self.mode == "pool" and self.scheme == "solo":
            raise ConfigError(f"{key}.scheme", 'solo pays the finder of a block: use it with mode = "solo"')
        if self.pplns_factor <= 0:
            raise ConfigError(f"{key}.pplns_factor", "must be positive")
        if self.maturity < 0:
            raise ConfigError(f"{key}.maturity", "must be >= 0 (0: the coin's own coinbase maturity)")
        if self.confirmations < 1:
            raise ConfigError(f"{key}.confirmations", "must be at least 1")
        if self.pps_period_s < 60 or self.pps_settle_s < 0 or self.fpps_blocks < 1:
            raise ConfigError(f"{key}.pps_period_s", "must be >= 60 s (pps_settle_s >= 0, fpps_blocks >= 1)")
        if not 1 <= self.max_outputs <= 2500:
            raise ConfigError(f"{key}.max_outputs", "must be 1..2500 (a standard transaction's size)")
        if self.rpc_url and not self.rpc_url.startswith(("http://", "https://")):
            raise ConfigError(f"{key}.rpc_url", "must be an http:// or https:// URL")

    def maturity_of(self, symbol: str) -> int:
        """Confirmations a block of `symbol` needs before its reward is payable: `maturity`, or
        the coin's own coinbase maturity on `network` (mining.coins) when that is 0."""
        if self.maturity:
            return self.maturity
        try:
            return coin_by_symbol(symbol, self.network).coinbase_maturity
        except ValueError:
            known = f"Qscrypt does not know {symbol}'s coinbase maturity on {self.network}"
            raise ConfigError(f"payouts.coins.{symbol}.maturity", f"set it: {known}") from None

    @property
    def minimum_units(self) -> int:
        return to_units(self.minimum)

    @property
    def approval_units(self) -> int:
        return to_units(self.approval_threshold)

    def subsidy(self, height: int) -> int:
        """The block subsidy at `height` in smallest units."""
        interval = self.halving_interval or _HALVING[self.network]
        halvings = height // interval
        return 0 if halvings >= 64 else to_units(self.initial_subsidy) >> halvings


@dataclass(frozen=True)
class PayoutsConfig:
    coins: dict[str, CoinPayouts] = field(default_factory=dict)
    every_s: float = 0.0
    """`qscrypt payouts run --every` default: seconds between runs; 0: run once."""

    def __post_init__(self) -> None:
        for symbol, coin in self.coins.items():
            if symbol != symbol.upper() or not symbol.isalnum():
                raise ConfigError(f"payouts.coins.{symbol}", "coin symbols are upper case letters and digits")
            coin.check(f"payouts.coins.{symbol}")
            coin.maturity_of(symbol)  # a coin without a known maturity must set one
            if symbol != "LTC" and coin.scheme in ("pps", "fpps") and not coin.halving_interval:
                # The default subsidy schedule is Litecoin's: PPS would price a DOGE share in LTC.
                raise ConfigError(
                    f"payouts.coins.{symbol}.halving_interval",
                    f"{coin.scheme} prices shares by the block subsidy, and the default schedule is "
                    f"Litecoin's: set initial_subsidy and halving_interval for {symbol} (Dogecoin since "
                    "block 600,000: initial_subsidy = 10000, halving_interval = 1000000000)",
                )
        if self.every_s < 0:
            raise ConfigError("payouts.every_s", "must be >= 0")

    def coin(self, symbol: str) -> CoinPayouts:
        try:
            return self.coins[symbol]
        except KeyError:
            raise ConfigError("payouts.coins", f"no [payouts.coins.{symbol}] table") from None
