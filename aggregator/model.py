"""What sources report, in explicit units, stamped with source and time.

Every value a source yields becomes one `Observation`: a quantity about one subject (a coin, a
pool or a piece of hardware) in the unit its field name states. Parsers produce observations;
reconciliation turns observations from several sources into one value per quantity.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

SubjectKind = Literal["coin", "pool", "hardware"]
SourceKind = Literal["price", "network", "pool", "hardware"]


def normalize_algorithm(name: str) -> str:
    """One spelling per algorithm across sources: "Scrypt", "scrypt", "SCRYPT" → "scrypt"."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class CoinId:
    """A coin's identity across sources: ticker and proof-of-work algorithm."""

    symbol: str
    algorithm: str

    @classmethod
    def of(cls, symbol: str, algorithm: str) -> "CoinId":
        return cls(symbol.strip().upper(), normalize_algorithm(algorithm))

    def __str__(self) -> str:
        return f"{self.symbol}/{self.algorithm}"


@dataclass(frozen=True)
class Observation:
    """One value from one source: `quantity` of `subject` was `value` at `observed_at`."""

    source: str
    subject_kind: SubjectKind
    subject: str
    """Coin: "LTC/scrypt"; pool: the pool's name; hardware: "<hardware key>/<algorithm>"."""
    quantity: str
    """The unit is part of the name. Coins: price_usd (USD per coin), difficulty (against
    Bitcoin's difficulty-1 target 0xFFFF·2^208), block_reward (coins per block, fees included
    where the source includes them), block_time_s, network_hashrate_hs (H/s), height. Pools:
    hashrate_hs, miners, workers, height, last_block_at (Unix seconds). Hardware: hashrate_hs,
    power_w."""
    value: float
    observed_at: datetime


@dataclass(frozen=True)
class HardwareInfo:
    """Descriptive data about a device, keyed like its hashrate observations."""

    key: str
    """Stable slug across sources ("antminer-l7")."""
    name: str
    brand: str
    kind: str
    """"asic", "gpu" or "cpu"."""


@dataclass(frozen=True)
class SourceData:
    """Everything one successful fetch produced."""

    source: str
    kind: SourceKind
    observations: tuple[Observation, ...]
    hardware: tuple[HardwareInfo, ...] = ()
    warnings: tuple[str, ...] = ()
    """Parts of the answer that were skipped (an entry with a null field), for the log."""


class ParseError(ValueError):
    """An answer that is not what the source documents: HTML, truncated JSON, a missing field."""


def hardware_key(name: str) -> str:
    """Slug for a device name, so one model from two sources meets under one key."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
