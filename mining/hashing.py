"""Hash functions used by scrypt coins: sha256d for ids and merkle trees, scrypt for proof of work.

Both are C (mining/_hashes.c, mining/_scrypt.c). sha256d: the proxy runs it for the coinbase and
every merkle step of every share it checks, and through hashlib each call costs four times the hash
itself. scrypt: several headers at once in SIMD lanes (AVX-512 or AVX2, chosen at run time, else
portable C), `python -m bench.scrypt` prints each beside hashlib.scrypt and cpuminer. Its speed is
in `scrypt_many` with several headers; one header alone runs in one lane (still ~1.5-2 times
hashlib.scrypt). It releases the GIL while hashing.
"""

from mining._hashes import scrypt_impls, scrypt_many, sha256d

__all__ = [
    "HEADER_BYTES", "POW_HASH_BYTES", "hash_to_hex", "hash_to_int", "scrypt_impls", "scrypt_many",
    "scrypt_pow", "sha256d",
]

HEADER_BYTES = 80
POW_HASH_BYTES = 32


def scrypt_pow(header: bytes) -> bytes:
    """scrypt(N=1024, r=1, p=1) of an 80-byte header salted with itself: Litecoin's proof of work."""
    if len(header) != HEADER_BYTES:
        raise ValueError(f"a block header is {HEADER_BYTES} bytes, got {len(header)}")
    return scrypt_many(header)


def hash_to_int(digest: bytes) -> int:
    """Hashes compare against targets as little-endian 256-bit integers."""
    return int.from_bytes(digest, "little")


def hash_to_hex(digest: bytes) -> str:
    """Display order, as block explorers and Litecoin Core print hashes (bytes reversed)."""
    return digest[::-1].hex()
