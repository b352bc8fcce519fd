"""Solo-mining test plumbing: a real Proxy on a daemon upstream, and waits on the real chain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

from proxy.app import Proxy
from proxy.config import FailoverConfig, ListenConfig, ProxyConfig, UpstreamConfig, VardiffConfig
from proxy.upstream.daemon import DaemonUpstream
from qscrypt.devnet.litecoind import RegtestPair
from qscrypt.jsonrpc import RpcCallError
from tests.solo.miner import BLOCKS_MINED, SoloMiner, Solution

TAG = "/qscrypt-solo-test/"
# Below 2^-15 the share target is above regtest's network target: every block is also a share.
VARDIFF = VardiffConfig(initial=1e-5, minimum=1e-6)


def daemon_config(pair: RegtestPair, payout_address: str, node: int = 0, **overrides: Any) -> UpstreamConfig:
    config = UpstreamConfig(
        name="solo", kind="daemon", coin="LTC", network="regtest", rpc_url=pair.rpc_url(node),
        rpc_user=pair.user, rpc_password=pair.password, payout_address=payout_address, coinbase_tag=TAG,
    )
    return replace(config, **overrides)


@asynccontextmanager
async def running_proxy(upstream: UpstreamConfig, dsn: str | None, spill_dir: Path,
                        failover: FailoverConfig | None = None, host_name: str = "") -> AsyncIterator[Proxy]:
    config = ProxyConfig(
        listen=ListenConfig(host="127.0.0.1", port=0), vardiff=VARDIFF, failover=failover or FailoverConfig(),
        upstreams=[upstream], metrics_port=None, spill_dir=spill_dir, host_name=host_name,
    )
    proxy = Proxy(config, dsn)
    await proxy.start()
    try:
        await wait_until(lambda: proxy.router.active is not None, 10, "the daemon upstream to have work")
        yield proxy
    finally:
        await proxy.close()


def daemon_of(proxy: Proxy) -> DaemonUpstream:
    upstream = proxy.upstreams[0]
    assert isinstance(upstream, DaemonUpstream)
    return upstream


@asynccontextmanager
async def connected_miner(proxy: Proxy, worker: str) -> AsyncIterator[SoloMiner]:
    miner = SoloMiner("127.0.0.1", proxy.ports["tcp"], worker=worker)
    try:
        await miner.join()
        await miner.wait_job()
        yield miner
    finally:
        await miner.close()


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds it took for `predicate` to hold."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - began


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """The first truthy result of `check`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def in_best_chain(pair: RegtestPair, block_hash: str, node: int = 0) -> dict[str, Any]:
    """The block's header once the node has it in its best chain."""
    async def check() -> dict[str, Any] | None:
        try:
            header = await pair.arpc(node, "getblockheader", block_hash)
        except RpcCallError:
            return None
        return header if header["confirmations"] >= 1 else None

    result: dict[str, Any] = await eventually(check, 10, f"block {block_hash} in node {node}'s best chain")
    return result


async def mine_block(miner: SoloMiner, pair: RegtestPair, tally: str, node: int = 0) -> Solution:
    """Find a block on the miner's newest job, submit it through the proxy, wait until the daemon
    has it in its best chain and the miner has work on top of it."""
    tip = bytes.fromhex(await pair.arpc(node, "getbestblockhash"))[::-1]
    # Another miner's block may have just landed: its new work can still be on the way to this one.
    await wait_until(lambda: bool(miner.jobs) and miner.jobs[-1].job.prevhash == tip, 5,
                     f"{miner.worker} to have work on the tip")
    solution = miner.solve()
    seen = len(miner.received)
    reply = await miner.submit_solution(solution)
    assert reply.result is True, f"the proxy refused the share: {reply.error}"
    await in_best_chain(pair, solution.block_hash, node)
    BLOCKS_MINED[tally] += 1
    await miner.next_job(seen, clean=True)
    return solution


async def block_row(dsn: str, block_hash: str) -> asyncpg.Record:
    async def check() -> asyncpg.Record | None:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchrow("SELECT * FROM blocks WHERE hash = $1", block_hash)
        finally:
            await conn.close()

    row: asyncpg.Record = await eventually(check, 10, f"block {block_hash} in the blocks table")
    return row
