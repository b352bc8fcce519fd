"""Merged mining (mining/auxpow.py) on bytes: the slot rule, the aux tree, the coinbase commitment
and the AuxPoW serialization, against Dogecoin Core 1.14.7's own code (src/auxpow.cpp and its QA
framework's qa/rpc-tests/test_framework/auxpow.py, transcribed below) and against every refusal
CAuxPow::check has. What dogecoind itself accepts and refuses: tests/devnet/test_dogecoind_auxpow.py
(bytes built here) and tests/peers/test_merged_mining.py (cpuminer through the proxy)."""

import ctypes
import struct

import pytest

from mining.address import address_to_script
from mining.auxpow import (
    COMMITMENT_SIZE,
    MERGED_MINING_MARKER,
    AuxBlock,
    AuxPow,
    AuxPowError,
    build_aux_tree,
    build_auxpow,
    check_auxpow,
    coinbase_script_sig,
    expected_index,
    fold_branch,
)
from mining.block import BlockTemplateWork, build_coinbase, stratum_branch
from mining.coins import DOGE_REGTEST, LTC_REGTEST
from mining.hashing import sha256d
from mining.target import bits_to_target

DOGE = 98  # Dogecoin's chain id (chainparams.cpp: "98 - Josh Wise!")
NAMECOIN = 1
AUX_HASH_HEX = "5e2b2c6b3c1d0a9f8e7d6c5b4a39281706f5e4d3c2b1a0918273645546372819"
AUX_HASH = bytes.fromhex(AUX_HASH_HEX)[::-1]  # internal order, as uint256 holds it


def _c_expected_index(nonce: int, chain_id: int, height: int) -> int:
    """getExpectedIndex with C's uint32_t arithmetic (ctypes wraps like the C++ does)."""
    rand = ctypes.c_uint32(nonce)
    rand = ctypes.c_uint32(rand.value * 1103515245 + 12345)
    rand = ctypes.c_uint32(rand.value + chain_id)
    rand = ctypes.c_uint32(rand.value * 1103515245 + 12345)
    return rand.value % (1 << height)


@pytest.mark.parametrize("nonce", [0, 1, 7, 0x7FFFFFFF, 0xFFFFFFFF])
@pytest.mark.parametrize("chain_id", [0, NAMECOIN, DOGE, 0x2000, 0xFFFF])
@pytest.mark.parametrize("height", [0, 1, 3, 8, 30])
def test_expected_index_wraps_as_the_cpp_uint32(nonce: int, chain_id: int, height: int) -> None:
    assert expected_index(nonce, chain_id, height) == _c_expected_index(nonce, chain_id, height)


def test_expected_index_known_values() -> None:
    # Printed by Core's getExpectedIndex body (src/auxpow.cpp) compiled with g++ 12 on this machine.
    compiled = {(0, NAMECOIN, 0): 0, (0, NAMECOIN, 1): 1, (0, NAMECOIN, 3): 3, (0, NAMECOIN, 8): 235,
                (0, NAMECOIN, 30): 362964203, (0, DOGE, 0): 0, (0, DOGE, 1): 0, (0, DOGE, 3): 0,
                (0, DOGE, 8): 56, (0, DOGE, 30): 29760568}
    assert {key: expected_index(*key) for key in compiled} == compiled


def _qa_auxpow(block_hex: str, header: bytes) -> tuple[bytes, bytes]:
    """Dogecoin Core's QA framework (computeAuxpowWithChainId) made into bytes: its coinbase and its
    AuxPoW, for a header whose merkle root it does not care about. Transcribed, not imported: the
    original is Python 2 era code with a miner loop."""
    coinbase = "fabe" + b"mm".hex() + block_hex + "01000000" + "00" * 4
    vin = "01" + "00" * 32 + "ff" * 4 + f"{len(coinbase) // 2:02x}" + coinbase + "ff" * 4
    tx = "01000000" + vin + "00" + "00" * 4
    blockhash = sha256d(header)[::-1].hex()
    auxpow = tx + blockhash + "00" + "00" * 4 + "00" + "00" * 4 + header.hex()
    return bytes.fromhex(coinbase), bytes.fromhex(auxpow)


def test_single_chain_layout_matches_dogecoins_own_qa_framework() -> None:
    tree = build_aux_tree([(DOGE, AUX_HASH)])
    assert (tree.size, tree.height, tree.slots, tree.root) == (1, 0, (0,), AUX_HASH)
    commitment = tree.commitment()
    assert len(commitment) == COMMITMENT_SIZE == 44
    qa_script, _ = _qa_auxpow(AUX_HASH_HEX, bytes(80))
    assert commitment == qa_script  # the root goes in as the RPC prints the hash: reversed
    coinbase = (struct.pack("<i", 1) + b"\x01" + bytes(32) + b"\xff" * 4 + bytes([len(commitment)])
                + commitment + b"\xff" * 4 + b"\x00" + bytes(4))
    header = struct.pack("<i", 0x00620102 ^ 0x00600000) + bytes(32) + sha256d(coinbase) + bytes(12)
    _, qa_bytes = _qa_auxpow(AUX_HASH_HEX, header)
    ours = AuxPow(coinbase, (), tuple(tree.branch(0)), 0, header, parent_hash=sha256d(header)[::-1])
    assert ours.serialize() == qa_bytes
    assert AuxPow.parse(qa_bytes) == ours
    check_auxpow(ours, AUX_HASH, DOGE)


def _ltc_parent(commitment: bytes, transactions: int = 3) -> tuple[bytes, tuple[bytes, ...], bytes]:
    """A Litecoin regtest job whose coinbase carries `commitment` (built by mining.block as the
    solo upstream builds it): its legacy coinbase, merkle branch and a header on it."""
    template = {
        "height": 500, "version": 0x20000000, "previousblockhash": "11" * 32, "bits": "207fffff",
        "curtime": 1_700_000_000, "coinbasevalue": 625_000_000,
        "transactions": [{"txid": bytes([i]) * 32, "data": ""} for i in range(1, transactions + 1)],
    }
    for tx in template["transactions"]:
        tx["txid"] = tx["txid"].hex()  # type: ignore[attr-defined]
    script = address_to_script("mfWxJ45yp2SFn7UciZyNpvDKrzbhyfKrY8", LTC_REGTEST)
    parts = build_coinbase(template, script, b"/aux-test/", 8, LTC_REGTEST, aux_commitment=commitment)
    job = BlockTemplateWork.from_template(template).job("1", parts, stratum_branch(template))
    extranonce1, extranonce2 = b"\x01\x02\x03\x04", b"\x00\x00\x00\x07"
    return job.coinbase(extranonce1, extranonce2), job.merkle_branch, job.header(extranonce1, extranonce2,
                                                                                  1_700_000_001, 42)


def test_litecoin_coinbase_commitment_passes_cauxpow_check() -> None:
    tree = build_aux_tree([(DOGE, AUX_HASH)])
    coinbase, branch, header = _ltc_parent(tree.commitment())
    script = coinbase_script_sig(coinbase)
    # BIP34 height push, then the commitment as one push, then the extranonce and the tag.
    assert script[:3] == b"\x02\xf4\x01" and script[3] == COMMITMENT_SIZE
    assert script[4 : 4 + COMMITMENT_SIZE] == tree.commitment()
    auxpow = build_auxpow(coinbase, branch, tree, 0, header)
    assert len(auxpow.coinbase_branch) == 2  # 4 transactions: the coinbase's two siblings
    check_auxpow(auxpow, AUX_HASH, DOGE)
    assert AuxPow.parse(auxpow.serialize()) == auxpow


def test_two_chains_with_different_ids_ride_one_parent() -> None:
    other = sha256d(b"a namecoin block")
    tree = build_aux_tree([(DOGE, AUX_HASH), (NAMECOIN, other)])
    assert len(set(tree.slots)) == 2 and tree.size == 1 << tree.height >= 2
    assert tree.slots == (expected_index(0, DOGE, tree.height), expected_index(0, NAMECOIN, tree.height))
    for smaller in range(tree.height):  # the smallest tree that separates them
        assert expected_index(0, DOGE, smaller) == expected_index(0, NAMECOIN, smaller)
    coinbase, branch, header = _ltc_parent(tree.commitment())
    for chain, (chain_id, block_hash) in enumerate([(DOGE, AUX_HASH), (NAMECOIN, other)]):
        auxpow = build_auxpow(coinbase, branch, tree, chain, header)
        assert fold_branch(block_hash, auxpow.chain_branch, auxpow.chain_index) == tree.root
        check_auxpow(auxpow, block_hash, chain_id)
        # Each proof is for its own chain only: the other chain's slot is the wrong index.
        other_id = NAMECOIN if chain_id == DOGE else DOGE
        with pytest.raises(AuxPowError, match=r"wrong index|missing chain merkle root"):
            check_auxpow(auxpow, block_hash, other_id)


def test_two_chains_sharing_a_chain_id_cannot_ride_together() -> None:
    # Two Dogecoin chains (say mainnet and a regtest) both have id 98: one slot for both.
    with pytest.raises(ValueError, match="chain id 98 twice"):
        build_aux_tree([(DOGE, AUX_HASH), (DOGE, sha256d(b"another dogecoin"))])


def test_a_nonce_moves_the_slots() -> None:
    tree = build_aux_tree([(DOGE, AUX_HASH), (NAMECOIN, bytes(32))], nonce=12345)
    assert tree.commitment()[-4:] == struct.pack("<I", 12345)
    coinbase, branch, header = _ltc_parent(tree.commitment())
    check_auxpow(build_auxpow(coinbase, branch, tree, 0, header), AUX_HASH, DOGE)


def test_every_refusal_of_cauxpow_check() -> None:
    tree = build_aux_tree([(DOGE, AUX_HASH)])
    coinbase, branch, header = _ltc_parent(tree.commitment())
    good = build_auxpow(coinbase, branch, tree, 0, header)
    check_auxpow(good, AUX_HASH, DOGE)

    def refused(auxpow: AuxPow, message: str, aux_hash: bytes = AUX_HASH) -> None:
        with pytest.raises(AuxPowError, match=message):
            check_auxpow(auxpow, aux_hash, DOGE)

    refused(AuxPow(coinbase, branch, (), 0, header, coinbase_index=1), "not a generate")
    own_id = struct.pack("<i", DOGE << 16) + header[4:]
    refused(AuxPow(coinbase, branch, (), 0, own_id), "parent has our chain ID")
    check_auxpow(AuxPow(coinbase, branch, (), 0, own_id), AUX_HASH, DOGE, strict_chain_id=False)
    refused(AuxPow(coinbase, branch, (bytes(32),) * 31, 0, header), "branch too long")
    refused(AuxPow(coinbase, branch[:-1], (), 0, header), "merkle root incorrect")
    refused(good, "missing chain merkle root", aux_hash=sha256d(b"another block"))
    # A tree of two slots whose root is in the coinbase, but the coinbase says size 1.
    two = build_aux_tree([(DOGE, AUX_HASH), (NAMECOIN, bytes(32))])
    lying = two.commitment()[:36] + struct.pack("<II", 1, 0)
    cb, br, hd = _ltc_parent(lying)
    refused(build_auxpow(cb, br, two, 0, hd), "size does not match")
    # The right size, but the nonce puts chain 98 in the other slot.
    nonce = next(n for n in range(100) if expected_index(n, DOGE, 1) != two.slots[0])
    cb, br, hd = _ltc_parent(two.commitment()[:40] + struct.pack("<I", nonce))
    refused(build_auxpow(cb, br, two, 0, hd), "wrong index")
    cb, br, hd = _ltc_parent(tree.commitment() + MERGED_MINING_MARKER)
    refused(build_auxpow(cb, br, tree, 0, hd), "Multiple merged mining headers")
    cb, br, hd = _ltc_parent(MERGED_MINING_MARKER + b"\x00" + tree.commitment()[4:])
    refused(build_auxpow(cb, br, tree, 0, hd), "not just before chain merkle root")
    # The root at the very end of the scriptSig (a coinbase by hand: ours always has more after it).
    short = MERGED_MINING_MARKER + tree.root[::-1]
    cb = (struct.pack("<i", 1) + b"\x01" + bytes(36) + bytes([len(short)]) + short + bytes(4)
          + b"\x00" + bytes(4))
    hd = header[:36] + sha256d(cb) + header[68:]
    refused(AuxPow(cb, (), (), 0, hd), "missing chain merkle tree size and nonce")


def test_parse_refuses_what_is_no_auxpow() -> None:
    tree = build_aux_tree([(DOGE, AUX_HASH)])
    coinbase, branch, header = _ltc_parent(tree.commitment())
    data = build_auxpow(coinbase, branch, tree, 0, header).serialize()
    with pytest.raises(AuxPowError, match="truncated"):
        AuxPow.parse(data[:-1])
    with pytest.raises(AuxPowError, match="after the parent header"):
        AuxPow.parse(data + b"\x00")
    segwit = coinbase[:4] + b"\x00\x01" + coinbase[4:]
    with pytest.raises(AuxPowError, match="segwit"):
        AuxPow.parse(segwit + data[len(coinbase):])


def _createauxblock(target_hex: str, bits: str = "207fffff") -> dict[str, object]:
    """The shape of Dogecoin Core's answer (rpc/mining.cpp, AuxMiningCreateBlock)."""
    return {"hash": AUX_HASH_HEX, "chainid": DOGE, "previousblockhash": "22" * 32,
            "coinbasevalue": 50_000_000_000, "bits": bits, "height": 21, "target": target_hex}


def test_createauxblock_target_is_little_endian() -> None:
    target = bits_to_target(0x207FFFFF)
    little = target.to_bytes(32, "little").hex()
    assert little.startswith("00") and little.endswith("ff7f")  # 0x7fffff·2^232, low bytes first
    block = AuxBlock.from_rpc(_createauxblock(little))
    assert (block.hash, block.hash_hex, block.target, block.chain_id, block.height) == \
        (AUX_HASH, AUX_HASH_HEX, target, DOGE, 21)
    with pytest.raises(ValueError, match="little-endian"):
        AuxBlock.from_rpc(_createauxblock(target.to_bytes(32, "big").hex()))
    with pytest.raises(ValueError, match="'chainid'"):
        AuxBlock.from_rpc({**_createauxblock(little), "chainid": "98"})
    with pytest.raises(ValueError, match="'hash'"):
        AuxBlock.from_rpc({**_createauxblock(little), "hash": "zz"})


def test_dogecoin_regtest_addresses() -> None:
    # P2PKH version 111 on regtest (the peers README), 113 on testnet; P2SH 196 on both.
    digest = bytes(range(20))
    p2pkh, p2sh = _base58check(bytes([111]) + digest), _base58check(bytes([196]) + digest)
    assert address_to_script(p2pkh, DOGE_REGTEST).hex() == f"76a914{digest.hex()}88ac"
    assert address_to_script(p2sh, DOGE_REGTEST).hex() == f"a914{digest.hex()}87"
    assert DOGE_REGTEST.aux_chain_id == DOGE


def _base58check(payload: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    data = payload + sha256d(payload)[:4]
    number, text = int.from_bytes(data, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = alphabet[digit] + text
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + text
