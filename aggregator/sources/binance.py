"""Binance spot prices: GET /api/v3/ticker/price?symbol=LTCUSDT, one request per pair.

Answer: {"symbol": "LTCUSDT", "price": "84.15000000"} (the price is a string); an unknown pair is
HTTP 400 {"code": -1121, "msg": "Invalid symbol."}. The pairs are quoted in USDT, a stablecoin
taken here as one US dollar. Binance sends 429 with Retry-After when its weight limit is hit
(the HTTP client honours it) and bans IPs that keep going, so requests are spaced by the source's
min_interval_s.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregator.config import CoinConfig, SourceConfig
from aggregator.http import FetchError, HttpClient
from aggregator.model import CoinId, Observation, ParseError, SourceData, SourceKind
from aggregator.parsing import expect_dict, positive
from aggregator.sources.base import utcnow

DEFAULT_BASE_URL = "https://api.binance.com"


def parse_ticker_price(
    payload: Any, coin: CoinConfig, observed_at: datetime, source: str = "binance"
) -> Observation:
    body = expect_dict(payload, "binance ticker/price")
    if "code" in body and "msg" in body:
        raise ParseError(f"binance error {body['code']}: {body['msg']}")
    if body.get("symbol") != coin.binance_symbol:
        raise ParseError(f"binance: asked for {coin.binance_symbol}, got symbol {body.get('symbol')!r}")
    price = positive(body.get("price"))
    if price is None:
        raise ParseError(f"binance {coin.binance_symbol}: no usable price ({body.get('price')!r})")
    return Observation(
        source, "coin", str(CoinId.of(coin.symbol, coin.algorithm)), "price_usd", price, observed_at
    )


@dataclass
class Binance:
    config: SourceConfig
    coins: tuple[CoinConfig, ...]
    name: str = "binance"
    kind: SourceKind = "price"
    authoritative: bool = False

    async def fetch(self, http: HttpClient) -> SourceData:
        wanted = [c for c in self.coins if c.binance_symbol]
        answers = await asyncio.gather(*(self._one(http, c) for c in wanted), return_exceptions=True)
        observations: list[Observation] = []
        problems: list[str] = []
        for coin, answer in zip(wanted, answers, strict=True):
            if isinstance(answer, Observation):
                observations.append(answer)
            elif isinstance(answer, FetchError | ParseError):
                problems.append(f"{coin.binance_symbol}: {answer}")
            else:
                raise answer
        if not observations:
            raise ParseError(f"binance: no usable price ({'; '.join(problems)})")
        return SourceData(self.name, self.kind, tuple(observations), warnings=tuple(problems))

    async def _one(self, http: HttpClient, coin: CoinConfig) -> Observation:
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        payload = await http.get_json(f"{base}/api/v3/ticker/price", params={"symbol": coin.binance_symbol})
        return parse_ticker_price(payload, coin, utcnow(), self.name)
