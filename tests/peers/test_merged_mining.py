"""Merged mining in solo mode: pooler's cpuminer mining through the proxy into a Litecoin Core
regtest pair and a Dogecoin Core regtest node at once (AuxPoW, mining/auxpow.py).

Regtest's targets are so easy on both chains that every share cpuminer finds is a Litecoin block
and a Dogecoin block: each goes to litecoind with `submitblock` and, while its aux block is still
on Dogecoin's tip, to dogecoind with `submitauxblock`. Dogecoin's chain must grow with blocks whose
AuxPoW parent is our Litecoin work (its coinbase ours, its header one of the Litecoin blocks we
submitted), across Litecoin's MWEB activation; a Dogecoin node that freezes or stops must not stop
or slow Litecoin mining.

The first test then settles the merge-mined Dogecoin blocks with the payout code on dogecoind:
credited to the miner's account, payable at Dogecoin's regtest maturity (60 confirmations).

Only one aux chain rides here: a second Dogecoin regtest node, even on another chain, has chain id
98 as well, and one parent block has one slot per chain id (the config refuses it); several chain
ids at once are tested on bytes (tests/mining/test_auxpow.py), and Dogecoin Core takes its block
from a three-chain tree off slot 0 (tests/devnet/test_dogecoind_auxpow.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from structlog.testing import capture_logs

from mining.auxpow import AuxPow, check_auxpow, coinbase_script_sig
from mining.hashing import sha256d
from payouts import db as payouts_db
from payouts.config import PayoutsConfig
from payouts.run import run_payouts
from proxy.config import AuxChainConfig, UpstreamConfig
from proxy.upstream.daemon import DaemonUpstream
from qscrypt.devnet.dogecoind import AUXPOW_START_HEIGHT, DogecoinNode, regtest_address
from qscrypt.devnet.litecoind import MWEB_ACTIVATION_HEIGHT, RegtestPair
from qscrypt.settings import load_section
from tests.peers.support import RunningProxy, running_proxy, solo_upstream, wait_until
from tests.services.peers import PeerFactory
from tests.solo.support import block_row

MINER_DIFFICULTY = 0.5  # a share (a block on both chains) every 2 s or so on one core
DOGE_CHAIN_ID = 98


def _merged(pair: RegtestPair, node: DogecoinNode, name: str) -> tuple[UpstreamConfig, str, str]:
    """A solo upstream on `pair` with `node` as its aux chain; its Litecoin and Dogecoin addresses."""
    upstream, ltc_address = solo_upstream(pair, name)
    doge_address = regtest_address(f"merged mining test {name}".encode())
    aux = AuxChainConfig(name="doge", coin="DOGE", network="regtest", rpc_url=node.rpc_url,
                         rpc_user=node.user, rpc_password=node.password, payout_address=doge_address,
                         poll_s=0.2)
    return UpstreamConfig(**{**upstream.__dict__, "aux": [aux]}), ltc_address, doge_address


def _ltc_blocks(run: RunningProxy, since: float = 0.0) -> list[str]:
    """Hashes of the Litecoin blocks litecoind accepted from the proxy."""
    return [f.outcome.block_hash for f in run.shares.forwarded(since=since)
            if f.outcome is not None and f.outcome.status == "accepted" and f.outcome.block_hash]


async def _our_dogecoin_blocks(node: DogecoinNode, start: int, ltc_script: str, tag: bytes,
                               doge_address: str) -> list[tuple[dict[str, Any], bytes]]:
    """Every Dogecoin block above `start` and its AuxPoW parent header, each checked to be ours:
    paying our Dogecoin address, the parent coinbase paying our Litecoin script and carrying our
    tag, the AuxPoW one CAuxPow::check (our port) accepts. (Where the parent sits on the Litecoin
    chain is the caller's to check.)"""
    blocks = []
    for height in range(start + 1, await node.acall("getblockcount") + 1):
        block = await node.acall("getblock", await node.acall("getblockhash", height), True)
        auxpow = block["auxpow"]
        parent = bytes.fromhex(auxpow["parentblock"])
        coinbase = bytes.fromhex(auxpow["tx"]["hex"])
        assert tag in coinbase_script_sig(coinbase)
        assert auxpow["tx"]["vout"][0]["scriptPubKey"]["hex"] == ltc_script
        assert parent[4:36] != bytes(32) and int.from_bytes(parent[:4], "little") >> 16 != DOGE_CHAIN_ID
        proof = AuxPow(coinbase, tuple(bytes.fromhex(h)[::-1] for h in auxpow["merklebranch"]),
                       tuple(bytes.fromhex(h)[::-1] for h in auxpow["chainmerklebranch"]),
                       auxpow["chainindex"], parent)
        check_auxpow(proof, bytes.fromhex(block["hash"])[::-1], DOGE_CHAIN_ID)
        coinbase_tx = await node.acall("getrawtransaction", block["tx"][0], 1)
        assert coinbase_tx["vout"][0]["scriptPubKey"]["addresses"] == [doge_address]
        blocks.append((block, parent))
    return blocks


async def test_cpuminer_merge_mines_dogecoin_across_mweb_activation(
    litecoin_mweb_pair: RegtestPair, dogecoin_node: DogecoinNode, peers: PeerFactory, tmp_path: Path,
    pg_dsn: str,
) -> None:
    pair, node = litecoin_mweb_pair, dogecoin_node
    assert pair.height() == MWEB_ACTIVATION_HEIGHT - 1 and node.height() == AUXPOW_START_HEIGHT - 1
    upstream, ltc_address, doge_address = _merged(pair, node, "merged")
    ltc_script = pair.wallet.call("getaddressinfo", ltc_address)["scriptPubKey"]
    async with running_proxy(tmp_path / "spill", [upstream], dsn=pg_dsn) as run:
        daemon = run.proxy.upstreams[0]
        assert isinstance(daemon, DaemonUpstream)
        await wait_until(lambda: daemon.aux_chains[0].work is not None, 30, "aux work from dogecoind")
        miner = await peers.start_cpuminer(run.url, "merged.rig1", f"x,d={MINER_DIFFICULTY}")
        began = time.monotonic()
        await miner.wait_for(lambda: len(_ltc_blocks(run)) >= 4 and node.height() >= AUXPOW_START_HEIGHT + 2,
                             180, "4 Litecoin and 3 Dogecoin blocks")
        took = time.monotonic() - began
        await miner.stop()
        await run.shares.settle()
        ltc_blocks = _ltc_blocks(run)
        doge_accepted = run.metric("qscrypt_blocks_total", coin="DOGE", status="accepted")
        doge_other = {status: run.metric("qscrypt_blocks_total", coin="DOGE", status=status)
                      for status in ("rejected", "orphaned", "pending")}
    pair.sync_blocks()
    for block_hash in ltc_blocks:
        for index in (0, 1):
            header = await pair.arpc(index, "getblockheader", block_hash)
            assert header["confirmations"] >= 1, f"block {block_hash} not in node {index}'s best chain"
    first = await pair.arpc(0, "getblock", await pair.arpc(0, "getblockhash", MWEB_ACTIVATION_HEIGHT), 2)
    assert "mweb" in first and pair.mweb_pegin_txid in [tx["txid"] for tx in first["tx"]]
    assert first["hash"] in ltc_blocks, "the first MWEB block is one of ours"

    doge_blocks = await _our_dogecoin_blocks(node, AUXPOW_START_HEIGHT - 1, ltc_script,
                                             upstream.coinbase_tag.encode(), doge_address)
    assert len(doge_blocks) >= 3
    assert doge_accepted == len(doge_blocks), "every Dogecoin block is counted once, as accepted"
    assert not [status for status, count in doge_other.items() if count], \
        f"Dogecoin submissions the node did not take (a stale aux block sent?): {doge_other}"
    parents: list[int] = []
    kept_home = 0
    for block, parent in doge_blocks:
        parent_hash = sha256d(parent)[::-1].hex()
        if parent_hash in ltc_blocks:
            parents.append((await pair.arpc(0, "getblockheader", parent_hash))["height"])
            continue
        # A share that met Dogecoin's target but came for a Litecoin height a block of ours had
        # already won: kept home for Litecoin (a second block there could only be orphaned), and
        # still a valid parent for Dogecoin. It builds on the Litecoin chain, at a height ours won.
        height = (await pair.arpc(0, "getblockheader", parent[4:36][::-1].hex()))["height"] + 1
        assert await pair.arpc(0, "getblockhash", height) in ltc_blocks, \
            f"Dogecoin block {block['height']}: parent neither our Litecoin block nor at a height ours won"
        parents.append(height)
        kept_home += 1
    assert max(parents) >= MWEB_ACTIVATION_HEIGHT, "Dogecoin blocks ride on MWEB blocks too"
    for block, _ in doge_blocks:
        row = await block_row(pg_dsn, block["hash"])
        assert (row["coin"], row["status"], row["height"], row["upstream"], row["worker"]) == \
            ("DOGE", "accepted", block["height"], "merged", "merged.rig1")
        assert row["reward"] == Decimal(500_000)  # createauxblock's coinbasevalue on regtest, in DOGE
    print(f"\nmerged mining: {len(ltc_blocks)} Litecoin blocks (heights to {pair.height()}) and "
          f"{len(doge_blocks)} Dogecoin blocks (to {node.height()}) in {took:.1f} s; Litecoin parents of "
          f"Dogecoin blocks at heights {parents} ({kept_home} of them shares kept home for Litecoin)")
    await _the_dogecoin_blocks_pay_the_miner(pg_dsn, node, [block["hash"] for block, _ in doge_blocks])


async def _the_dogecoin_blocks_pay_the_miner(dsn: str, node: DogecoinNode, doge_hashes: list[str]) -> None:
    """The payouts settle the merge-mined blocks on dogecoind: the miner's account (registered with
    a Dogecoin payout address) is credited immature, payable at Dogecoin's maturity (regtest 60)."""
    config = load_section(PayoutsConfig, {"coins": {"DOGE": {
        "network": "regtest", "minimum": 1.0, "rpc_url": node.rpc_url, "rpc_user": node.user,
        "rpc_password": node.password}}}, "payouts").coin("DOGE")
    payee = regtest_address(b"merged mining test: the miner's own Dogecoin address")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await payouts_db.register(conn, "merged", None, "0" * 64, {"DOGE": payee})
        found = await run_payouts(pool, "DOGE", config, node.rpc, datetime.now(UTC), send=False)
        assert sorted(found.settled.found) == sorted(doge_hashes) and found.created == 0, found.summary()
        owed = len(doge_hashes) * (500_000 * 10**8 * 99 // 100)  # solo scheme, 1 % fee
        await node.acall("generatetoaddress", 60, node.mining_address)  # the youngest has 60 now
        mature = await run_payouts(pool, "DOGE", config, node.rpc, datetime.now(UTC), send=False)
        assert sorted(mature.settled.matured) == sorted(doge_hashes), mature.summary()
        async with pool.acquire() as conn:
            payout = await conn.fetchrow(
                "SELECT account, address, amount, status FROM payouts WHERE coin = 'DOGE'")
        assert tuple(payout) == ("merged", payee, owed, "pending")
    finally:
        await pool.close()


async def test_a_dogecoin_node_frozen_or_stopped_never_stops_litecoin_mining(
    litecoin_mweb_pair: RegtestPair, dogecoin_node: DogecoinNode, peers: PeerFactory, tmp_path: Path,
) -> None:
    pair, node = litecoin_mweb_pair, dogecoin_node
    upstream, _, _ = _merged(pair, node, "merged-down")
    assert node.process is not None
    async with running_proxy(tmp_path / "spill", [upstream]) as run:
        daemon = run.proxy.upstreams[0]
        assert isinstance(daemon, DaemonUpstream)
        chain = daemon.aux_chains[0]
        await wait_until(lambda: chain.work is not None, 30, "aux work from dogecoind")
        miner = await peers.start_cpuminer(run.url, "merged.rig2", f"x,d={MINER_DIFFICULTY}")
        await miner.wait_for(lambda: node.height() >= AUXPOW_START_HEIGHT + 1, 90, "a Dogecoin block")
        phases: dict[str, tuple[int, float]] = {}

        def committed() -> bool:
            return (chain.work is not None and daemon.work is not None
                    and chain.work.hash[::-1] in daemon.work.job.coinb1)

        # Miners on a job committing to a Dogecoin block: the next share wins it, and its
        # submission waits on the frozen node while Litecoin blocks must go on.
        await wait_until(committed, 30, "a job committing to a Dogecoin block")
        run.proxy.report_aux_chains()
        assert run.proxy.metrics.registry.get_sample_value(
            "qscrypt_aux_chain_up", {"upstream": "merged-down", "coin": "DOGE"}) == 1
        # Frozen: the node holds its sockets but answers nothing (a daemon stuck in a long reorg).
        os.kill(node.process.pid, signal.SIGSTOP)
        try:
            since = time.monotonic()
            await miner.wait_for(lambda: len(_ltc_blocks(run, since)) >= 2, 60,
                                 "2 Litecoin blocks while dogecoind is frozen")
            phases["frozen"] = (len(_ltc_blocks(run, since)), time.monotonic() - since)
            assert run.proxy.router.active == "merged-down"
        finally:
            os.kill(node.process.pid, signal.SIGCONT)
        frozen_height = node.height()
        node.stop()
        since = time.monotonic()
        await miner.wait_for(lambda: len(_ltc_blocks(run, since)) >= 2, 60,
                             "2 Litecoin blocks while dogecoind is stopped")
        phases["stopped"] = (len(_ltc_blocks(run, since)), time.monotonic() - since)
        assert not chain.healthy
        run.proxy.report_aux_chains()  # what the proxy's 10 s report does
        assert run.proxy.metrics.registry.get_sample_value(
            "qscrypt_aux_chain_up", {"upstream": "merged-down", "coin": "DOGE"}) == 0, "down, as metric"
        await miner.stop()
        await run.shares.settle()
        forwards = run.shares.forwarded()
        # Two shares that win on one template: the second is not sent (it would only compete with
        # our own block) and says so; any other refusal is a fault.
        refused = [f for f in forwards if f.refused]
    assert not refused, f"Litecoin blocks refused: {[str(f) for f in refused]}"
    # A submission to the frozen node waits up to 15 s; none of Litecoin's may wait with it.
    slow = [str(f) for f in forwards if f.outcome is not None and f.outcome.latency_s > 5.0]
    assert not slow, f"Litecoin blocks that waited: {slow}"
    assert frozen_height >= AUXPOW_START_HEIGHT + 1
    print(f"\nLitecoin blocks with dogecoind away: {phases} (blocks, seconds)")


async def test_dogecoin_blocks_found_while_blocks_is_locked_are_journaled_then_recorded(
    litecoin_mweb_pair: RegtestPair, dogecoin_node: DogecoinNode, peers: PeerFactory, tmp_path: Path,
    pg_dsn: str,
) -> None:
    """A Dogecoin block is a found block like Litecoin's: journaled (fsync'd) before it is
    submitted, and written to `blocks` from the journal once PostgreSQL takes writes again."""
    pair, node = litecoin_mweb_pair, dogecoin_node
    upstream, _, _ = _merged(pair, node, "merged-journal")
    start = node.height()
    blocker = await asyncpg.connect(pg_dsn)
    try:
        with capture_logs() as logs:
            async with running_proxy(tmp_path / "spill", [upstream], dsn=pg_dsn) as run:
                journal = run.proxy.blocks
                daemon = run.proxy.upstreams[0]
                assert isinstance(daemon, DaemonUpstream) and journal is not None
                await wait_until(lambda: daemon.aux_chains[0].work is not None, 30, "aux work from dogecoind")
                lock = blocker.transaction()
                await lock.start()
                await blocker.execute("LOCK TABLE blocks IN ACCESS EXCLUSIVE MODE")
                miner = await peers.start_cpuminer(run.url, "merged.rig3", f"x,d={MINER_DIFFICULTY}")
                await miner.wait_for(lambda: node.height() >= start + 2, 120, "2 Dogecoin blocks")
                await miner.stop()
                hashes = {await node.acall("getblockhash", h) for h in range(start + 1, node.height() + 1)}

                def given_up() -> set[str]:
                    """Blocks whose own insert timed out on the lock (5 s): only the journal has them."""
                    return {str(e["hash"]) for e in logs if e["event"] == "daemon.block_journaled"}

                async def journaled() -> set[str]:
                    return {str(record["hash"]) for _, _, record in await journal.pending()
                            if record["coin"] == "DOGE"}

                await wait_until(lambda: hashes <= given_up(), 60, "each Dogecoin block's insert to time out")
                assert hashes <= await journaled()
                await lock.rollback()
                for block_hash in hashes:
                    row = await block_row(pg_dsn, block_hash)
                    assert (row["coin"], row["status"], row["worker"]) == ("DOGE", "accepted", "merged.rig3")
                deadline = time.monotonic() + 30
                while await journaled():
                    assert time.monotonic() < deadline, "the journal still holds Dogecoin blocks"
                    await asyncio.sleep(0.2)
    finally:
        await blocker.close()
