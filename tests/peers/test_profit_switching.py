"""Profit switching with cpuminer between two real foundation-v2-litecoin pools.

Profile `p1` is moved back and forth 8 times by its decision (served in the decision API's
format, polled by the proxy) between
- `idle`: the module's pool on a chain nobody mines (it gets one job and nothing after: the pool
  re-sends work only every 10 minutes here, and its difficulty is far above the miner's, so the
  proxy forwards none of cpuminer's shares and makes no block there);
- `busy`: a second pool, polling its daemon every 25 ms on a chain that grows by a block every
  few tens of milliseconds, so the proxy gets well over 1,000 clean jobs from it.
Every share cpuminer sends must be answered, no share may be refused because of a move (only
shares for jobs their upstream had already replaced by clean work may be stale), and the first
share accepted on the new upstream must come within a few seconds of each decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.config import SwitchingConfig
from qscrypt.devnet.litecoind import RegtestPair
from tests.peers.support import FAILOVER, pool_upstream, running_proxy, wait_until
from tests.proxy.test_switching import DecisionServer
from tests.services.peers import FoundationPool, PeerFactory, PoolPort, PoolSettings, running_pool

FOUNDATION_POOL = PoolSettings(ports={"main": PoolPort(1000.0, 1000.0, 1000.0)}, rebroadcast_s=600)
BUSY_POOL = PoolSettings(ports={"main": PoolPort(1000.0, 1000.0, 1000.0)}, rebroadcast_s=600, poll_ms=25)
MINER_DIFFICULTY = 0.05  # ~3,300 hashes: several shares a second from cpuminer
MOVES = 8
PHASE_S = 7.0
BUSY_JOBS = 1000
FIRST_SHARE_S = 5.0
WORKER = "cpu-f+p1"

pytestmark = pytest.mark.timeout(420)


async def _grow(pair: RegtestPair, stop: asyncio.Event) -> None:
    """About 20 blocks a second on node 1 (node 0, which the pool polls, gets them by relay)."""
    address = pair.wallet.call("getnewaddress", "", "bech32")
    while not stop.is_set():
        await pair.arpc(1, "generatetoaddress", 1, address)
        await asyncio.sleep(0.04)


async def test_profile_moved_between_an_idle_and_a_busy_pool_loses_no_share(
    foundation_pool: FoundationPool, foundation_pool_build: Path, litecoin_mweb_pair: RegtestPair,
    peers: PeerFactory, tmp_path: Path
) -> None:
    idle = foundation_pool
    api = DecisionServer()
    api.decide("p1", "LTC", "busy")
    await api.start()
    stop = asyncio.Event()
    # (upstream, seconds from the decision to the first share accepted there; None: none in time)
    moves: list[tuple[str, float | None]] = []
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(api.stop)
        busy = await stack.enter_async_context(
            running_pool(foundation_pool_build, tmp_path / "busy-pool", litecoin_mweb_pair, BUSY_POOL))
        growing = asyncio.create_task(_grow(litecoin_mweb_pair, stop))
        stack.callback(stop.set)
        switching = SwitchingConfig(api_url=api.url, poll_s=0.3, stagger_miners=1, stagger_interval_s=0.05)
        upstreams = [pool_upstream(busy, "busy", priority=0), pool_upstream(idle, "idle", priority=1)]
        run = await stack.enter_async_context(running_proxy(
            tmp_path / "spill", upstreams, failover=replace(FAILOVER, no_job_timeout_s=900.0),
            switching=switching))
        idle_upstream = run.proxy.upstream("idle")
        assert idle_upstream is not None
        await wait_until(lambda: run.shares.jobs_of("idle"), 30, "the idle pool's first job", idle)
        before = {j.upstream_job_id for j in run.shares.jobs_of("idle")}
        # The idle pool's last job: one block on its chain, then nothing.
        kicked = time.monotonic()
        await asyncio.to_thread(idle.pair.generate, 1)

        def new_block_job() -> list[str]:  # not a keep-alive copy of its earlier job
            return [j.upstream_job_id for j in run.shares.jobs_of("idle", kicked)
                    if j.clean and j.upstream_job_id not in before]

        await wait_until(lambda: new_block_job() and idle_upstream.healthy, 30,
                         "the idle pool's job on its new block at the proxy", idle)
        idle_since = time.monotonic()
        idle_job = new_block_job()[-1]
        routes = run.proxy.router.routes
        await wait_until(lambda: "p1" in routes and routes["p1"].active == "busy", 10,
                         "profile p1's decision")

        miner = await peers.start_cpuminer(run.url, WORKER, f"x,d={MINER_DIFFICULTY}")
        await miner.wait_for(lambda: run.shares.accepted("busy"), 60, "a first share accepted on busy")
        target = "busy"
        for move in range(1, MOVES + 1):
            target = "idle" if target == "busy" else "busy"
            if move == MOVES:  # the last phase ends once busy has sent enough work
                await wait_until(lambda: len(run.shares.jobs_of("busy")) >= BUSY_JOBS, 120,
                                 f"{BUSY_JOBS} jobs from the busy pool", busy)
            decided = time.monotonic()
            api.decide("p1", "LTC", target, reason=f"move {move}")

            def arrived(since: float = decided, to: str = target) -> bool:
                return any(a.worker == WORKER for a in run.shares.accepted(to, since))

            try:
                took: float | None = await miner.wait_for(arrived, 3 * PHASE_S, f"move {move} to {target}")
            except AssertionError:
                if not miner.running:
                    raise
                took = None  # noted; the moves go on
            moves.append((target, took))
            await asyncio.sleep(max(0.0, PHASE_S - (took or 3 * PHASE_S)))
        await miner.stop()
        stop.set()
        await growing
        await run.shares.settle()

    busy_jobs = run.shares.jobs_of("busy")
    idle_jobs = run.shares.jobs_of("idle", idle_since)
    rejected = run.shares.rejected()
    because_of_moves = [a for a in rejected if not run.shares.replaced_before(a.job_id, a.at)]
    unanswered = len(miner.submits) - len(miner.answers)
    firsts = ", ".join(f"{u} {'none' if t is None else f'{t:.2f} s'}" for u, t in moves)
    print(f"\n{MOVES} moves, first accepted share on the new upstream after: {firsts}; busy sent "
          f"{len(busy_jobs)} jobs, idle "
          f"{len(idle_jobs)} keep-alive copies of its one job; {len(run.shares.accepted())} shares accepted, "
          f"{len(rejected)} "
          f"refused ({len(rejected) - len(because_of_moves)} stale: their job replaced by a new block), "
          f"{unanswered} unanswered; cpuminer connected {len(miner.subscribes)} times")
    assert len(moves) == MOVES
    assert len(busy_jobs) >= BUSY_JOBS
    # Idle: no new job from the pool. What the proxy sent its miners from it meanwhile is that same
    # job again with a fresh ntime (keep-alive), never clean.
    new_from_idle = [j for j in idle_jobs if j.upstream_job_id != idle_job or j.clean]
    assert not new_from_idle, f"the idle pool was not idle: {new_from_idle[:3]}"
    assert not because_of_moves, (
        f"{len(because_of_moves)} shares refused for jobs that were still current: "
        f"{[(round(a.at - idle_since, 1), a.upstream, a.job_id, a.reason) for a in because_of_moves[:10]]}")
    assert unanswered == 0, f"{unanswered} of {len(miner.submits)} shares were never answered"
    assert all(took is not None and took <= FIRST_SHARE_S for _, took in moves), firsts
    assert not run.shares.forwarded(), "nothing reaches either pool's difficulty"
