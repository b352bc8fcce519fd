"""CPU engine: a pool of threads, each hashing its own slice of the range with our SIMD scrypt.

Threads, not processes: `mining.hashing.scrypt_many` releases the GIL for a whole batch of headers
(several hashed side by side in AVX-512 or AVX2 lanes), so the threads take the GIL back once a
batch, not once a hash, without pickling work or results across processes.
"""

import os
import struct
from concurrent.futures import ThreadPoolExecutor

from backends.engine import CancelToken, Scan, ScanEngine, SearchWork, split_range
from mining.hashing import POW_HASH_BYTES, hash_to_int, scrypt_impls, scrypt_many


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_threads(threads: int | None = None, cpu_share: float | None = None) -> int:
    """An explicit thread count wins; else a share of the cores this process may run on (default all)."""
    if threads is not None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        return threads
    share = 1.0 if cpu_share is None else cpu_share
    if not 0 < share <= 1:
        raise ValueError("cpu_share must be in (0, 1]")
    return max(1, round(available_cores() * share))


_BATCH = 48
"""Nonces hashed per call: whole groups of the SIMD cores (8 for AVX-512, 6 for AVX2), and short
enough (~1.5 ms with AVX-512, ~12 ms with the scalar code) to bound how long a cancel waits."""


def _scan_slice(prefix: bytes, nonces: range, target: int, cancel: CancelToken) -> tuple[list[int], int]:
    found: list[int] = []
    done = 0
    pack = struct.Struct("<I").pack
    for first in range(nonces.start, nonces.stop, _BATCH):
        if cancel.cancelled:
            break
        batch = range(first, min(first + _BATCH, nonces.stop))
        hashes = scrypt_many(b"".join(prefix + pack(nonce) for nonce in batch))
        for index, nonce in enumerate(batch):
            if hash_to_int(hashes[index * POW_HASH_BYTES:(index + 1) * POW_HASH_BYTES]) <= target:
                found.append(nonce)
        done += len(batch)
    return found, done


def describe_cpu(threads: int) -> str:
    return f"scrypt ({scrypt_impls()[0]}), {threads} thread{'s' if threads > 1 else ''}"


class CpuEngine(ScanEngine):
    name = "cpu"

    def __init__(self, threads: int | None = None, cpu_share: float | None = None) -> None:
        super().__init__()
        self.threads = resolve_threads(threads, cpu_share)
        self.device = describe_cpu(self.threads)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="qscrypt-cpu")

    def scan(self, work: SearchWork, cancel: CancelToken) -> Scan:
        slices = split_range(work.nonce_start, work.nonce_count, self.threads)
        futures = [self._pool.submit(_scan_slice, work.header_prefix, part, work.target, cancel)
                   for part in slices]
        candidates: list[int] = []
        unhashed: list[tuple[int, int]] = []
        done = 0
        for part, future in zip(slices, futures, strict=True):
            found, hashed = future.result()
            candidates += found
            done += hashed
            # Each thread hashes its slice from the start, so what it left is the slice's tail.
            if hashed < len(part):
                unhashed.append((part.start + hashed, len(part) - hashed))
        return Scan(candidates, done, cancel.cancelled and done < work.nonce_count, tuple(unhashed))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
