"""scrypt and sha256d against real chain headers (shared/vectors/scrypt_headers.json)."""

import json
from pathlib import Path
from typing import Any

import pytest

from mining.coins import LTC_MAIN
from mining.hashing import hash_to_hex, hash_to_int, scrypt_pow, sha256d
from mining.target import bits_to_target

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"
HEADER_VECTORS: list[dict[str, Any]] = json.loads((VECTORS / "scrypt_headers.json").read_text())["vectors"]
GENESIS = next(v for v in HEADER_VECTORS if v.get("name") == "litecoin-mainnet-genesis")


def _header_bits(header: bytes) -> int:
    return int.from_bytes(header[72:76], "little")


@pytest.mark.parametrize("vector", HEADER_VECTORS, ids=lambda v: v.get("name", v["scrypt"][:16]))
def test_scrypt_pow_matches_vector(vector: dict[str, Any]) -> None:
    header = bytes.fromhex(vector["header"])
    assert hash_to_hex(scrypt_pow(header)) == vector["scrypt"]
    assert LTC_MAIN.pow_hash(header) == scrypt_pow(header)


@pytest.mark.parametrize("vector", HEADER_VECTORS, ids=lambda v: v.get("name", v["scrypt"][:16]))
def test_real_headers_meet_their_own_target(vector: dict[str, Any]) -> None:
    header = bytes.fromhex(vector["header"])
    assert hash_to_int(scrypt_pow(header)) <= bits_to_target(_header_bits(header))


def test_genesis_block_id_bits_and_proof_of_work() -> None:
    header = bytes.fromhex(GENESIS["header"])
    assert hash_to_hex(sha256d(header)) == GENESIS["sha256d"]
    assert _header_bits(header) == int(GENESIS["bits"], 16)
    target = bits_to_target(int(GENESIS["bits"], 16))
    assert target == 0x0FFFF0 << (8 * (0x1E - 3))
    assert hash_to_int(scrypt_pow(header)) <= target


def test_hash_display_order_is_reversed_and_integers_little_endian() -> None:
    digest = bytes(range(32))
    assert hash_to_hex(digest) == digest[::-1].hex()
    assert hash_to_int(digest) == int.from_bytes(digest[::-1], "big")


@pytest.mark.parametrize("length", [0, 79, 81])
def test_scrypt_pow_refuses_anything_but_an_80_byte_header(length: int) -> None:
    with pytest.raises(ValueError, match="80 bytes"):
        scrypt_pow(bytes(length))
