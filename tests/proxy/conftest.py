"""Proxy fixtures: real test pools on loopback and a proxy built from a real ProxyConfig."""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.app import Proxy
from proxy.config import (
    FailoverConfig,
    LimitsConfig,
    ListenConfig,
    ProxyConfig,
    UpstreamConfig,
    VardiffConfig,
)
from tests.stratum_peers import PoolServer, ScriptedMiner

ProxyFactory = Callable[..., Awaitable[Proxy]]


def pool_upstream(pool: PoolServer, name: str, priority: int = 0) -> UpstreamConfig:
    return UpstreamConfig(name=name, url=pool.url, user=f"acct.{name}", priority=priority)


def proxy_config(upstreams: list[UpstreamConfig], spill_dir: Path, **overrides: object) -> ProxyConfig:
    config = ProxyConfig(
        listen=ListenConfig(host="127.0.0.1", port=0),
        limits=LimitsConfig(),
        vardiff=VardiffConfig(initial=0.001, minimum=0.0001, maximum=1000.0),
        failover=FailoverConfig(no_job_timeout_s=5.0, retry_backoff_s=0.5, retry_backoff_max_s=2.0,
                                grace_s=5.0),
        upstreams=upstreams,
        metrics_port=None,
        spill_dir=spill_dir,
    )
    return replace(config, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def pool() -> AsyncIterator[PoolServer]:
    server = PoolServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_proxy(tmp_path: Path) -> AsyncIterator[ProxyFactory]:
    started: list[Proxy] = []

    async def factory(upstreams: list[UpstreamConfig], dsn: str | None = None, ready: bool = True,
                      **overrides: object) -> Proxy:
        proxy = Proxy(proxy_config(upstreams, tmp_path / "spill", **overrides), dsn)
        await proxy.start()
        started.append(proxy)
        if ready:
            await wait_for(lambda: proxy.router.active is not None, "an upstream to become active")
        return proxy

    yield factory
    for proxy in started:
        await proxy.close()


@pytest.fixture
async def miners() -> AsyncIterator[Callable[[int], Awaitable[ScriptedMiner]]]:
    opened: list[ScriptedMiner] = []

    async def connect(port: int) -> ScriptedMiner:
        miner = await ScriptedMiner("127.0.0.1", port).connect()
        opened.append(miner)
        return miner

    yield connect
    for miner in opened:
        await miner.close()


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
