"""cpuminer → the proxy → blinkhash's foundation-v2-litecoin pool → Litecoin Core (regtest).

One pool on a litecoind pair of its own for the module. The pool judges every share the proxy
forwards by itself (it rebuilds the coinbase from the extranonce1 it gave the proxy's session) and
logs its verdict with the difficulty it computed: that log is compared with what the proxy
answered, forwarded and counted.

On regtest every share the pool accepts is also a block (its network difficulty is 2^-15), so the
pool's chain moves each time and it sends clean work a second later (it polls the daemon).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.peers.support import (
    FAILOVER,
    RunningProxy,
    judge_pool_window,
    pool_upstream,
    running_proxy,
    solo_upstream,
    wait_until,
)
from tests.services.peers import CpuMiner, FoundationPool, PeerFactory, PoolPort, PoolSettings

# The pool's vardiff aims at a share every 5 s from the proxy's session, between 0.5 and 4.
FOUNDATION_POOL = PoolSettings(
    ports={"main": PoolPort(initial=1.0, minimum=0.5, maximum=4.0, target_time_s=5, retarget_time_s=20)},
    rebroadcast_s=30,
)
# ~6,500 hashes a share: three a second from cpuminer, and one in ten or more is worth the pool's.
MINER_DIFFICULTY = 0.1


def _pool_verdicts(pool: FoundationPool, since: float) -> list:
    return [s for s in pool.shares_since(since) if s.address == pool.address]


async def _verdicts_for(pool: FoundationPool, run: RunningProxy, upstream: str, since: float) -> list:
    """The pool's verdicts on the shares the proxy forwarded to it since `since`, once all are logged."""
    count = len(run.shares.forwarded(upstream, since))
    await wait_until(lambda: len(_pool_verdicts(pool, since)) >= count, 15,
                     f"the pool to log its verdict on {count} shares", pool)
    return _pool_verdicts(pool, since)


async def test_every_forwarded_share_is_accepted_by_the_pool_at_the_proxys_difficulty(
    foundation_pool: FoundationPool, peers: PeerFactory, tmp_path: Path
) -> None:
    pool = foundation_pool
    since = time.monotonic()
    async with running_proxy(tmp_path / "spill", [pool_upstream(pool)], ready=False) as run:
        # The miner connects as the proxy starts, as a rig restarted with it would.
        miner = await peers.start_cpuminer(run.url, "cpu-b.rig1", f"x,d={MINER_DIFFICULTY}")
        first_work = await miner.wait_for(lambda: miner.notifies, 120, "cpuminer's first job")
        first_share = await miner.wait_for(lambda: miner.accepted, 60, "cpuminer's first accepted share")
        await miner.wait_for(lambda: sum(f.accepted for f in run.shares.forwards) >= 12, 150,
                             "12 shares accepted by the pool")
        await miner.stop()
        await run.shares.settle()
        forwards = run.shares.forwarded("pool")
        verdicts = await _verdicts_for(pool, run, "pool", since)
        submitted = {result: run.metric("qscrypt_upstream_submits_total", upstream="pool", result=result)
                     for result in ("accepted", "rejected")}
        difficulties = sorted({f.job_difficulty for f in forwards})

    refused, stale = run.shares.refused_otherwise(), run.shares.stale()
    assert not refused, f"the proxy refused {len(refused)} of cpuminer's shares: {refused[:5]}"
    assert miner.rejected == len(stale) and miner.accepted == len(run.shares.accepted()), miner.describe()
    assert len(miner.submits) == len(miner.answers), "every share answered"
    problems, _ = judge_pool_window(forwards, verdicts)
    assert not problems, "\n".join(problems + [str(f) for f in forwards])
    assert all(f.accepted for f in forwards), [str(f) for f in forwards if not f.accepted]
    assert submitted == {"accepted": len(forwards), "rejected": 0}, submitted
    # Exactly the shares worth the pool's difficulty went there.
    assert len(run.shares.worth_forwarding("pool")) == len(forwards)
    assert all(v.difficulty is not None and v.actual is not None and v.actual >= 0.99 * v.difficulty
               for v in verdicts)
    print(f"\ncpuminer got its first job {first_work:.1f} s after it started (first accepted share at "
          f"{first_work + first_share:.1f} s); {miner.accepted} shares accepted by the proxy "
          f"({len(stale)} stale), "
          f"{len(forwards)} forwarded and accepted by the pool at difficulties {difficulties}, "
          f"{len(pool.blocks)} pool blocks so far")


async def test_shares_after_each_pool_restart_are_accepted_by_the_pool(
    foundation_pool: FoundationPool, peers: PeerFactory, tmp_path: Path
) -> None:
    pool = foundation_pool
    restarts: list[tuple[float, float]] = []  # (pool answering again, first accepted share after it)
    stops: list[float] = []
    async with running_proxy(tmp_path / "spill", [pool_upstream(pool)]) as run:
        miner = await peers.start_cpuminer(run.url, "cpu-c", f"x,d={MINER_DIFFICULTY}")
        await miner.wait_for(lambda: any(f.accepted for f in run.shares.forwards), 90,
                             "a first share accepted by the pool")
        for restart in range(1, 4):
            stops.append(time.monotonic())
            await pool.stop()
            await asyncio.sleep(1.0)
            await pool.start()
            up = time.monotonic()
            took = await wait_until(lambda up=up: any(v.accepted for v in _pool_verdicts(pool, up)), 90,
                                    f"a share accepted by the pool after restart {restart}", miner, pool)
            restarts.append((up, took))
            await wait_until(lambda up=up: len(run.shares.forwarded("pool", up)) >= 3, 90,
                             f"3 shares forwarded after restart {restart}", miner, pool)
        await miner.stop()
        await run.shares.settle()
        stops.append(time.monotonic())

    problems = []
    in_flight = []  # forwarded just before a stop: the pool died before it could answer
    for index, (up, _) in enumerate(restarts):
        down = stops[index + 1]
        forwards = [f for f in run.shares.forwarded("pool", up) if f.at < down]
        verdicts = [v for v in _pool_verdicts(pool, up) if v.at < down]
        found, lost = judge_pool_window(forwards, verdicts, down)
        in_flight += lost
        if found:
            problems.append(f"after restart {index + 1}: " + "\n  ".join(found) + "\n  forwarded:\n  " +
                            "\n  ".join(str(f) for f in forwards))
    timings = ", ".join(f"{took:.2f} s" for _, took in restarts)
    print(f"\nfirst share accepted by the pool after each restart (from the pool answering again): "
          f"{timings}; in flight when the pool was stopped: {[str(f) for f in in_flight]}")
    assert not problems, "\n".join(problems)


async def test_failover_to_solo_and_back_never_answers_true_for_a_share_the_upstream_refuses(
    foundation_pool: FoundationPool, peers: PeerFactory, tmp_path: Path
) -> None:
    pool = foundation_pool
    pair = pool.pair
    solo, _ = solo_upstream(pair, "solo", priority=1)
    failover = FAILOVER
    since = time.monotonic()
    timings = {}
    async with running_proxy(tmp_path / "spill", [pool_upstream(pool, priority=0), solo],
                             failover=failover) as run:
        await wait_until(lambda: run.proxy.router.active == "pool", 30, "the pool to be the active upstream")
        miner: CpuMiner = await peers.start_cpuminer(run.url, "cpu-d", "x,d=0.5")

        def accepted_on(upstream: str, after: float) -> int:
            return sum(f.accepted for f in run.shares.forwarded(upstream, after))

        await miner.wait_for(lambda: accepted_on("pool", since) >= 2, 90, "2 shares accepted by the pool")
        down = time.monotonic()
        await pool.stop()
        timings["failover"] = await wait_until(lambda: run.proxy.router.active == "solo", 30,
                                               "failover to solo", miner)
        timings["first solo block"] = await miner.wait_for(lambda: accepted_on("solo", down) >= 1, 60,
                                                           "a block through solo mining")
        await miner.wait_for(lambda: accepted_on("solo", down) >= 3, 60, "3 blocks through solo mining")
        await pool.start()
        up = time.monotonic()
        timings["back on the pool"] = await wait_until(lambda: run.proxy.router.active == "pool", 60,
                                                       "the proxy back on the pool", miner, pool)
        timings["first pool share"] = await miner.wait_for(lambda: accepted_on("pool", up) >= 1, 60,
                                                           "a share accepted by the pool again")
        await miner.wait_for(lambda: accepted_on("pool", up) >= 3, 90, "3 shares accepted by the pool again")
        # The metrics say what happened: one failover, one failback, no profit switch (issue 14).
        registry = run.proxy.metrics.registry
        moves = {name: registry.get_sample_value(name) for name in
                 ("qscrypt_failovers_total", "qscrypt_failbacks_total")}
        assert moves == {"qscrypt_failovers_total": 1.0, "qscrypt_failbacks_total": 1.0}, moves
        assert registry.get_sample_value("qscrypt_switches_total", {"profile": "default"}) is None
        await miner.stop()
        await run.shares.settle()
        await _verdicts_for(pool, run, "pool", up)
        verdicts = _pool_verdicts(pool, since)

    to_pool = run.shares.forwarded("pool")
    problems, lost = judge_pool_window([f for f in to_pool if f.at < down],
                                       [v for v in verdicts if v.at < down], down)
    after, _ = judge_pool_window([f for f in to_pool if f.at >= up], [v for v in verdicts if v.at >= up])
    problems += after
    refused_upstream = [str(f) for f in run.shares.forwarded("solo") if f.refused or f.outcome is None]
    print(f"\nfailover and back: {', '.join(f'{k} {v:.2f} s' for k, v in timings.items())}; forwarded "
          f"{len(run.shares.forwarded('pool'))} to the pool, {len(run.shares.forwarded('solo'))} to solo; "
          f"cpuminer reconnected {len(miner.subscribes) - 1} times, {miner.accepted} accepted, "
          f"{miner.rejected} rejected; in flight when the pool was stopped: {[str(f) for f in lost]}")
    assert not refused_upstream, "answered true, refused by litecoind:\n  " + "\n  ".join(refused_upstream)
    assert not problems, "\n".join(problems)
    for forward in run.shares.forwarded("solo"):
        assert forward.outcome is not None and forward.outcome.block_hash is not None
        header = await pair.arpc(0, "getblockheader", forward.outcome.block_hash)
        assert header["confirmations"] >= 1, f"{forward}: block not in the best chain"


pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
async def pool_running_after(foundation_pool: FoundationPool) -> AsyncIterator[None]:
    """A test that stopped the pool and failed before starting it again leaves it running."""
    yield
    if not foundation_pool.running:
        await foundation_pool.start()
