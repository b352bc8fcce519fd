"""mining/auxpow.py's bytes against Dogecoin Core itself: AuxPoWs built here, submitted to a real
`dogecoind -regtest` (no proxy, no Litecoin node: the parent is a Litecoin-layout job built by
mining.block, its header mined here under the regtest target). What Core takes and what it refuses
decides, including a tree of several chains where Dogecoin's slot is not the first."""

from __future__ import annotations

from typing import Any

import pytest

from mining.address import address_to_script
from mining.auxpow import AuxBlock, AuxPow, AuxTree, build_aux_tree, build_auxpow, expected_index
from mining.block import BlockTemplateWork, build_coinbase, stratum_branch
from mining.coins import LTC_REGTEST
from mining.hashing import hash_to_int, scrypt_pow, sha256d
from qscrypt.devnet.dogecoind import AUXPOW_START_HEIGHT, DogecoinNode
from qscrypt.jsonrpc import RpcCallError

NAMECOIN, OTHER = 1, 0x2000  # chain ids besides Dogecoin's 98 that a tree may hold


def _parent(tree: AuxTree, target: int, version: int = 0x20000000,
            meet: bool = True) -> tuple[bytes, tuple[bytes, ...], bytes]:
    """A Litecoin-layout job committing to `tree`: its coinbase, branch and a header whose scrypt
    meets `target` (or, with meet False, does not)."""
    template: dict[str, Any] = {
        "height": 1000, "version": version, "previousblockhash": "33" * 32, "bits": "207fffff",
        "curtime": 1_700_000_000, "coinbasevalue": 625_000_000,
        "transactions": [{"txid": sha256d(bytes([i])).hex(), "data": ""} for i in range(3)],
    }
    script = address_to_script("mfWxJ45yp2SFn7UciZyNpvDKrzbhyfKrY8", LTC_REGTEST)
    parts = build_coinbase(template, script, b"/auxpow-test/", 8, LTC_REGTEST,
                           aux_commitment=tree.commitment())
    job = BlockTemplateWork.from_template(template).job("1", parts, stratum_branch(template))
    extranonce = (b"\x00" * 4, b"\x00" * 4)
    for nonce in range(10_000):
        header = job.header(*extranonce, job.ntime, nonce)
        if (hash_to_int(scrypt_pow(header)) <= target) == meet:
            return job.coinbase(*extranonce), job.merkle_branch, header
    raise AssertionError("no header found")


def _aux(node: DogecoinNode) -> AuxBlock:
    return AuxBlock.from_rpc(node.call("createauxblock", node.mining_address))


def test_dogecoin_core_takes_our_auxpow_in_any_slot_of_a_multi_chain_tree(
        dogecoin_node: DogecoinNode) -> None:
    node = dogecoin_node
    assert node.height() == AUXPOW_START_HEIGHT - 1
    # One chain; then three, with a nonce that puts Dogecoin in a slot other than 0 (a real branch).
    block = _aux(node)
    tree = build_aux_tree([(block.chain_id, block.hash)])
    coinbase, branch, header = _parent(tree, block.target)
    assert node.call("submitauxblock", block.hash_hex, build_auxpow(coinbase, branch, tree, 0, header)
                     .serialize().hex()) is True
    assert node.call("getbestblockhash") == block.hash_hex

    block = _aux(node)
    nonce = next(n for n in range(1000) if build_aux_tree(
        [(NAMECOIN, bytes(32)), (block.chain_id, block.hash), (OTHER, bytes(32))], n).slots[1] != 0)
    tree = build_aux_tree([(NAMECOIN, sha256d(b"nmc")), (block.chain_id, block.hash), (OTHER, sha256d(b"x"))],
                          nonce)
    assert tree.size >= 4 and tree.slots[1] == expected_index(nonce, 98, tree.height) != 0
    coinbase, branch, header = _parent(tree, block.target)
    auxpow = build_auxpow(coinbase, branch, tree, 1, header)
    assert node.call("submitauxblock", block.hash_hex, auxpow.serialize().hex()) is True
    got = node.call("getblock", block.hash_hex, True)
    assert got["confirmations"] == 1 and got["height"] == AUXPOW_START_HEIGHT + 1
    assert got["auxpow"]["chainindex"] == tree.slots[1]
    assert [bytes.fromhex(h)[::-1] for h in got["auxpow"]["chainmerklebranch"]] == list(auxpow.chain_branch)


def test_dogecoin_core_refuses_what_check_auxpow_refuses(dogecoin_node: DogecoinNode) -> None:
    node = dogecoin_node
    block = _aux(node)
    tree = build_aux_tree([(block.chain_id, block.hash), (NAMECOIN, sha256d(b"nmc"))])
    coinbase, branch, header = _parent(tree, block.target)
    good = build_auxpow(coinbase, branch, tree, 0, header)
    wrong_slot = AuxPow(good.coinbase, good.coinbase_branch, tuple(tree.branch(tree.slots[1])), tree.slots[1],
                        good.parent_header)
    coinbase98, branch98, header98 = _parent(tree, block.target, version=98 << 16)
    own_chain_id = build_auxpow(coinbase98, branch98, tree, 0, header98)
    coinbase_weak, branch_weak, header_weak = _parent(tree, block.target, meet=False)
    weak = build_auxpow(coinbase_weak, branch_weak, tree, 0, header_weak)
    for what, bad in (("wrong slot", wrong_slot), ("parent with chain id 98", own_chain_id),
                      ("scrypt over the target", weak)):
        assert node.call("submitauxblock", block.hash_hex, bad.serialize().hex()) is False, what
    assert node.height() == AUXPOW_START_HEIGHT - 1
    with pytest.raises(RpcCallError, match="block hash unknown"):
        node.call("submitauxblock", "00" * 32, good.serialize().hex())
    assert node.call("submitauxblock", block.hash_hex, good.serialize().hex()) is True
    assert node.height() == AUXPOW_START_HEIGHT
