"""The shared HTTP path and each source's fetch, against the local fixture server."""

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest

from aggregator.config import SourceConfig
from aggregator.http import FetchError, HttpClient, RateLimiter, retry_after_seconds
from aggregator.model import ParseError
from aggregator.sources import build_sources
from aggregator.sources.binance import Binance
from aggregator.sources.daemon import Daemon
from tests.aggregator.fixture_server import ENVIRON, FAST, FixtureServer, Reply, fixture_config

PRICE = "/coingecko/api/v3/simple/price"


async def get(server: FixtureServer, path: str, **config: float | int) -> object:
    async with aiohttp.ClientSession() as session:
        client = HttpClient(session, "test", SourceConfig(**{**FAST, **config}), rng=lambda: 0.5)
        return await client.get_json(server.url(path))


async def test_a_5xx_is_retried_until_it_succeeds(fixture_server: FixtureServer) -> None:
    fixture_server.script(PRICE, Reply(b"oops", 500), Reply.file("common/cloudflare_502.html", 502),
                          Reply.file("coingecko/simple_price.json"))  # fmt: skip
    body = await get(fixture_server, PRICE)
    assert body == {"dogecoin": {"usd": 0.38, "last_updated_at": 1795399987},
                    "litecoin": {"usd": 84.0, "last_updated_at": 1795399991}}  # fmt: skip
    assert fixture_server.hits[PRICE] == 3


async def test_retries_are_bounded_and_the_error_says_what_happened(fixture_server: FixtureServer) -> None:
    fixture_server.script(PRICE, Reply(b'{"error": "maintenance"}', 503))
    with pytest.raises(
        FetchError, match=r'HTTP 503 \(\{"error": "maintenance"\}\) \(after 3 attempts\)'
    ) as err:
        await get(fixture_server, PRICE)
    assert err.value.status == 503
    assert fixture_server.hits[PRICE] == 3


async def test_429_waits_for_retry_after(fixture_server: FixtureServer) -> None:
    fixture_server.script(PRICE, Reply.file("coingecko/rate_limited.json", 429, headers={"Retry-After": "1"}),
                          Reply.file("coingecko/simple_price.json"))  # fmt: skip
    began = time.monotonic()
    await get(fixture_server, PRICE, backoff_s=0.01)
    assert time.monotonic() - began >= 0.95  # the header's second, not the 10 ms backoff
    assert fixture_server.hits[PRICE] == 2


async def test_a_retry_after_beyond_the_limit_fails_at_once(fixture_server: FixtureServer) -> None:
    fixture_server.script(
        PRICE, Reply.file("coingecko/rate_limited.json", 429, headers={"Retry-After": "3600"})
    )
    with pytest.raises(FetchError, match="Retry-After 3600 s is longer than max_retry_after_s"):
        await get(fixture_server, PRICE, max_retry_after_s=60.0)
    assert fixture_server.hits[PRICE] == 1


async def test_a_slow_answer_times_out_and_is_retried(fixture_server: FixtureServer) -> None:
    fixture_server.script(PRICE, Reply.file("coingecko/simple_price.json", delay_s=1.0))
    with pytest.raises(FetchError, match=r"timed out after 0.2 s \(after 2 attempts\)"):
        await get(fixture_server, PRICE, timeout_s=0.2, retries=1)
    assert fixture_server.hits[PRICE] == 2


async def test_client_errors_are_not_retried(fixture_server: FixtureServer) -> None:
    with pytest.raises(FetchError, match="HTTP 404") as err:
        await get(fixture_server, "/nowhere")
    assert err.value.status == 404 and err.value.attempts == 1
    assert fixture_server.hits["/nowhere"] == 1


async def test_an_html_page_behind_a_200_is_a_parse_error(fixture_server: FixtureServer) -> None:
    fixture_server.script(PRICE, Reply.file("common/maintenance_200.html"))
    with pytest.raises(ParseError, match="HTML page where JSON was expected: 'Down for maintenance'"):
        await get(fixture_server, PRICE)


async def test_connection_refused_is_a_fetch_error() -> None:
    async with aiohttp.ClientSession() as session:
        client = HttpClient(session, "test", SourceConfig(**{**FAST, "retries": 1}))
        with pytest.raises(FetchError, match=r"ClientConnectorError.*after 2 attempts"):
            await client.get_json("http://127.0.0.1:9/")


async def test_rate_limiter_spaces_request_starts() -> None:
    limiter = RateLimiter(0.05)
    began = time.monotonic()
    await asyncio.gather(*(limiter.wait() for _ in range(5)))
    assert time.monotonic() - began >= 0.19  # four gaps of 50 ms after the first request


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Mon, 23 Nov 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Mon, 23 Nov 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


async def test_api_keys_travel_in_headers_and_query_and_never_into_errors(
    fixture_server: FixtureServer,
) -> None:
    config = fixture_config(fixture_server)
    sources = {s.name: s for s in build_sources(config, ENVIRON)}
    fixture_server.script("/hashrate_no/v1/asicEstimates", Reply(b"", 500))
    async with aiohttp.ClientSession() as session:
        await sources["coingecko"].fetch(HttpClient(session, "coingecko", config.coingecko))
        await sources["minerstat"].fetch(HttpClient(session, "minerstat", config.minerstat))
        await sources["minerstat_hardware"].fetch(HttpClient(session, "mh", config.minerstat_hardware))
        with pytest.raises(FetchError) as err:
            await sources["hashrate_no"].fetch(HttpClient(session, "hashrate_no", config.hashrate_no))
    assert fixture_server.requests[PRICE][0].headers["x-cg-demo-api-key"] == "cg-test-key"
    assert fixture_server.requests["/minerstat/v2/coins"][0].headers["X-API-Key"] == "ms-test-key"
    assert fixture_server.requests["/minerstat/v2/coins"][0].query["list"] == "LTC,DOGE,ETC"
    # The hardware endpoint shares the coins endpoint's key.
    assert fixture_server.requests["/minerstat/v2/hardware"][0].headers["X-API-Key"] == "ms-test-key"
    assert fixture_server.requests["/hashrate_no/v1/asicEstimates"][0].query["apiKey"] == "hn-test-key"
    assert "hn-test-key" not in str(err.value)


async def test_binance_keeps_the_pairs_that_answered(fixture_server: FixtureServer) -> None:
    config = fixture_config(fixture_server)
    fixture_server.script(
        "/binance/api/v3/ticker/price?symbol=DOGEUSDT", Reply.file("binance/invalid_symbol.json", 400)
    )
    async with aiohttp.ClientSession() as session:
        data = await Binance(config.binance, config.coins).fetch(
            HttpClient(session, "binance", config.binance)
        )
    assert [(o.subject, o.value) for o in data.observations] == [("LTC/scrypt", 84.1)]
    url = fixture_server.url("/binance/api/v3/ticker/price")
    assert data.warnings == (f'DOGEUSDT: GET {url}: HTTP 400 ({{"code":-1121,"msg":"Invalid symbol."}})',)
    assert fixture_server.hits["/binance/api/v3/ticker/price?symbol=DOGEUSDT"] == 1  # a 400 is final


async def test_daemon_without_a_template_still_gives_difficulty(fixture_server: FixtureServer) -> None:
    config = fixture_config(fixture_server)
    fixture_server.script(
        "/daemon-ltc/#getblocktemplate", Reply.file("daemon/getblocktemplate_initial_sync.json", 500)
    )
    daemon = Daemon(config.daemon, config.coins[0])
    async with aiohttp.ClientSession() as session:
        data = await daemon.fetch(HttpClient(session, daemon.name, config.daemon))
    assert {o.quantity for o in data.observations} == {
        "difficulty",
        "network_hashrate_hs",
        "height",
        "block_time_s",
    }
    assert data.warnings == ("no block reward: getblocktemplate: RPC error -10: "
                             "Litecoin Core is in initial sync and waiting for blocks...",)  # fmt: skip
    request = fixture_server.requests["/daemon-ltc/#getmininginfo"][0]
    assert request.headers["Authorization"] == aiohttp.encode_basic_auth("rpc", "pw")
