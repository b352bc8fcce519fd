"""The engine interface: search a nonce range of one header for hashes at or below a target.

An engine's `search` blocks (it runs in an executor thread, never on the event loop) and returns
when the range is done or its `CancelToken` fires. Engines only propose candidates: `ScanEngine`
re-checks every one on the host with `mining.hashing.scrypt_pow` before it reaches a caller, so a
wrong kernel can cost hashrate but can never submit a bad share.
"""

import asyncio
import struct
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from mining.hashing import hash_to_int, scrypt_pow

log = structlog.get_logger(__name__)

NONCE_SPACE = 1 << 32
HEADER_PREFIX_BYTES = 76


@dataclass(frozen=True, slots=True)
class SearchWork:
    """Nonces nonce_start .. nonce_start + nonce_count - 1 of the header that starts with header_prefix."""

    header_prefix: bytes
    nonce_start: int
    nonce_count: int
    target: int

    def __post_init__(self) -> None:
        if len(self.header_prefix) != HEADER_PREFIX_BYTES:
            raise ValueError(f"header prefix must be 76 bytes, got {len(self.header_prefix)}")
        if not 0 <= self.nonce_start < NONCE_SPACE:
            raise ValueError(f"nonce_start out of range: {self.nonce_start}")
        if not 0 <= self.nonce_count <= NONCE_SPACE - self.nonce_start:
            raise ValueError(f"nonce_count {self.nonce_count} runs past the 32-bit nonce space")
        if not 0 <= self.target < 1 << 256:
            raise ValueError("target must be a 256-bit integer")

    @property
    def nonce_end(self) -> int:
        return self.nonce_start + self.nonce_count

    def header(self, nonce: int) -> bytes:
        return self.header_prefix + struct.pack("<I", nonce)

    def meets_target(self, nonce: int) -> bool:
        return hash_to_int(scrypt_pow(self.header(nonce))) <= self.target


@dataclass(frozen=True, slots=True)
class SearchResult:
    found: list[int]  # nonces whose hash is at or below the target, host-verified, ascending
    hashes_done: int
    cancelled: bool
    elapsed_s: float
    rejected_candidates: int = 0  # engine candidates the host check refused (an engine fault)
    unhashed: tuple[tuple[int, int], ...] = ()
    """(nonce_start, count) pieces of the range a cancel left unhashed, ascending; everything else was
    hashed. A cancelled CPU search leaves one piece per thread, so `hashes_done` alone cannot say which."""

    @property
    def hashrate(self) -> float:
        return self.hashes_done / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Scan:
    """What an engine reports before the host check: raw candidates and the work it did."""

    candidates: list[int]
    hashes_done: int
    cancelled: bool
    unhashed: tuple[tuple[int, int], ...] = ()


class CancelToken:
    """Set once by the event loop (new job, shutdown), read by hashing threads between small batches."""

    __slots__ = ("_event", "cancelled_at")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.cancelled_at: float | None = None

    def cancel(self) -> None:
        if not self._event.is_set():
            self.cancelled_at = time.perf_counter()
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class Engine(Protocol):
    name: str  # "cpu", "opencl"
    device: str  # human-readable device description
    hashrate: float  # H/s measured over the last search, 0 before the first

    def search(self, work: SearchWork, cancel: CancelToken) -> SearchResult: ...

    def close(self) -> None: ...


def split_range(start: int, count: int, parts: int) -> list[range]:
    """`parts` contiguous ranges covering start .. start+count-1 exactly once, sizes differing by at most 1.

    Empty ranges are dropped, so fewer than `parts` come back when count < parts.
    """
    if parts < 1:
        raise ValueError("parts must be at least 1")
    if count < 0:
        raise ValueError("count cannot be negative")
    base, extra = divmod(count, parts)
    ranges: list[range] = []
    lo = start
    for index in range(parts):
        size = base + (1 if index < extra else 0)
        if size:
            ranges.append(range(lo, lo + size))
        lo += size
    return ranges


def verify_candidates(work: SearchWork, candidates: list[int]) -> tuple[list[int], int]:
    """(host-verified in-range nonces, ascending and unique; how many candidates were refused)."""
    found: list[int] = []
    refused = 0
    for nonce in sorted(set(candidates)):
        if work.nonce_start <= nonce < work.nonce_end and work.meets_target(nonce):
            found.append(nonce)
        else:
            refused += 1
    return found, refused


class ScanEngine(ABC):
    """Base of every engine: `scan` proposes, `search` times it and keeps only host-verified nonces."""

    name: str
    device: str

    def __init__(self) -> None:
        self.hashrate = 0.0
        self._lock = threading.Lock()

    @abstractmethod
    def scan(self, work: SearchWork, cancel: CancelToken) -> Scan:
        """Hash the range (stopping early on cancel); candidates may include false positives."""

    def search(self, work: SearchWork, cancel: CancelToken) -> SearchResult:
        with self._lock:  # one search at a time: engines own per-device buffers and thread pools
            started = time.perf_counter()
            scan = self.scan(work, cancel)
            elapsed = time.perf_counter() - started
        found, refused = verify_candidates(work, scan.candidates)
        if refused:
            log.warning("engine candidates failed the host check", engine=self.name, device=self.device,
                        refused=refused)
        if scan.hashes_done and elapsed > 0:
            self.hashrate = scan.hashes_done / elapsed
        return SearchResult(found, scan.hashes_done, scan.cancelled, elapsed, refused, scan.unhashed)

    @abstractmethod
    def close(self) -> None:
        """Release threads or device buffers."""


async def search_async(engine: Engine, work: SearchWork, cancel: CancelToken) -> SearchResult:
    """Run a search in an executor thread so the event loop keeps serving the connection."""
    return await asyncio.to_thread(engine.search, work, cancel)


def timed_search(engine: Engine, seconds: float, prefix: bytes = bytes(HEADER_PREFIX_BYTES)) -> SearchResult:
    """About `seconds` of hashing: a search over the whole nonce space, cancelled by a timer."""
    cancel = CancelToken()
    timer = threading.Timer(seconds, cancel.cancel)
    timer.start()
    try:
        return engine.search(SearchWork(prefix, 0, NONCE_SPACE, 0), cancel)
    finally:
        timer.cancel()


def measure_hashrate(engine: Engine, seconds: float) -> float:
    return timed_search(engine, seconds).hashrate


@dataclass
class RateMeter:
    """Hashrate over a sliding window of recent searches (what the miner prints)."""

    window_s: float = 30.0
    _samples: list[tuple[float, int, float]] = field(default_factory=list)

    def add(self, result: SearchResult, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._samples.append((now, result.hashes_done, result.elapsed_s))
        while self._samples and self._samples[0][0] < now - self.window_s:
            self._samples.pop(0)

    @property
    def rate(self) -> float:
        hashes = sum(sample[1] for sample in self._samples)
        seconds = sum(sample[2] for sample in self._samples)
        return hashes / seconds if seconds > 0 else 0.0
