"""pooler's cpuminer 2.5.1 mining solo through the proxy on a Litecoin Core regtest pair.

Regtest's network target is so easy that every share cpuminer finds is a whole block: each one the
proxy answers `true` is submitted to litecoind, and must end in both nodes' best chain. Before MWEB
(the session pair, far below height 432) and across its activation (block 432 carries the peg-in
and the first MWEB data, the blocks after it MWEB data of their own).
"""

from __future__ import annotations

import time
from pathlib import Path

from qscrypt.devnet.litecoind import MWEB_ACTIVATION_HEIGHT, RegtestPair
from tests.peers.support import (
    REGTEST_SHARE_DIFFICULTY,
    Forward,
    RunningProxy,
    running_proxy,
    solo_upstream,
)
from tests.services.peers import CpuMiner, PeerFactory

# About 33,000 hashes a share: a block every 2 s or so at cpuminer's 15-20 kH/s on one core. Slow
# enough that a share landing between the proxy's own block and its next job stays rare.
MINER_DIFFICULTY = 0.5
assert MINER_DIFFICULTY > REGTEST_SHARE_DIFFICULTY  # every share is a block


async def _blocks_through_the_proxy(pair: RegtestPair, peers: PeerFactory, tmp_path: Path, worker: str,
                                    blocks: int) -> tuple[RunningProxy, CpuMiner, str, float]:
    """cpuminer mining solo through a proxy on `pair` until litecoind took `blocks` of its blocks;
    the proxy's record, the miner, the payout script and the seconds it took."""
    upstream, address = solo_upstream(pair)
    script = pair.wallet.call("getaddressinfo", address)["scriptPubKey"]
    async with running_proxy(tmp_path / "spill", [upstream]) as run:
        miner = await peers.start_cpuminer(run.url, worker, f"x,d={MINER_DIFFICULTY}")
        began = time.monotonic()
        await miner.wait_for(lambda: sum(f.accepted for f in run.shares.forwards) >= blocks, 180,
                             f"{blocks} blocks accepted by litecoind")
        took = time.monotonic() - began
        await miner.stop()
        await run.shares.settle()
    return run, miner, script, took


def _check_shares(run: RunningProxy, miner: CpuMiner) -> list[Forward]:
    """Every share cpuminer sent was answered; each answered `true` was a block litecoind took, or
    one kept home because a block of ours had already won its height. Returns the blocks taken.

    The one refusal allowed is a stale share: one for work the proxy had already replaced with
    clean work when it arrived (cpuminer drops most of those itself, but a share can cross the
    new job on the wire right after the proxy's own block)."""
    stale, wrong = run.shares.stale(), run.shares.refused_otherwise()
    assert not wrong, f"the proxy refused {len(wrong)} shares: {wrong[:5]}\n{miner.describe()}"
    assert miner.rejected == len(stale), miner.describe()
    assert len(miner.submits) == len(miner.answers) == len(miner.results), (
        f"{len(miner.submits)} submits, {len(miner.answers)} answers, {len(miner.results)} verdicts")
    accepted = run.shares.accepted()
    assert len(accepted) + len(stale) == len(miner.submits)
    forwards = run.shares.forwarded()
    assert len(forwards) == len(accepted), "every share is a block on regtest: each one is submitted"
    not_in_chain = [str(f) for f in forwards if f.refused or f.outcome is None]
    assert not not_in_chain, f"answered true, but litecoind did not take the block: {not_in_chain}"
    # What is left besides the blocks litecoind took: shares that completed a second block on a
    # template one of ours had already won, which the proxy keeps home ("stale", see Forward.refused).
    return [f for f in forwards if f.accepted]


async def test_cpuminer_blocks_before_mweb_are_accepted_by_both_nodes(
    litecoin_pair: RegtestPair, peers: PeerFactory, tmp_path: Path
) -> None:
    pair = litecoin_pair
    start = pair.height()
    blocks = 6
    assert start + blocks < MWEB_ACTIVATION_HEIGHT
    run, miner, script, took = await _blocks_through_the_proxy(pair, peers, tmp_path, "cpu-solo.rig1", blocks)
    forwards = _check_shares(run, miner)
    hashes = [f.outcome.block_hash for f in forwards if f.outcome is not None and f.outcome.block_hash]
    assert len(hashes) >= blocks
    pair.sync_blocks()
    for block_hash in hashes:
        for node in (0, 1):
            header = await pair.arpc(node, "getblockheader", block_hash)
            assert header["confirmations"] >= 1, f"block {block_hash} is not in node {node}'s best chain"
        block = await pair.arpc(0, "getblock", block_hash, 2)
        assert start < block["height"] < MWEB_ACTIVATION_HEIGHT and "mweb" not in block
        assert block["tx"][0]["vout"][0]["scriptPubKey"]["hex"] == script
    assert pair.height() == start + len(hashes), "nobody else mines on this pair meanwhile"
    print(f"\ncpuminer: {len(hashes)} blocks (heights {start + 1}-{pair.height()}) in {took:.1f} s, "
          f"{miner.accepted} shares accepted, {miner.rejected} stale; proxy ready after "
          f"{run.ready_after:.2f} s")


async def test_cpuminer_blocks_across_mweb_activation_are_accepted_by_both_nodes(
    litecoin_mweb_pair: RegtestPair, peers: PeerFactory, tmp_path: Path
) -> None:
    pair = litecoin_mweb_pair
    assert pair.height() == MWEB_ACTIVATION_HEIGHT - 1
    run, miner, script, took = await _blocks_through_the_proxy(pair, peers, tmp_path, "cpu-mweb", 4)
    forwards = _check_shares(run, miner)
    pair.sync_blocks()
    heights = {}
    for forward in forwards:
        assert forward.outcome is not None and forward.outcome.block_hash is not None
        block = await pair.arpc(0, "getblock", forward.outcome.block_hash, 2)
        heights[block["height"]] = block
        for node in (0, 1):
            header = await pair.arpc(node, "getblockheader", block["hash"])
            assert header["confirmations"] >= 1, f"block {block['hash']} is not in node {node}'s best chain"
        assert block["tx"][0]["vout"][0]["scriptPubKey"]["hex"] == script
        assert "mweb" in block, f"block {block['height']} has no MWEB data"
    assert sorted(heights) == list(range(MWEB_ACTIVATION_HEIGHT, pair.height() + 1))
    first = heights[MWEB_ACTIVATION_HEIGHT]
    assert pair.mweb_pegin_txid in [tx["txid"] for tx in first["tx"]], "the peg-in opens MWEB"
    assert first["mweb"]["num_txos"] >= 1
    print(f"\ncpuminer across MWEB: blocks {MWEB_ACTIVATION_HEIGHT}-{pair.height()} in {took:.1f} s, "
          f"{miner.accepted} shares accepted, {miner.rejected} stale")
