"""Smoke tests of the real Litecoin Core regtest pairs the fixtures start."""

from __future__ import annotations

from qscrypt.devnet.litecoind import GBT_RULES, MWEB_ACTIVATION_HEIGHT, RegtestPair


def test_nodes_are_peered_and_agree(litecoin_pair: RegtestPair) -> None:
    for i in (0, 1):
        assert litecoin_pair.rpc(i, "getpeerinfo"), f"node {i} has no peer"
    litecoin_pair.sync_blocks()
    assert litecoin_pair.rpc(0, "getbestblockhash") == litecoin_pair.rpc(1, "getbestblockhash")


def test_wallet_has_mature_coins(litecoin_pair: RegtestPair) -> None:
    assert litecoin_pair.height() >= 101
    assert litecoin_pair.wallet.call("getbalance") >= 50


async def test_getblocktemplate_with_mweb_and_segwit_rules(litecoin_pair: RegtestPair) -> None:
    template = await litecoin_pair.arpc(1, "getblocktemplate", GBT_RULES)
    assert template["height"] == litecoin_pair.height(1) + 1
    assert isinstance(template["coinbasevalue"], int)
    assert template["coinbasevalue"] > 0


def test_mweb_eve_leaves_the_first_mweb_block_to_mine(litecoin_mweb_pair: RegtestPair) -> None:
    assert litecoin_mweb_pair.height() == MWEB_ACTIVATION_HEIGHT - 1
    template = litecoin_mweb_pair.rpc(0, "getblocktemplate", GBT_RULES)
    assert template["height"] == MWEB_ACTIVATION_HEIGHT
    assert "mweb" in template
    txids = [tx["txid"] for tx in template["transactions"]]
    assert litecoin_mweb_pair.mweb_pegin_txid in txids
