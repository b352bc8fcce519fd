"""The one interface every source implements."""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aggregator.config import SourceConfig
from aggregator.http import HttpClient
from aggregator.model import CoinId, Observation, SourceData, SourceKind
from aggregator.parsing import positive


class Source(Protocol):
    """A collector: `fetch` asks its API (through `http`, which carries this source's timeout,
    retry and rate-limit settings) and returns what it parsed; any failure raises."""

    name: str
    """Unique per run; stamps every observation and labels the metrics ("coingecko", "daemon:LTC")."""
    kind: SourceKind
    config: SourceConfig
    authoritative: bool
    """True for a coin's own daemon: its network values win over the median of the others."""

    async def fetch(self, http: HttpClient) -> SourceData: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_unix(seconds: float | None) -> datetime | None:
    """A source's own timestamp; None when absent or not plausible (0, negative, far future)."""
    if seconds is None or seconds <= 0:
        return None
    if seconds > 1e11:  # milliseconds, as 2Miners' `now`
        seconds /= 1000.0
    try:
        when = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return when if when.year < 2200 else None


def coin_fields(source: str, coin_id: CoinId, entry: Mapping[str, Any], fields: Mapping[str, str],
                at: datetime, observations: list[Observation], warnings: list[str]) -> None:
    """One observation per positive field of a coin entry; a missing or unusable one is a warning."""
    for field_name, quantity in fields.items():
        value = positive(entry.get(field_name))
        if value is None:
            warnings.append(f"{coin_id}: no usable {field_name} ({entry.get(field_name)!r})")
            continue
        observations.append(Observation(source, "coin", str(coin_id), quantity, value, at))
