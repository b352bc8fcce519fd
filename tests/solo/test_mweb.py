"""MWEB through the proxy: the activation block and the blocks after it, accepted by Litecoin Core.

The pair of `litecoin_mweb_pair` stands at height 431 with a peg-in in the mempool, so the first
block mined here is the first MWEB block (432). Its template ends with the HogEx and carries an
"mweb" field; the block the proxy submits must end with 0x01 ‖ mweb (see mining.block).
"""

from __future__ import annotations

from pathlib import Path

from qscrypt.devnet.litecoind import MWEB_ACTIVATION_HEIGHT, RegtestPair
from tests.solo.miner import BLOCKS_MINED
from tests.solo.support import connected_miner, daemon_config, in_best_chain, mine_block, running_proxy

_TALLY = "test_mweb"


async def test_mweb_activation_and_later_blocks_are_accepted(
    litecoin_mweb_pair: RegtestPair, tmp_path: Path
) -> None:
    pair = litecoin_mweb_pair
    assert pair.height() == MWEB_ACTIVATION_HEIGHT - 1
    config = daemon_config(pair, pair.wallet.call("getnewaddress", "", "p2sh-segwit"))
    async with running_proxy(config, None, tmp_path) as proxy, connected_miner(proxy, "mweb-miner") as miner:
        first = await mine_block(miner, pair, _TALLY)
        block = await pair.arpc(0, "getblock", first.block_hash, 2)
        assert block["height"] == MWEB_ACTIVATION_HEIGHT
        assert pair.mweb_pegin_txid in [tx["txid"] for tx in block["tx"]]
        assert block["mweb"]["num_txos"] >= 1, "the peg-in's MWEB output"

        # An MWEB-only transaction (spending the peg-in's output) is not listed in templates; it
        # travels in the mweb bytes. Sent between solving and submitting a block, so the next
        # tip's template has it.
        solution = miner.solve()
        mweb_txid = pair.wallet.call("sendtoaddress", pair.wallet.call("getnewaddress", "", "mweb"), 0.25)
        seen = len(miner.received)
        assert (await miner.submit_solution(solution)).result is True
        await in_best_chain(pair, solution.block_hash)
        BLOCKS_MINED[_TALLY] += 1
        await miner.next_job(seen, clean=True)
        assert mweb_txid in await pair.arpc(0, "getrawmempool")

        with_mweb_tx = await mine_block(miner, pair, _TALLY)
        block = await pair.arpc(0, "getblock", with_mweb_tx.block_hash, 2)
        assert block["height"] == MWEB_ACTIVATION_HEIGHT + 2
        assert block["mweb"]["inputs"], "the MWEB transaction spends an MWEB output"
        assert block["mweb"]["num_kernels"] >= 1
        assert mweb_txid not in await pair.arpc(0, "getrawmempool")

        last = await mine_block(miner, pair, _TALLY)
        block = await pair.arpc(0, "getblock", last.block_hash, 2)
        assert block["height"] == MWEB_ACTIVATION_HEIGHT + 3 and "mweb" in block
    pair.sync_blocks()  # the peer took every one of them as well
    assert pair.rpc(1, "getbestblockhash") == last.block_hash
