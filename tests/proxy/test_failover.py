"""Failover between real pools: killed, silent, recovering; miners stay connected."""

import asyncio
import time

from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer


async def _two_pools() -> tuple[PoolServer, PoolServer]:
    a, b = PoolServer(), PoolServer()
    await a.start()
    await b.start()
    return a, b


async def test_killed_pool_moves_miners_with_set_extranonce(make_proxy, miners) -> None:
    a, b = await _two_pools()
    try:
        proxy = await make_proxy([pool_upstream(a, "a", priority=0), pool_upstream(b, "b", priority=1)])
        await wait_for(lambda: proxy.upstream("b").healthy, "hot standby b")
        assert proxy.router.active == "a"
        miner = await miners(proxy.ports["tcp"])
        await miner.subscribe(extranonce=True)
        await miner.authorize("w1", "d=0.001")
        assert (await miner.mine_one("w1")).result is True
        old_extranonce1 = miner.extranonce1

        killed_at = time.monotonic()
        await a.stop()
        await wait_for(lambda: proxy.router.active == "b", "failover to b")
        moved_after = time.monotonic() - killed_at
        assert moved_after < 3.0
        await wait_for(lambda: miner.extranonce1 != old_extranonce1, "mining.set_extranonce")
        assert miner.extranonce1[:4] == proxy.upstream("b").extranonce1
        assert not miner.closed.is_set()  # the miner stayed connected through the failover
        miner.jobs.clear()
        assert (await miner.mine_one("w1")).result is True
        await wait_for(lambda: any(s.accepted for s in b.submissions), "a share at pool b")
        assert proxy.metrics.failovers._value.get() == 1
    finally:
        await a.stop()
        await b.stop()


async def test_miner_without_extranonce_subscribe_gets_reconnect(make_proxy, miners) -> None:
    a, b = await _two_pools()
    try:
        proxy = await make_proxy([pool_upstream(a, "a", priority=0), pool_upstream(b, "b", priority=1)])
        await wait_for(lambda: proxy.upstream("b").healthy, "hot standby b")
        miner = await miners(proxy.ports["tcp"])
        await miner.subscribe(extranonce=False)
        await miner.authorize("w2")
        await miner.wait_job()
        await a.stop()
        await wait_for(lambda: any(n.method == "client.reconnect" for n in miner.notifications),
                       "client.reconnect")
        await asyncio.wait_for(miner.closed.wait(), 5)
        again = await miners(proxy.ports["tcp"])
        await again.subscribe()
        assert again.extranonce1[:4] == proxy.upstream("b").extranonce1
    finally:
        await a.stop()
        await b.stop()


async def test_silent_pool_fails_over_and_preferred_pool_is_taken_back(make_proxy, miners) -> None:
    a, b = await _two_pools()
    try:
        proxy = await make_proxy([pool_upstream(a, "a", priority=0), pool_upstream(b, "b", priority=1)])
        await wait_for(lambda: proxy.upstream("b").healthy, "hot standby b")
        miner = await miners(proxy.ports["tcp"])
        await miner.subscribe()
        await miner.authorize("w3")
        await miner.wait_job()
        a.silent = True  # connected, but no new jobs: no_job_timeout_s is 5 s in these tests
        await wait_for(lambda: proxy.router.active == "b", "failover from a silent pool", timeout=15)
        assert not miner.closed.is_set()
        a.silent = False
        # The proxy dropped the silent session; the pool answers again on reconnect.
        await wait_for(lambda: proxy.router.active == "a", "fallback to the preferred pool", timeout=15)
        # The miner hears of it by mining.set_extranonce, just after the route moved.
        await wait_for(lambda: miner.extranonce1[:4] == proxy.upstream("a").extranonce1,
                       "the miner moved to the preferred pool's extranonce", timeout=5)
    finally:
        await a.stop()
        await b.stop()


async def test_small_extranonce2_opens_more_upstream_sessions(make_proxy, miners) -> None:
    # extranonce2_size 2 leaves no room for a prefix beside the miner's 2 bytes: one miner per
    # upstream session, so the proxy must open a session per miner instead of failing.
    pool = PoolServer(extranonce2_size=2)
    await pool.start()
    try:
        proxy = await make_proxy([pool_upstream(pool, "small")])
        first = await miners(proxy.ports["tcp"])
        assert (await first.subscribe()).error is None
        group = proxy.router.groups["small"]
        await wait_for(lambda: len(group.members) == 2 and all(m.healthy for m in group.members),
                       "a spare upstream session")
        second = await miners(proxy.ports["tcp"])
        assert (await second.subscribe()).error is None
        assert first.extranonce1 != second.extranonce1
        await second.authorize("w4")
        assert (await second.mine_one("w4")).result is True
    finally:
        await pool.stop()
