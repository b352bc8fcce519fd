"""Fixtures for the aggregator: the fixture API server, a config aimed at it, a clean database."""

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.aggregator.fixture_server import FixtureServer


@pytest.fixture
async def fixture_server() -> AsyncIterator[FixtureServer]:
    server = FixtureServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the module's database, emptied of aggregator data before each test."""
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    await pool.execute("TRUNCATE coins, pools, hardware, source_observations, source_status CASCADE")
    yield pool
    await pool.close()
