"""CoinGecko prices: GET /api/v3/simple/price?ids=litecoin,dogecoin&vs_currencies=usd.

Answer: {"litecoin": {"usd": 84.12, "last_updated_at": 1732400000}, ...}; an unknown id is simply
absent. The keyless (demo) tier takes an optional `x-cg-demo-api-key` header; the paid tier lives
on pro-api.coingecko.com and takes `x-cg-pro-api-key`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aggregator.config import CoinConfig, SourceConfig
from aggregator.http import HttpClient
from aggregator.model import CoinId, Observation, ParseError, SourceData, SourceKind
from aggregator.parsing import expect_dict, positive
from aggregator.sources.base import from_unix, utcnow

DEFAULT_BASE_URL = "https://api.coingecko.com"


def parse_simple_price(
    payload: Any, coins: Mapping[str, CoinConfig], observed_at: datetime, source: str = "coingecko"
) -> SourceData:
    """Prices from a simple/price answer; `coins` maps CoinGecko id → coin."""
    body = expect_dict(payload, "coingecko simple/price")
    if "status" in body and not any(key in coins for key in body):
        # Errors come as {"status": {"error_code": 429, "error_message": "..."}}.
        status = body["status"]
        message = status.get("error_message") if isinstance(status, dict) else status
        raise ParseError(f"coingecko error: {message}")
    observations: list[Observation] = []
    warnings: list[str] = []
    for cg_id, coin in coins.items():
        entry = body.get(cg_id)
        if not isinstance(entry, dict):
            warnings.append(f"{cg_id}: not in the answer")
            continue
        price = positive(entry.get("usd"))
        if price is None:
            warnings.append(f"{cg_id}: no usd price ({entry.get('usd')!r})")
            continue
        at = from_unix(positive(entry.get("last_updated_at"))) or observed_at
        subject = str(CoinId.of(coin.symbol, coin.algorithm))
        observations.append(Observation(source, "coin", subject, "price_usd", price, at))
    if not observations:
        raise ParseError(f"coingecko: no usable price ({'; '.join(warnings)})")
    return SourceData(source, "price", tuple(observations), warnings=tuple(warnings))


@dataclass
class CoinGecko:
    config: SourceConfig
    coins: tuple[CoinConfig, ...]
    api_key: str = ""
    name: str = "coingecko"
    kind: SourceKind = "price"
    authoritative: bool = False
    _by_id: dict[str, CoinConfig] = field(init=False)

    def __post_init__(self) -> None:
        self._by_id = {c.coingecko_id: c for c in self.coins if c.coingecko_id}

    async def fetch(self, http: HttpClient) -> SourceData:
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        headers = {}
        if self.api_key:
            header = "x-cg-pro-api-key" if "pro-api." in base else "x-cg-demo-api-key"
            headers[header] = self.api_key
        params = {
            "ids": ",".join(sorted(self._by_id)),
            "vs_currencies": "usd",
            "include_last_updated_at": "true",
        }
        payload = await http.get_json(f"{base}/api/v3/simple/price", params=params, headers=headers)
        return parse_simple_price(payload, self._by_id, utcnow(), self.name)
