"""A Stratum job and the headers built from it.

`Job` holds a `mining.notify` in its wire form (hex strings become bytes once, here), so every
share checked against it reuses the parsed pieces instead of decoding hex per share.
"""

import struct
from dataclasses import dataclass, field

from mining.hashing import sha256d
from mining.merkle import merkle_root_from_branch
from mining.serialize import swap_words

_U32 = struct.Struct("<I")
_TIME_BITS_NONCE = struct.Struct("<III")


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    prevhash: bytes  # header byte order (the Stratum word swap already undone)
    coinb1: bytes
    coinb2: bytes
    merkle_branch: tuple[bytes, ...]
    version: int
    bits: int
    ntime: int
    clean_jobs: bool = False
    extra: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_notify(cls, params: list[object]) -> "Job":
        """Build a job from `mining.notify` params; raises ValueError on any malformed field."""
        if not isinstance(params, list) or len(params) < 9:
            raise ValueError("mining.notify needs 9 params")
        job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean = params[:9]
        if not isinstance(job_id, str) or not job_id:
            raise ValueError("job_id must be a non-empty string")
        if not isinstance(branch, list):
            raise ValueError("merkle_branch must be a list")
        prev = _hex(prevhash, "prevhash", 32)
        return cls(
            job_id=job_id,
            prevhash=swap_words(prev),
            coinb1=_hex(coinb1, "coinb1"),
            coinb2=_hex(coinb2, "coinb2"),
            merkle_branch=tuple(_hex(h, "merkle_branch", 32) for h in branch),
            version=_u32(version, "version"),
            bits=_u32(nbits, "nbits"),
            ntime=_u32(ntime, "ntime"),
            clean_jobs=bool(clean),
        )

    def notify_params(self, job_id: str | None = None, clean_jobs: bool | None = None) -> list[object]:
        return [
            self.job_id if job_id is None else job_id,
            swap_words(self.prevhash).hex(),
            self.coinb1.hex(),
            self.coinb2.hex(),
            [h.hex() for h in self.merkle_branch],
            f"{self.version:08x}",
            f"{self.bits:08x}",
            f"{self.ntime:08x}",
            self.clean_jobs if clean_jobs is None else clean_jobs,
        ]

    def coinbase(self, extranonce1: bytes, extranonce2: bytes) -> bytes:
        return self.coinb1 + extranonce1 + extranonce2 + self.coinb2

    def merkle_root(self, extranonce1: bytes, extranonce2: bytes) -> bytes:
        return merkle_root_from_branch(sha256d(self.coinbase(extranonce1, extranonce2)), self.merkle_branch)

    def header_prefix(self, merkle_root: bytes, ntime: int) -> bytes:
        """The first 76 bytes of the header: everything but the nonce."""
        return (
            struct.pack("<I", self.version)
            + self.prevhash
            + merkle_root
            + struct.pack("<II", ntime, self.bits)
        )

    def header(self, extranonce1: bytes, extranonce2: bytes, ntime: int, nonce: int) -> bytes:
        # One pack for the tail instead of header_prefix + nonce: the proxy builds one per share.
        root = self.merkle_root(extranonce1, extranonce2)
        return _U32.pack(self.version) + self.prevhash + root + _TIME_BITS_NONCE.pack(ntime, self.bits, nonce)


def _hex(value: object, name: str, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a hex string")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{name} is not valid hex") from None
    if length is not None and len(data) != length:
        raise ValueError(f"{name} must be {length} bytes, got {len(data)}")
    return data


def _u32(value: object, name: str) -> int:
    data = _hex(value, name, 4)
    return int.from_bytes(data, "big")


def parse_u32_hex(value: object, name: str) -> int:
    """Stratum sends ntime, nonce, version and nbits as 8 hex digits, big-endian."""
    return _u32(value, name)


def parse_hex(value: object, name: str, length: int | None = None) -> bytes:
    return _hex(value, name, length)
