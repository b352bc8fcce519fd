"""A local HTTP server that answers like the external APIs, from tests/fixtures.

Every source's base URL points at a path prefix of this one server (`/coingecko`, `/binance`,
...). A test can script a route: a queue of replies (status, body, headers, delay) served in
order, the last one repeating, so 429-then-200, timeouts and garbage all travel the real
aiohttp client path.
"""

import asyncio
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from aggregator.config import DOGECOIN, LITECOIN, AggregatorConfig, CoinConfig, PoolConfig, SourceConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def fixture_json(relative: str) -> Any:
    return json.loads(fixture(relative))


@dataclass(frozen=True)
class Reply:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content_type: str = "application/json"

    @classmethod
    def file(cls, relative: str, status: int = 200, **kwargs: Any) -> "Reply":
        content_type = "text/html" if relative.endswith(".html") else "application/json"
        return cls(fixture(relative), status, content_type=content_type, **kwargs)


# Route key → the fixture it serves unless scripted otherwise. The key is the path, plus
# "?symbol=..." for Binance and "#method" for JSON-RPC posts.
DEFAULT_ROUTES = {
    "/coingecko/api/v3/simple/price": "coingecko/simple_price.json",
    "/binance/api/v3/ticker/price?symbol=LTCUSDT": "binance/ticker_LTCUSDT.json",
    "/binance/api/v3/ticker/price?symbol=DOGEUSDT": "binance/ticker_DOGEUSDT.json",
    "/whattomine/coins/4.json": "whattomine/coin_4.json",
    "/whattomine/coins/6.json": "whattomine/coin_6.json",
    "/minerstat/v2/coins": "minerstat/coins.json",
    "/minerstat/v2/hardware": "minerstat/hardware_asic.json",
    "/hashrate_no/v1/asicEstimates": "hashrate_no/asic_estimates.json",
    "/2miners-ltc/api/stats": "twominers/ltc_stats.json",
    "/nanopool/v1/etc/pool/hashrate": "nanopool/etc_pool_hashrate.json",
    "/nanopool/v1/etc/pool/activeminers": "nanopool/etc_pool_activeminers.json",
    "/daemon-ltc/#getmininginfo": "daemon/getmininginfo.json",
    "/daemon-ltc/#getblocktemplate": "daemon/getblocktemplate.json",
}


class FixtureServer:
    def __init__(self) -> None:
        self._scripts: dict[str, list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        self.requests: dict[str, list[web.Request]] = defaultdict(list)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")

    async def start(self) -> None:
        await self._server.start_server()

    async def close(self) -> None:
        await self._server.close()

    def url(self, prefix: str) -> str:
        return str(self._server.make_url(prefix))

    def script(self, key: str, *replies: Reply) -> None:
        """Serve `replies` in order on `key` (the last one for every later request)."""
        self._scripts[key] = list(replies)

    def reset(self, key: str) -> None:
        self._scripts.pop(key, None)

    @staticmethod
    async def key_of(request: web.Request) -> str:
        if request.method == "POST":
            body = await request.json()
            return f"{request.path}#{body.get('method')}"
        symbol = request.query.get("symbol")
        return f"{request.path}?symbol={symbol}" if symbol else request.path

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        key = await self.key_of(request)
        self.hits[key] += 1
        self.requests[key].append(request)
        script = self._scripts.get(key)
        if script:
            reply = script.pop(0) if len(script) > 1 else script[0]
        elif key in DEFAULT_ROUTES:
            reply = Reply.file(DEFAULT_ROUTES[key])
        else:
            reply = Reply(b'{"error": "not found"}', 404)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return web.Response(
            body=reply.body, status=reply.status, headers=reply.headers, content_type=reply.content_type
        )


# The fixtures carry the time they stand for (2026-11-23): far enough back to count as stale
# under a production stale_after_s, so the runs over them allow ten years.
FIXTURE_STALE_AFTER_S = 10 * 365 * 86400.0
FAST = {"timeout_s": 2.0, "retries": 2, "backoff_s": 0.01, "min_interval_s": 0.0}
ETC = CoinConfig(symbol="ETC", algorithm="etchash", name="Ethereum Classic")
ENVIRON = {"QSCRYPT_COINGECKO_API_KEY": "cg-test-key", "QSCRYPT_HASHRATE_NO_API_KEY": "hn-test-key"}


def fixture_config(server: FixtureServer, **overrides: Any) -> AggregatorConfig:
    """Every source on, each aimed at its prefix of `server`; fast timeouts and backoff."""

    def source(prefix: str = "", **extra: Any) -> SourceConfig:
        return SourceConfig(base_url=server.url(prefix) if prefix else "", **{**FAST, **extra})

    config = AggregatorConfig(
        coins=(
            replace(LITECOIN, daemon_url=server.url("/daemon-ltc/"), daemon_user="rpc", daemon_password="pw"),
            DOGECOIN,
            ETC,
        ),
        pools=(
            PoolConfig(name="2miners-ltc", coins=("LTC",), fee_percent=1.0, api="twominers",
                       api_url=server.url("/2miners-ltc"), stratum_url="stratum+tcp://ltc.2miners.com:8080"),
            PoolConfig(name="merged-ltc-doge", coins=("LTC", "DOGE"), fee_percent=2.0,
                       stratum_url="stratum+tcp://merged.example:3333"),
            PoolConfig(name="nanopool-etc", coins=("ETC",), algorithm="etchash", fee_percent=1.0,
                       api="nanopool", api_url=server.url("/nanopool"), api_coin="etc", hashrate_unit_hs=1e6),
        ),
        coingecko=source("/coingecko"),
        binance=source("/binance"),
        whattomine=source("/whattomine"),
        minerstat=source("/minerstat", api_key="ms-test-key"),
        minerstat_hardware=source("/minerstat"),
        hashrate_no=source("/hashrate_no"),
        daemon=source(),
        twominers=source(),
        nanopool=source(),
        stale_after_s=FIXTURE_STALE_AFTER_S,
    )  # fmt: skip
    return replace(config, **overrides)
