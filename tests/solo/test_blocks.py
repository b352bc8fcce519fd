"""Blocks found by miners through the proxy, submitted to a real litecoind and accepted by it."""

from __future__ import annotations

import asyncio
import statistics
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from proxy.upstream.daemon import EXTRANONCE1_SIZE, EXTRANONCE2_SIZE
from qscrypt.devnet.litecoind import RegtestPair
from tests.solo.miner import BLOCKS_MINED
from tests.solo.support import (
    TAG,
    block_row,
    connected_miner,
    daemon_config,
    daemon_of,
    in_best_chain,
    mine_block,
    running_proxy,
)

_TALLY = "test_blocks"
_WITNESS_COMMITMENT_PREFIX = "6a24aa21a9ed"  # OP_RETURN push(36) 0xaa21a9ed ‖ commitment


async def _coinbase(pair: RegtestPair, block_hash: str) -> tuple[dict[str, Any], dict[str, Any]]:
    block = await pair.arpc(0, "getblock", block_hash, 2)
    return block, block["tx"][0]


async def test_miners_find_blocks_that_litecoind_accepts(
    litecoin_pair: RegtestPair, pg_dsn: str, tmp_path: Path
) -> None:
    pair = litecoin_pair
    address = pair.wallet.call("getnewaddress", "", "legacy")
    script = pair.wallet.call("getaddressinfo", address)["scriptPubKey"]
    async with (
        running_proxy(daemon_config(pair, address), pg_dsn, tmp_path) as proxy,
        connected_miner(proxy, "alice.rig1") as alice,
        connected_miner(proxy, "bob") as bob,
    ):
        upstream = daemon_of(proxy)
        assert len(alice.extranonce1) == EXTRANONCE1_SIZE + 2 and alice.extranonce2_size == 2
        assert alice.extranonce1 != bob.extranonce1, "two miners must never build the same coinbase"
        assert EXTRANONCE1_SIZE + EXTRANONCE2_SIZE == len(alice.extranonce1) + alice.extranonce2_size
        for _ in range(3):
            for miner in (alice, bob):
                height = await pair.arpc(0, "getblockcount")
                solution = await mine_block(miner, pair, _TALLY)
                assert await pair.arpc(0, "getblockcount") == height + 1
                assert await pair.arpc(0, "getbestblockhash") == solution.block_hash

                block, coinbase = await _coinbase(pair, solution.block_hash)
                assert block["height"] == height + 1
                assert TAG.encode().hex() in coinbase["vin"][0]["coinbase"]
                assert (miner.extranonce1 + solution.extranonce2).hex() in coinbase["vin"][0]["coinbase"]
                payout = coinbase["vout"][0]
                assert payout["scriptPubKey"]["hex"] == script
                reward = Decimal(str(payout["value"]))
                assert reward > 0

                row = await block_row(pg_dsn, solution.block_hash)
                assert (row["coin"], row["height"], row["worker"], row["upstream"]) == (
                    "LTC", height + 1, miner.worker, "solo")
                assert (row["status"], row["reason"]) == ("accepted", None)
                assert row["reward"] == reward
        assert upstream.accepted == 6 and upstream.rejected == 0


async def test_blocks_carry_mempool_transactions(
    litecoin_pair: RegtestPair, pg_dsn: str, tmp_path: Path
) -> None:
    pair = litecoin_pair
    address = pair.wallet.call("getnewaddress", "", "bech32")
    async with (
        running_proxy(daemon_config(pair, address), pg_dsn, tmp_path) as proxy,
        connected_miner(proxy, "carol") as miner,
    ):
        # Litecoin Core remakes a template for new mempool transactions at most every 5 s, but at
        # once for a new tip: send them between solving a block and submitting it, so the next
        # block's work has them.
        solution = miner.solve()
        # Spends of segwit coinbase outputs to every address type: witness data in the block.
        txids = [
            pair.wallet.call("sendtoaddress", pair.wallet.call("getnewaddress", "", kind), 1.5)
            for kind in ("bech32", "legacy", "p2sh-segwit", "bech32", "legacy")
        ]
        seen = len(miner.received)
        assert (await miner.submit_solution(solution)).result is True
        await in_best_chain(pair, solution.block_hash)
        BLOCKS_MINED[_TALLY] += 1
        received = await miner.next_job(seen, clean=True)
        assert len(received.job.merkle_branch) >= 3  # at least 5 transactions + the coinbase

        solution = await mine_block(miner, pair, _TALLY)
        block, coinbase = await _coinbase(pair, solution.block_hash)
        assert set(txids) <= {tx["txid"] for tx in block["tx"][1:]}
        assert any("txinwitness" in vin for tx in block["tx"][1:] for vin in tx["vin"])
        assert coinbase["vout"][1]["scriptPubKey"]["hex"].startswith(_WITNESS_COMMITMENT_PREFIX)
        assert coinbase["vin"][0]["txinwitness"] == ["00" * 32]
        fees = -sum(Decimal(str(pair.wallet.call("gettransaction", txid)["fee"])) for txid in txids)
        row = await block_row(pg_dsn, solution.block_hash)
        assert row["status"] == "accepted"
        assert row["reward"] == Decimal(str(coinbase["vout"][0]["value"]))
        subsidy = Decimal(str(pair.rpc(0, "getblockstats", solution.block_hash, ["subsidy"])["subsidy"]))
        assert fees > 0 and row["reward"] >= subsidy / 100_000_000 + fees


async def test_shares_for_an_older_job_of_the_same_block_still_make_a_valid_block(
    litecoin_pair: RegtestPair, pg_dsn: str, tmp_path: Path
) -> None:
    pair = litecoin_pair
    config = daemon_config(pair, pair.wallet.call("getnewaddress"), refresh_s=1.0)
    async with running_proxy(config, pg_dsn, tmp_path) as proxy, connected_miner(proxy, "dave") as miner:
        solution = miner.solve()
        first = pair.wallet.call("sendtoaddress", pair.wallet.call("getnewaddress"), 1)
        seen = len(miner.received)
        assert (await miner.submit_solution(solution)).result is True
        await in_best_chain(pair, solution.block_hash)
        BLOCKS_MINED[_TALLY] += 1
        older = await miner.next_job(seen, clean=True)
        assert older.job.merkle_branch, "the new tip's work carries the first transaction"

        second = pair.wallet.call("sendtoaddress", pair.wallet.call("getnewaddress"), 1)
        newer = await miner.next_job(miner.received.index(older) + 1)
        assert not newer.job.clean_jobs and newer.job.prevhash == older.job.prevhash
        assert older in miner.jobs  # still live: the newer job is not clean

        solution = miner.solve(older)
        reply = await miner.submit_solution(solution)
        assert reply.result is True, reply.error
        await in_best_chain(pair, solution.block_hash)
        BLOCKS_MINED[_TALLY] += 1
        block = await pair.arpc(0, "getblock", solution.block_hash)
        assert first in block["tx"] and second not in block["tx"]
        assert (await block_row(pg_dsn, solution.block_hash))["status"] == "accepted"


async def test_new_work_within_a_second_and_a_stale_block_gets_the_daemons_verdict(
    litecoin_pair: RegtestPair, pg_dsn: str, tmp_path: Path
) -> None:
    pair = litecoin_pair
    other_address = pair.wallet.call("getnewaddress")
    async with (
        running_proxy(daemon_config(pair, pair.wallet.call("getnewaddress")), pg_dsn, tmp_path) as proxy,
        connected_miner(proxy, "erin") as miner,
    ):
        upstream = daemon_of(proxy)
        latencies = []
        stale = None
        for i in range(5):
            await asyncio.sleep(0.2 + 0.023 * i)  # land at different points of the 100 ms poll cycle
            old_job = upstream.work.job if upstream.work else None
            assert old_job is not None
            solution = miner.solve()
            seen = len(miner.received)
            [mined] = await pair.arpc(1, "generatetoaddress", 1, other_address)
            mined_at = time.monotonic()
            received = await miner.next_job(seen, clean=True, timeout=5)
            latencies.append(received.received_at - mined_at)
            assert received.job.prevhash == bytes.fromhex(mined)[::-1]
            await in_best_chain(pair, mined)
            stale = (old_job, solution)
        assert max(latencies) < 1.0, latencies
        print(f"\nnew work at the miner after node 1 mined: median {statistics.median(latencies) * 1000:.0f}"
              f" ms, max {max(latencies) * 1000:.0f} ms over {len(latencies)} blocks")

        # Through the proxy, a share on the old tip is stale (it could only fork the chain) ...
        assert stale is not None
        old_job, solution = stale
        reply = await miner.submit_solution(solution)
        assert reply.error is not None and reply.error[0] == 21, reply
        # ... and a block on the old tip that does reach the daemon gets its verdict recorded.
        # The proxy passes upstreams the full extranonce2: the miner's prefix, then its own part.
        prefix = miner.extranonce1[EXTRANONCE1_SIZE:]
        outcome = await upstream.submit(old_job.job_id, prefix + solution.extranonce2, solution.ntime,
                                        solution.nonce, solution.header, miner.worker)
        assert not outcome.accepted and outcome.block_hash == solution.block_hash
        row = await block_row(pg_dsn, solution.block_hash)
        print(f"stale block: status {row['status']}, reason {row['reason']!r}")
        assert row["status"] in ("orphaned", "rejected") and row["reason"] == outcome.reason
        assert await pair.arpc(0, "getbestblockhash") != solution.block_hash
