"""WhatToMine network data: GET /coins/<id>.json per coin (4 = Litecoin, 6 = Dogecoin).

One coin's answer: {"id": 4, "tag": "LTC", "algorithm": "Scrypt", "block_time": "150.0",
"block_reward": 6.25, "last_block": 2790000, "difficulty": 89123456.1, "nethash": 2551...,
"exchange_rate": 0.00088, "exchange_rate_curr": "BTC", "timestamp": 1732400000, ...}.
`block_time` comes as a string; `exchange_rate` is in BTC, so no USD price is taken from here.
/coins.json (the GPU list) wraps the same objects in {"coins": {"Name": {...}}}; both shapes parse.
"""

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregator.config import CoinConfig, SourceConfig
from aggregator.http import FetchError, HttpClient
from aggregator.model import CoinId, Observation, ParseError, SourceData, SourceKind
from aggregator.parsing import expect_dict, positive
from aggregator.sources.base import coin_fields, from_unix, utcnow

DEFAULT_BASE_URL = "https://whattomine.com"

# WhatToMine field → (our quantity); units already match (H/s, seconds, coins per block).
_FIELDS = {
    "difficulty": "difficulty",
    "block_reward": "block_reward",
    "block_time": "block_time_s",
    "nethash": "network_hashrate_hs",
    "last_block": "height",
}


def parse_coins(
    payload: Any, coins: Iterable[CoinConfig], observed_at: datetime, source: str = "whattomine"
) -> SourceData:
    """Observations for the tracked `coins` found in a /coins/<id>.json or /coins.json answer."""
    body = expect_dict(payload, "whattomine")
    if "errors" in body or "error" in body:
        raise ParseError(f"whattomine error: {body.get('errors') or body.get('error')}")
    entries = body["coins"].values() if isinstance(body.get("coins"), dict) else [body]
    wanted = {CoinId.of(c.symbol, c.algorithm): c for c in coins}
    observations: list[Observation] = []
    warnings: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("tag"), str):
            warnings.append(f"entry without a tag: {str(entry)[:60]}")
            continue
        coin_id = CoinId.of(entry["tag"], str(entry.get("algorithm", "")))
        if coin_id not in wanted:
            continue
        if entry.get("lagging") is True:
            warnings.append(f"{coin_id}: WhatToMine flags its data as lagging")
        at = from_unix(positive(entry.get("timestamp"))) or observed_at
        coin_fields(source, coin_id, entry, _FIELDS, at, observations, warnings)
    if not observations:
        raise ParseError(
            f"whattomine: nothing usable for the tracked coins ({'; '.join(warnings) or 'none listed'})"
        )
    return SourceData(source, "network", tuple(observations), warnings=tuple(warnings))


@dataclass
class WhatToMine:
    config: SourceConfig
    coins: tuple[CoinConfig, ...]
    name: str = "whattomine"
    kind: SourceKind = "network"
    authoritative: bool = False

    async def fetch(self, http: HttpClient) -> SourceData:
        wanted = [c for c in self.coins if c.whattomine_id]
        answers = await asyncio.gather(*(self._one(http, c) for c in wanted), return_exceptions=True)
        observations: list[Observation] = []
        warnings: list[str] = []
        for coin, answer in zip(wanted, answers, strict=True):
            if isinstance(answer, SourceData):
                observations.extend(answer.observations)
                warnings.extend(answer.warnings)
            elif isinstance(answer, FetchError | ParseError):
                warnings.append(f"{coin.symbol}: {answer}")
            else:
                raise answer
        if not observations:
            raise ParseError(f"whattomine: no usable coin ({'; '.join(warnings)})")
        return SourceData(self.name, self.kind, tuple(observations), warnings=tuple(warnings))

    async def _one(self, http: HttpClient, coin: CoinConfig) -> SourceData:
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        payload = await http.get_json(f"{base}/coins/{coin.whattomine_id}.json")
        return parse_coins(payload, [coin], utcnow(), self.name)
