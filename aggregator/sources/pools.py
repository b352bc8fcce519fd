"""Pool statistics from the pools' own APIs, one source per configured pool with an `api`.

2Miners (open-ethereum-pool lineage), GET <api_url>/api/stats:
{"hashrate": 1.2e12, "minersTotal": 312, "workersTotal": 1045, "now": 1732400012345 (ms),
 "nodes": [{"name": "ltc", "height": "2790001", "difficulty": "89123456", "networkhashps": "...",
 "avgBlockTime": "150.3", "lastBeat": "1732400010"}], "stats": {"lastBlockFound": 1732398000}};
node figures are strings. The API publishes neither fee nor payout scheme: those come from config.
2Miners runs a Litecoin pool (ltc.2miners.com).

Nanopool, GET <api_url>/v1/<coin>/pool/hashrate and /pool/activeminers: {"status": true,
"data": 1234.5} or {"status": false, "error": "..."}. Nanopool mines no scrypt coin (its coins
are Ethash/Etchash, RandomX, Equihash, KawPow, Autolykos and the like, no LTC or DOGE), so it is
off by default; it reports hashrate in a per-coin unit (MH/s for ETC), set in hashrate_unit_hs.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregator.config import PoolConfig, SourceConfig
from aggregator.http import HttpClient
from aggregator.model import Observation, ParseError, SourceData, SourceKind
from aggregator.parsing import expect_dict, number, positive
from aggregator.sources.base import from_unix, utcnow


def parse_twominers_stats(payload: Any, pool: PoolConfig, observed_at: datetime, source: str) -> SourceData:
    body = expect_dict(payload, "2miners stats")
    if "error" in body:
        raise ParseError(f"2miners error: {body['error']}")
    hashrate = number(body.get("hashrate"))
    if hashrate is None or hashrate < 0:
        raise ParseError(f"2miners stats: no usable hashrate ({body.get('hashrate')!r})")
    at = from_unix(positive(body.get("now"))) or observed_at
    values: dict[str, float | None] = {
        "hashrate_hs": hashrate * pool.hashrate_unit_hs,
        "miners": number(body.get("minersTotal")),
        "workers": number(body.get("workersTotal")),
    }
    nodes = body.get("nodes")
    if isinstance(nodes, list) and nodes and isinstance(nodes[0], dict):
        values["height"] = positive(nodes[0].get("height"))
    stats = body.get("stats")
    if isinstance(stats, dict):
        values["last_block_at"] = positive(stats.get("lastBlockFound"))
    observations = tuple(
        Observation(source, "pool", pool.name, quantity, value, at)
        for quantity, value in values.items()
        if value is not None and value >= 0
    )
    return SourceData(source, "pool", observations)


def nanopool_value(payload: Any, what: str) -> float:
    body = expect_dict(payload, f"nanopool {what}")
    if body.get("status") is not True:
        raise ParseError(f"nanopool {what}: {body.get('error') or 'status is not true'}")
    value = number(body.get("data"))
    if value is None or value < 0:
        raise ParseError(f"nanopool {what}: no usable data ({body.get('data')!r})")
    return value


def parse_nanopool(
    hashrate_payload: Any, miners_payload: Any, pool: PoolConfig, observed_at: datetime, source: str
) -> SourceData:
    hashrate = nanopool_value(hashrate_payload, "pool/hashrate") * pool.hashrate_unit_hs
    miners = nanopool_value(miners_payload, "pool/activeminers")
    return SourceData(source, "pool", (
        Observation(source, "pool", pool.name, "hashrate_hs", hashrate, observed_at),
        Observation(source, "pool", pool.name, "miners", miners, observed_at),
    ))  # fmt: skip


@dataclass
class TwoMiners:
    config: SourceConfig
    pool: PoolConfig
    name: str = ""
    kind: SourceKind = "pool"
    authoritative: bool = False

    def __post_init__(self) -> None:
        self.name = self.name or f"twominers:{self.pool.name}"

    async def fetch(self, http: HttpClient) -> SourceData:
        base = (self.config.base_url or self.pool.api_url).rstrip("/")
        payload = await http.get_json(f"{base}/api/stats")
        return parse_twominers_stats(payload, self.pool, utcnow(), self.name)


@dataclass
class Nanopool:
    config: SourceConfig
    pool: PoolConfig
    name: str = ""
    kind: SourceKind = "pool"
    authoritative: bool = False

    def __post_init__(self) -> None:
        self.name = self.name or f"nanopool:{self.pool.name}"
        if not self.pool.api_coin:
            raise ValueError(f'pool {self.pool.name}: a nanopool pool needs api_coin (e.g. "etc")')

    async def fetch(self, http: HttpClient) -> SourceData:
        base = f"{(self.config.base_url or self.pool.api_url).rstrip('/')}/v1/{self.pool.api_coin}"
        hashrate, miners = await asyncio.gather(
            http.get_json(f"{base}/pool/hashrate"), http.get_json(f"{base}/pool/activeminers")
        )
        return parse_nanopool(hashrate, miners, self.pool, utcnow(), self.name)
