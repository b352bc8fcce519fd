"""A burst bigger than the hashers can take: miners' input waits unread, every share is still
answered exactly once and in order, and a new miner's handshake is not held behind the burst."""

import asyncio

from mining import stratum
from proxy.config import LimitsConfig
from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer

SENDERS = 64
SHARES_EACH = 250  # 16,000 shares (under the 256 a miner may have in flight), far past the 1,152 one
# hasher may hold and have queued: ~0.4 s of one hasher's work, so the burst outlasts a handshake


async def test_a_burst_is_held_back_answered_in_full_and_handshakes_pass(
        pool: PoolServer, make_proxy, miners) -> None:
    # Pipelining this much would trip the rate limit and the invalid-share ban: not the subject here.
    limits = LimitsConfig(message_burst=10_000, ban_min_shares=1_000_000)
    proxy = await make_proxy([pool_upstream(pool, "p1")], hash_processes=1, limits=limits)
    flooders = []
    for index in range(SENDERS):
        miner = await miners(proxy.ports["tcp"])
        await miner.subscribe()
        assert (await miner.authorize(f"w{index}", "d=0.001")).result is True
        flooders.append((miner, await miner.wait_job()))

    en2 = b"\x00\x01"
    calls = [asyncio.ensure_future(miner.call("mining.submit", [
        f"w{index}", mjob.job.job_id, en2.hex(), f"{mjob.job.ntime:08x}", f"{nonce:08x}"], timeout=60))
        for index, (miner, mjob) in enumerate(flooders) for nonce in range(SHARES_EACH)]
    await wait_for(lambda: proxy.server.holds > 0, "a miner's input to be held back")

    # The burst is still hashing: a newcomer's subscribe and authorize go through meanwhile.
    newcomer = await miners(proxy.ports["tcp"])
    assert (await newcomer.subscribe()).error is None
    assert (await newcomer.authorize("late", "d=0.001")).result is True
    unanswered = sum(not call.done() for call in calls)
    assert unanswered > 0, "the burst had already been answered: the test proved nothing"

    answers = await asyncio.gather(*calls)
    assert len(answers) == SENDERS * SHARES_EACH
    for answer in answers:  # each one hashed and judged: accepted, or too little work
        assert answer.result is True or answer.error[0] == stratum.LOW_DIFFICULTY
    total = sum(s.accepted + sum(s.rejected.values()) for s in proxy.accounting.workers.values())
    assert total == SENDERS * SHARES_EACH
    assert all(not miner.closed.is_set() for miner, _ in flooders)
