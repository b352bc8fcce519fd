"""Coinbase, merkle branch, header and block assembly (mining/block.py) against blocks Litecoin Core
accepted (shared/vectors/ltc_regtest_blocks.json), byte for byte."""

import copy
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from mining.address import address_to_script
from mining.block import (
    BlockTemplateWork,
    CoinbaseParts,
    assemble_block,
    build_coinbase,
    stratum_branch,
    witness_coinbase,
)
from mining.coins import DOGE_MAIN, LTC_REGTEST
from mining.hashing import hash_to_hex, hash_to_int, scrypt_pow, sha256d
from mining.job import Job
from mining.merkle import merkle_branch, merkle_root
from mining.serialize import compact_size

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"
BOOK: dict[str, Any] = json.loads((VECTORS / "ltc_regtest_blocks.json").read_text())
CASES: dict[str, dict[str, Any]] = {case["name"]: case for case in BOOK["cases"]}
TAG = b"/qscrypt-vector/"
HOGEX_MARKER_FLAG = b"\x00\x08"


@dataclass(frozen=True)
class Built:
    template: dict[str, Any]
    extranonce1: bytes
    extranonce2: bytes
    parts: CoinbaseParts
    job: Job
    header: bytes
    coinbase: bytes  # legacy serialization
    block: bytes


def _build(case: dict[str, Any]) -> Built:
    template = case["template"]
    split = case["coinbase_parts"]
    extranonce1 = bytes.fromhex(split["extranonce1_hex"])
    extranonce2 = bytes.fromhex(split["extranonce2_hex"])
    payout = address_to_script(case["payout_address"], LTC_REGTEST)
    parts = build_coinbase(template, payout, TAG, len(extranonce1) + len(extranonce2), LTC_REGTEST)
    job = BlockTemplateWork.from_template(template).job("vector", parts, stratum_branch(template))
    header = job.header(extranonce1, extranonce2, case["ntime"], case["nonce"])
    coinbase = job.coinbase(extranonce1, extranonce2)
    block = assemble_block(header, coinbase, template)
    return Built(template, extranonce1, extranonce2, parts, job, header, coinbase, block)


case_names = pytest.mark.parametrize("name", sorted(CASES))


@case_names
def test_coinbase_split_matches(name: str) -> None:
    case = CASES[name]
    built = _build(case)
    assert address_to_script(case["payout_address"], LTC_REGTEST).hex() == case["payout_script_hex"]
    assert built.parts.coinb1.hex() == case["coinbase_parts"]["coinb1_hex"]
    assert built.parts.coinb2.hex() == case["coinbase_parts"]["coinb2_hex"]
    assert built.parts.coinb1.endswith(bytes([len(built.extranonce1) + len(built.extranonce2)]))
    assert built.parts.has_witness_commitment
    assert hash_to_hex(sha256d(built.coinbase)) == case["coinbase_txid"]
    assert witness_coinbase(built.coinbase).hex() == case["coinbase_witness_hex"]


@case_names
def test_merkle_branch_and_root_match(name: str) -> None:
    case = CASES[name]
    built = _build(case)
    assert [h.hex() for h in stratum_branch(case["template"])] == case["merkle_branch"]
    root = built.job.merkle_root(built.extranonce1, built.extranonce2)
    assert root.hex() == case["merkle_root_hex"]
    txids = [bytes.fromhex(tx["txid"])[::-1] for tx in case["template"]["transactions"]]
    assert root == merkle_root([sha256d(built.coinbase), *txids])


@case_names
def test_header_hashes_and_proof_of_work_match(name: str) -> None:
    case = CASES[name]
    built = _build(case)
    assert built.header.hex() == case["header_hex"]
    assert hash_to_hex(sha256d(built.header)) == case["block_hash"]
    assert hash_to_hex(scrypt_pow(built.header)) == case["scrypt_pow_hex"]
    work = BlockTemplateWork.from_template(case["template"])
    assert hash_to_int(scrypt_pow(built.header)) <= work.target
    assert built.header[4:36] == work.prevhash == bytes.fromhex(case["template"]["previousblockhash"])[::-1]


@case_names
def test_a_miner_rebuilding_the_job_from_notify_gets_the_same_header(name: str) -> None:
    case = CASES[name]
    built = _build(case)
    miner_job = Job.from_notify(built.job.notify_params())
    header = miner_job.header(built.extranonce1, built.extranonce2, case["ntime"], case["nonce"])
    assert header == built.header


@case_names
def test_assembled_block_is_the_accepted_block(name: str) -> None:
    case = CASES[name]
    assert _build(case).block.hex() == case["block_hex"]


def test_work_fields() -> None:
    template = CASES["premweb_txs"]["template"]
    work = BlockTemplateWork.from_template(template)
    assert (work.height, work.version, work.bits) == (103, 0x20000000, 0x207FFFFF)
    assert (work.curtime, work.coinbasevalue) == (template["curtime"], template["coinbasevalue"])
    assert work.target == 0x7FFFFF << 232
    job = work.job("j", CoinbaseParts(b"\x01", b"\x02", False), [], clean_jobs=False)
    assert (job.ntime, job.clean_jobs, job.merkle_branch) == (template["curtime"], False, ())


# --- the wrong layouts Litecoin Core rejected ---------------------------------------------------


def _read_compact(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0xFD:
        return first, pos + 1
    size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def _legacy(tx: bytes) -> bytes:
    """A transaction without its witness (or, for the HogEx, without its MWEB flag and byte)."""
    if tx[4:6] == HOGEX_MARKER_FLAG:
        assert tx[-5] == 0  # no MWEB transaction attached
        return tx[:4] + tx[6:-5] + tx[-4:]
    if tx[4:6] != b"\x00\x01":
        return tx
    pos = 6
    inputs, pos = _read_compact(tx, pos)
    for _ in range(inputs):
        script_size, pos = _read_compact(tx, pos + 36)
        pos += script_size + 4
    outputs, pos = _read_compact(tx, pos)
    for _ in range(outputs):
        script_size, pos = _read_compact(tx, pos + 8)
        pos += script_size
    body_end = pos
    for _ in range(inputs):
        items, pos = _read_compact(tx, pos)
        for _ in range(items):
            size, pos = _read_compact(tx, pos)
            pos += size
    assert pos == len(tx) - 4
    return tx[:4] + tx[6:body_end] + tx[-4:]


@case_names
def test_template_txids_hash_the_legacy_serialization(name: str) -> None:
    # Why the branch is built from `txid`, not `hash`: the merkle root commits to witness-less txs.
    for tx in CASES[name]["template"]["transactions"]:
        assert hash_to_hex(sha256d(_legacy(bytes.fromhex(tx["data"])))) == tx["txid"]


def _pieces(name: str) -> tuple[Built, list[bytes], bytes]:
    built = _build(CASES[name])
    txs = [bytes.fromhex(tx["data"]) for tx in built.template["transactions"]]
    return built, txs, bytes.fromhex(built.template["mweb"]) if "mweb" in built.template else b""


def _block(built: Built, txs: list[bytes], tail: bytes, header: bytes | None = None) -> bytes:
    body = witness_coinbase(built.coinbase) + b"".join(txs)
    return (header or built.header) + compact_size(1 + len(txs)) + body + tail


def _no_mweb_bytes() -> bytes:
    built, txs, _ = _pieces("mweb_txs")
    return _block(built, txs, b"")


def _mweb_without_01() -> bytes:
    built, txs, mweb = _pieces("mweb_txs")
    return _block(built, txs, mweb)


def _absent_byte() -> bytes:
    built, txs, _ = _pieces("mweb_txs")
    return _block(built, txs, b"\x00")


def _hogex_without_flag() -> bytes:
    built, txs, mweb = _pieces("mweb_txs")
    assert txs[-1][4:6] == HOGEX_MARKER_FLAG
    return _block(built, [*txs[:-1], _legacy(txs[-1])], b"\x01" + mweb)


def _coinbase_only() -> bytes:
    built, _, _ = _pieces("mweb_txs")
    bare = {k: v for k, v in built.template.items() if k not in ("default_witness_commitment", "mweb")}
    bare["transactions"] = []
    split = CASES["mweb_txs"]["coinbase_parts"]
    payout = address_to_script(CASES["mweb_txs"]["payout_address"], LTC_REGTEST)
    parts = build_coinbase(bare, payout, TAG, 8, LTC_REGTEST)
    assert not parts.has_witness_commitment
    extranonce = bytes.fromhex(split["extranonce1_hex"] + split["extranonce2_hex"])
    coinbase = parts.coinb1 + extranonce + parts.coinb2
    return assemble_block(built.header, coinbase, bare)


def _hogex_dropped() -> bytes:
    built, txs, mweb = _pieces("mweb_txs")
    return _block(built, txs[:-1], b"\x01" + mweb)


def _hogex_first() -> bytes:
    built, txs, mweb = _pieces("mweb_txs")
    return _block(built, [txs[-1], *txs[:-1]], b"\x01" + mweb)


def _hogex_outside_merkle_root() -> bytes:
    built, txs, mweb = _pieces("mweb_txs")
    txids = [bytes.fromhex(tx["txid"])[::-1] for tx in built.template["transactions"]]
    without_hogex = merkle_branch(txids[:-1])
    assert without_hogex != list(built.job.merkle_branch)
    job = replace(built.job, merkle_branch=tuple(without_hogex))
    header = job.header(built.extranonce1, built.extranonce2, CASES["mweb_txs"]["ntime"], 0)
    return _block(built, txs, b"\x01" + mweb, header)


def _pegin_as_template_gives_it() -> bytes | None:
    # The raw peg-in (flag 0x09) is not in the vectors; what we can check is that the block carries the
    # template's stripped form (flag 0x01) verbatim, never an MWEB-flagged transaction before the HogEx.
    built, txs, _ = _pieces("mweb_pegin")
    assert [tx[5] for tx in txs] == [0x01, 0x08]
    assert all(tx in built.block for tx in txs)
    return None


def _witnesses_stripped() -> bytes:
    built, txs, _ = _pieces("premweb_txs")
    stripped = [_legacy(tx) for tx in txs]
    assert stripped != txs
    return _block(built, stripped, b"")


REJECTED_LAYOUTS: dict[str, tuple[str, Callable[[], bytes | None]]] = {
    "MWEB active: block ends right after the last transaction (no 0x01 || mweb bytes)":
        ("mweb_txs", _no_mweb_bytes),
    "MWEB active: template mweb hex appended without the leading 0x01 byte": ("mweb_txs", _mweb_without_01),
    "MWEB active: a single 0x00 (absent) byte instead of 0x01 || mweb": ("mweb_txs", _absent_byte),
    "MWEB active: HogEx re-serialized without the 0x08 flag (and its trailing 0x00)":
        ("mweb_txs", _hogex_without_flag),
    "MWEB active: block = header + coinbase only (no HogEx, no MWEB bytes, no witness commitment)":
        ("mweb_txs", _coinbase_only),
    "MWEB active: HogEx dropped from the tx list (0x01 || mweb kept)": ("mweb_txs", _hogex_dropped),
    "MWEB active: HogEx not last (moved before the other template txs)": ("mweb_txs", _hogex_first),
    "MWEB active: HogEx serialized in the block but its txid left out of the merkle root":
        ("mweb_txs", _hogex_outside_merkle_root),
    "MWEB active: peg-in tx taken from getrawtransaction (flag 0x09, MWEB tx attached)"
    " instead of template data": ("mweb_pegin", _pegin_as_template_gives_it),
    "Before MWEB: non-coinbase txs serialized with their witnesses stripped":
        ("premweb_txs", _witnesses_stripped),
}


@pytest.mark.parametrize("rejection", BOOK["rejections"], ids=lambda r: r["submitblock_answer"])
def test_rejected_layouts_differ_from_what_we_assemble(rejection: dict[str, str]) -> None:
    assert rejection["what_was_wrong"] in REJECTED_LAYOUTS, "a rejection new to the vectors needs a check"
    name, wrong_layout = REJECTED_LAYOUTS[rejection["what_was_wrong"]]
    wrong = wrong_layout()
    if wrong is not None:
        assert wrong != _build(CASES[name]).block
        assert wrong.hex() != CASES[name]["block_hex"]


# --- edges ----------------------------------------------------------------------------------------


def _template(**changes: Any) -> dict[str, Any]:
    template = copy.deepcopy(CASES["premweb_empty"]["template"])
    template.update(changes)
    return template


PAYOUT = bytes.fromhex(CASES["premweb_empty"]["payout_script_hex"])


def test_the_100_byte_script_sig_limit() -> None:
    # height 104 push (2) + extranonce push (1 + 8) + tag push (OP_PUSHDATA1, n, tag: 2 + n) = 100 at n = 87.
    assert build_coinbase(_template(), PAYOUT, b"t" * 87, 8, LTC_REGTEST).coinb1[41] == 100
    with pytest.raises(ValueError, match="100-byte limit: shorten the coinbase tag"):
        build_coinbase(_template(), PAYOUT, b"t" * 88, 8, LTC_REGTEST)


@pytest.mark.parametrize("size", [0, 76, -1])
def test_extranonce_size_must_fit_a_one_byte_push(size: int) -> None:
    with pytest.raises(ValueError, match="extranonce size"):
        build_coinbase(_template(), PAYOUT, TAG, size, LTC_REGTEST)


@pytest.mark.parametrize(("height", "prefix"), [(1, "51"), (16, "60"), (17, "0111"), (128, "028000"),
                                                (500_000, "0320a107")])
def test_bip34_height_starts_the_script_sig(height: int, prefix: str) -> None:
    coinb1 = build_coinbase(_template(height=height), PAYOUT, TAG, 8, LTC_REGTEST).coinb1
    assert coinb1[42:].hex() == prefix + "08"


def test_template_without_witness_commitment_gives_a_legacy_coinbase_and_block() -> None:
    template = _template()
    del template["default_witness_commitment"]
    parts = build_coinbase(template, PAYOUT, TAG, 8, DOGE_MAIN)
    assert not parts.has_witness_commitment
    coinbase = parts.coinb1 + bytes(8) + parts.coinb2
    assert parts.coinb2[len(TAG) + 1 + 4] == 1  # one output
    header = bytes(80)
    assert assemble_block(header, coinbase, template) == header + b"\x01" + coinbase


def test_a_template_from_another_chain_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="dogecoin mainnet has no segwit"):
        build_coinbase(_template(), PAYOUT, TAG, 8, DOGE_MAIN)
    template = copy.deepcopy(CASES["mweb_pegin"]["template"])
    del template["default_witness_commitment"]
    with pytest.raises(ValueError, match="dogecoin mainnet has no MWEB"):
        build_coinbase(template, PAYOUT, TAG, 8, DOGE_MAIN)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"height": None}, "height"),
        ({"height": "104"}, "height"),
        ({"coinbasevalue": -1}, "coinbasevalue"),
        ({"coinbasevalue": True}, "coinbasevalue"),
        ({"default_witness_commitment": "zz"}, "default_witness_commitment"),
        ({"transactions": [{"txid": "00"}]}, "txid"),
        ({"transactions": {"txid": "00" * 32}}, "transactions"),
    ],
)
def test_malformed_templates_name_the_field(changes: dict[str, Any], named: str) -> None:
    template = _template(**changes)
    with pytest.raises(ValueError, match=named):
        # Whichever of the template's readers meets the bad field first must name it.
        build_coinbase(template, PAYOUT, TAG, 8, LTC_REGTEST)
        stratum_branch(template)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"previousblockhash": "00" * 31}, "previousblockhash"),
        ({"bits": "207fffff00"}, "bits"),
        ({"version": 1 << 32}, "version"),
        ({"curtime": 1.5}, "curtime"),
    ],
)
def test_malformed_header_fields_name_the_field(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        BlockTemplateWork.from_template(_template(**changes))


def test_witness_coinbase_needs_a_one_input_legacy_transaction() -> None:
    with pytest.raises(ValueError):
        witness_coinbase(bytes.fromhex(CASES["premweb_empty"]["coinbase_witness_hex"]))
    with pytest.raises(ValueError):
        witness_coinbase(b"\x02\x00\x00\x00")


def test_assemble_block_needs_an_80_byte_header() -> None:
    with pytest.raises(ValueError, match="80 bytes"):
        assemble_block(bytes(79), b"", _template())


def test_empty_payout_script_is_refused() -> None:
    with pytest.raises(ValueError, match="payout script"):
        build_coinbase(_template(), b"", TAG, 8, LTC_REGTEST)


def test_coinbase_layout_fields() -> None:
    parts = build_coinbase(_template(), PAYOUT, TAG, 8, LTC_REGTEST)
    assert parts.coinb1[:4] == struct.pack("<i", 2)
    assert parts.coinb1[4:9] == b"\x01" + bytes(4) and parts.coinb1[37:41] == b"\xff" * 4
    assert parts.coinb2.endswith(bytes(4))
