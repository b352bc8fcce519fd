"""The pool upstream against a pool that behaves like the real ones: subscribe answer, difficulty
and job in one write, before the authorize answer (foundation-v2-litecoin, NOMP).

These were the extranonce race of issue 14: the job that came with the subscribe answer was dropped
(no work at start), after a pool restart the first job went out with the previous session's
extranonce1 (shares the proxy answered `true` were low difficulty at the pool), and work was
published before the pool had authorized the proxy.
"""

import asyncio
import time

from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer


async def test_the_job_sent_with_the_subscribe_answer_is_mined_at_once(make_proxy, miners) -> None:
    async with PoolServer(job_interval_s=None) as pool:  # the job of the subscribe answer is the only one
        started = time.monotonic()
        proxy = await make_proxy([pool_upstream(pool, "a")])
        miner = await miners(proxy.ports["tcp"])
        await miner.subscribe()
        await miner.authorize("w1")
        mjob = await miner.wait_job(timeout=5)
        print(f"first job at the miner {time.monotonic() - started:.2f} s after the proxy started")
        assert proxy.upstream("a").work is not None
        assert mjob.job.prevhash == pool.current.prevhash
        assert (await miner.mine_one("w1")).result is True
        await pool.wait_for(lambda: len(pool.accepted()) == 1)


async def test_no_work_is_published_before_the_pool_authorizes_and_early_miners_wait_for_it(
        make_proxy, miners) -> None:
    async with PoolServer(authorize_delay_s=1.5) as pool:
        proxy = await make_proxy([pool_upstream(pool, "a")], ready=False)
        upstream = proxy.upstream("a")
        assert upstream is not None
        early = await miners(proxy.ports["tcp"])
        subscribing = asyncio.create_task(early.subscribe())  # before the proxy has any work
        await wait_for(lambda: pool.authorized_users, "the authorize request")
        await asyncio.sleep(1.0)  # the job is in, the authorize answer is not
        assert upstream.work is None and proxy.router.active is None
        assert not subscribing.done()  # held, not refused: cpuminer would wait 30 s to retry
        await wait_for(lambda: proxy.router.active == "a", "work once authorized", timeout=5)
        assert upstream.work is not None and upstream.work.extranonce1 == pool.sessions[-1].extranonce1
        answer = await asyncio.wait_for(subscribing, 5)
        assert answer.error is None and early.extranonce1[:4] == upstream.work.extranonce1
        await early.authorize("early")
        assert (await early.mine_one("early")).result is True


async def test_after_every_pool_restart_forwarded_shares_carry_the_new_sessions_extranonce(
        make_proxy, miners) -> None:
    pool = PoolServer()
    await pool.start()
    try:
        proxy = await make_proxy([pool_upstream(pool, "a")])
        upstream = proxy.upstream("a")
        assert upstream is not None
        miner = await miners(proxy.ports["tcp"])
        await miner.subscribe(extranonce=True)
        await miner.authorize("w1")
        assert (await miner.mine_one("w1")).result is True
        for restart in range(3):
            before, received = len(pool.sessions), len(miner.received)
            port = pool.port
            await pool.stop()
            await wait_for(lambda: upstream.work is None, "the proxy to see the pool gone")
            restarted_at = time.monotonic()
            await pool.start(port=port)
            # The very first job after the restart, mined as it comes: it must already belong to
            # the new session (the move to its extranonce1 comes first).
            mjob = await miner.next_job(received)
            submitted = len(pool.submissions)
            en2 = bytes(miner.extranonce2_size)
            nonce = await asyncio.to_thread(miner.find_share, mjob, en2)
            assert (await miner.submit("w1", mjob, en2, nonce)).result is True
            await pool.wait_for(lambda n=submitted: len(pool.submissions) > n)
            first = pool.submissions[submitted]
            print(f"restart {restart + 1}: first share accepted by the pool "
                  f"{time.monotonic() - restarted_at:.2f} s after it came back")
            assert len(pool.sessions) == before + 1
            assert first.accepted, first
            assert first.extranonce1 == pool.sessions[-1].extranonce1 == miner.extranonce1[:4]
        assert all(s.accepted for s in pool.submissions), pool.submissions
    finally:
        await pool.stop()
