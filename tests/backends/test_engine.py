"""The engine interface: range splitting, work validation, the host re-check."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.engine import (
    NONCE_SPACE,
    RateMeter,
    SearchResult,
    SearchWork,
    split_range,
    verify_candidates,
)
from mining.hashing import hash_to_int, scrypt_pow


@settings(max_examples=200)
@given(
    start=st.integers(0, NONCE_SPACE - 1),
    count=st.integers(0, 10_000),
    parts=st.integers(1, 64),
)
def test_split_range_covers_each_nonce_once(start: int, count: int, parts: int) -> None:
    ranges = split_range(start, count, parts)
    nonces = [nonce for part in ranges for nonce in part]
    assert nonces == list(range(start, start + count))
    assert len(ranges) <= parts
    sizes = [len(part) for part in ranges]
    assert not sizes or max(sizes) - min(sizes) <= 1


def test_split_range_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        split_range(0, 10, 0)
    with pytest.raises(ValueError):
        split_range(0, -1, 2)


def test_search_work_stays_inside_the_nonce_space() -> None:
    prefix = bytes(76)
    SearchWork(prefix, NONCE_SPACE - 1, 1, 0)
    with pytest.raises(ValueError, match="past the 32-bit"):
        SearchWork(prefix, NONCE_SPACE - 1, 2, 0)
    with pytest.raises(ValueError, match="76 bytes"):
        SearchWork(bytes(80), 0, 1, 0)
    with pytest.raises(ValueError):
        SearchWork(prefix, -1, 1, 0)
    with pytest.raises(ValueError):
        SearchWork(prefix, 0, 1, 1 << 256)


def test_host_check_drops_false_and_out_of_range_candidates(vectors: list[dict[str, str]]) -> None:
    header = bytes.fromhex(vectors[0]["header"])
    nonce = struct.unpack("<I", header[76:])[0]
    target = hash_to_int(scrypt_pow(header))
    work = SearchWork(header[:76], nonce - 2, 5, target)
    found, refused = verify_candidates(work, [nonce, nonce + 1, nonce, nonce + 100])
    assert found == [nonce]
    assert refused == 2  # nonce+1 misses the target, nonce+100 is outside the range


def test_rate_meter_forgets_old_searches() -> None:
    meter = RateMeter(window_s=10)
    meter.add(SearchResult([], 1000, False, 1.0), now=0.0)
    meter.add(SearchResult([], 3000, False, 1.0), now=5.0)
    assert meter.rate == 2000
    meter.add(SearchResult([], 500, False, 1.0), now=12.0)
    assert meter.rate == 1750
