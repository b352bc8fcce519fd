"""Merkle branches and roots (mining/merkle.py) and Stratum jobs (mining/job.py)."""

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mining.hashing import sha256d
from mining.job import Job, parse_hex, parse_u32_hex
from mining.merkle import merkle_branch, merkle_root, merkle_root_from_branch
from mining.serialize import swap_words

FEW = settings(max_examples=60, deadline=None)
hash32 = st.binary(min_size=32, max_size=32)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)


@FEW
@given(hash32, st.lists(hash32, min_size=0, max_size=20))
def test_branch_folds_to_the_root_over_all_txids(coinbase_txid: bytes, txids: list[bytes]) -> None:
    branch = merkle_branch(txids)
    assert merkle_root_from_branch(coinbase_txid, branch) == merkle_root([coinbase_txid, *txids])
    assert len(branch) == (len(txids)).bit_length()


def test_small_trees_by_hand() -> None:
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    assert merkle_branch([]) == []
    assert merkle_root([a]) == a
    assert merkle_branch([b]) == [b]
    assert merkle_root([a, b]) == sha256d(a + b)
    # Odd layers pair their last hash with itself.
    assert merkle_branch([b, c]) == [b, sha256d(c + c)]
    assert merkle_root([a, b, c]) == sha256d(sha256d(a + b) + sha256d(c + c))


def test_merkle_root_needs_the_coinbase() -> None:
    with pytest.raises(ValueError):
        merkle_root([])


jobs = st.builds(
    Job,
    job_id=st.text(alphabet="0123456789abcdef", min_size=1, max_size=16),
    prevhash=hash32,
    coinb1=st.binary(max_size=80),
    coinb2=st.binary(max_size=120),
    merkle_branch=st.lists(hash32, max_size=12).map(tuple),
    version=u32,
    bits=u32,
    ntime=u32,
    clean_jobs=st.booleans(),
)


@FEW
@given(jobs)
def test_notify_round_trip(job: Job) -> None:
    params = job.notify_params()
    assert Job.from_notify(params) == job
    # Canonical (lower-case hex) params survive the trip unchanged too.
    assert Job.from_notify(params).notify_params() == params


def test_notify_sends_prevhash_word_swapped_and_numbers_as_big_endian_hex() -> None:
    prevhash = bytes(range(32))
    job = Job("j1", prevhash, b"\x01", b"\x02", (), 0x20000000, 0x1B47C7EA, 0x5A0B1C2D)
    params = job.notify_params(job_id="j2", clean_jobs=True)
    assert params[0] == "j2"
    assert params[1] == swap_words(prevhash).hex()
    assert params[1][:8] == "03020100"
    assert params[5:9] == ["20000000", "1b47c7ea", "5a0b1c2d", True]


def test_header_layout() -> None:
    branch = (bytes([7]) * 32,)
    job = Job("j", bytes(range(32)), b"\xaa" * 42, b"\xbb" * 50, branch, 0x20000000, 0x207FFFFF, 1700000000)
    en1, en2 = b"\x01\x02\x03\x04", b"\x00\x00\x00\x09"
    header = job.header(en1, en2, ntime=1700000005, nonce=0xDEADBEEF)
    coinbase = job.coinbase(en1, en2)
    assert coinbase == job.coinb1 + en1 + en2 + job.coinb2
    root = sha256d(sha256d(coinbase) + branch[0])
    assert len(header) == 80
    assert header[:4] == struct.pack("<I", 0x20000000)
    assert header[4:36] == job.prevhash
    assert header[36:68] == root == job.merkle_root(en1, en2)
    assert header[68:72] == struct.pack("<I", 1700000005)
    assert header[72:76] == bytes.fromhex("ffff7f20")
    assert header[76:] == struct.pack("<I", 0xDEADBEEF)
    assert job.header_prefix(root, 1700000005) == header[:76]


def _good_params() -> list[Any]:
    return ["ab", "00" * 32, "01", "02", ["11" * 32], "20000000", "1d00ffff", "5a0b1c2d", False]


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, ""),
        (0, 7),
        (1, "00" * 31),
        (1, "zz" * 32),
        (1, None),
        (2, "0"),
        (3, 5),
        (4, "11" * 32),
        (4, ["11" * 31]),
        (4, [17]),
        (5, "2000000"),
        (5, 0x20000000),
        (6, "1d00ffff00"),
        (7, "xyzw0000"),
    ],
)
def test_malformed_notify_params_raise_value_error(index: int, value: object) -> None:
    params = _good_params()
    params[index] = value
    with pytest.raises(ValueError):
        Job.from_notify(params)


@pytest.mark.parametrize("params", [None, "params", {}, [], _good_params()[:8]])
def test_notify_params_must_be_a_list_of_nine(params: Any) -> None:
    with pytest.raises(ValueError):
        Job.from_notify(params)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


@FEW
@given(st.lists(json_values, max_size=11))
def test_arbitrary_notify_params_give_a_job_or_value_error(params: list[Any]) -> None:
    try:
        Job.from_notify(params)
    except ValueError:
        pass


def test_parse_helpers() -> None:
    assert parse_u32_hex("0000002a", "nonce") == 42
    assert parse_hex("abcd", "extranonce2", 2) == b"\xab\xcd"
    with pytest.raises(ValueError, match="nonce"):
        parse_u32_hex("2a", "nonce")
    with pytest.raises(ValueError, match="extranonce2"):
        parse_hex("abc", "extranonce2")
