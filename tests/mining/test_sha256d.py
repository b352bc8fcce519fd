"""sha256d in C (mining/_hashes.c) against hashlib, and its behaviour with odd inputs."""

import hashlib
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mining.hashing import sha256d


def _reference(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_equals_hashlib_twice(data: bytes) -> None:
    assert sha256d(data) == _reference(data)


@pytest.mark.parametrize("length", [0, 1, 31, 32, 55, 56, 63, 64, 65, 80, 119, 120, 128, 2047, 2048, 1 << 20])
def test_block_and_padding_boundaries(length: int) -> None:
    data = bytes(i % 251 for i in range(length))
    assert sha256d(data) == _reference(data)


def test_known_value() -> None:
    # sha256d of the empty string, as every Bitcoin-family library prints it.
    assert sha256d(b"").hex() == "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"


def test_takes_any_bytes_like_object() -> None:
    data = bytes(range(200))
    expected = _reference(data)
    assert sha256d(bytearray(data)) == expected
    assert sha256d(memoryview(data)) == expected
    assert sha256d(memoryview(b"xx" + data)[2:]) == expected


@pytest.mark.parametrize("bad", ["text", 12, None, [1, 2]])
def test_refuses_what_is_not_bytes(bad: object) -> None:
    with pytest.raises(TypeError):
        sha256d(bad)  # type: ignore[arg-type]


def test_large_inputs_hash_correctly_from_many_threads() -> None:
    # Above 2 KiB the GIL is let go while hashing: threads must not see each other's state.
    inputs = [bytes([i]) * (64 * 1024 + i) for i in range(8)]
    expected = [_reference(data) for data in inputs]
    results: list[list[bytes]] = [[] for _ in inputs]

    def work(index: int) -> None:
        for _ in range(50):
            results[index].append(sha256d(inputs[index]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, got in enumerate(results):
        assert got == [expected[index]] * 50
