"""The API over real HTTP on loopback, against embedded PostgreSQL filled by a real aggregator
run over the recorded fixtures (tests/aggregator's fixture server)."""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aggregator import run_once
from api.app import create_app
from api.config import ApiConfig
from tests.aggregator.fixture_server import ENVIRON, FixtureServer, fixture_config

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# No rate limit unless a test asks for one: the suite makes many requests from one address.
CONFIG = ApiConfig(token=TOKEN, rate_limit_per_s=0)


@dataclass
class FakeClock:
    """The decider's clock, moved by hand so dwell and staleness are tested without waiting."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
async def market_dsn(pg_dsn: str) -> str:
    """The module's database after one aggregator run over the fixture APIs."""
    server = FixtureServer()
    await server.start()
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        report = await run_once(fixture_config(server), pool, environ=ENVIRON)
        assert report.ok, report.summary()
    finally:
        await pool.close()
        await server.close()
    return pg_dsn


ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """Start the API on a loopback port: `await make_client(dsn, config=..., clock=...)`."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(
        dsn: str,
        *,
        config: ApiConfig = CONFIG,
        clock: Callable[[], datetime] | None = None,
        run_decider: bool = False,
    ) -> TestClient[web.Request, web.Application]:
        app = create_app(config, dsn, clock=clock or FakeClock(), run_decider=run_decider)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
