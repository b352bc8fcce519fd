"""Hash functions used by scrypt coins: sha256d for ids and merkle trees, scrypt for proof of work.

sha256d is C (mining/_sha256d.c): the proxy runs it for the coinbase and every merkle step of
every share it checks, and through hashlib each call costs four times the hash itself."""

import hashlib

from mining._sha256d import sha256d

__all__ = ["hash_to_hex", "hash_to_int", "scrypt_pow", "sha256d"]

# hashlib.scrypt (OpenSSL) was chosen over the `scrypt` package by measurement (bench/scrypt.py,
# BENCHMARKS.md): it is faster per call and releases the GIL, so a thread pool scales with cores.
_SCRYPT_N = 1024
_SCRYPT_R = 1
_SCRYPT_P = 1
_SCRYPT_MAXMEM = 2 * 1024 * 1024


def scrypt_pow(header: bytes) -> bytes:
    """scrypt(N=1024, r=1, p=1) of an 80-byte header salted with itself: Litecoin's proof of work."""
    if len(header) != 80:
        raise ValueError(f"a block header is 80 bytes, got {len(header)}")
    return hashlib.scrypt(
        header, salt=header, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM, dklen=32
    )


def hash_to_int(digest: bytes) -> int:
    """Hashes compare against targets as little-endian 256-bit integers."""
    return int.from_bytes(digest, "little")


def hash_to_hex(digest: bytes) -> str:
    """Display order, as block explorers and Litecoin Core print hashes (bytes reversed)."""
    return digest[::-1].hex()
