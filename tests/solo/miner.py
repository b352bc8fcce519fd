"""A tiny Stratum miner for tests, built on the codec: subscribe, authorize, follow jobs, find and
submit blocks. Regtest's target is 0x7fffff…, so about every other scrypt hash is a block."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mining import stratum
from mining.hashing import hash_to_hex, hash_to_int, scrypt_pow, sha256d
from mining.job import Job
from mining.target import bits_to_target, share_difficulty_to_target

BLOCKS_MINED: Counter[str] = Counter()
"""Blocks the daemon accepted from these tests, by test file (for the session summary)."""


@dataclass(frozen=True)
class Solution:
    job: Job
    extranonce2: bytes
    ntime: int
    nonce: int
    header: bytes

    @property
    def block_hash(self) -> str:
        return hash_to_hex(sha256d(self.header))


@dataclass(frozen=True)
class Received:
    job: Job
    at: float  # time.monotonic() when the notify arrived


class TestMiner:
    __test__ = False  # a helper, not a test class

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.difficulty = 1.0
        self.jobs: dict[str, Job] = {}
        self.received: list[Received] = []
        self.messages: list[str] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._codec = stratum.StratumCodec(max_line=1 << 20)
        self._pending: dict[int, asyncio.Future[stratum.Response]] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._extranonce2 = itertools.count()

    async def connect(self, port: int, host: str = "127.0.0.1") -> None:
        self._reader, self._writer = await asyncio.open_connection(host, port)
        self._task = asyncio.create_task(self._read())
        subscribed = await self.request("mining.subscribe", ["qscrypt-test-miner/1"])
        assert subscribed.error is None, f"subscribe refused: {subscribed.error}"
        self.extranonce1 = bytes.fromhex(subscribed.result[1])
        self.extranonce2_size = int(subscribed.result[2])
        authorized = await self.request("mining.authorize", [self.worker, "x"])
        assert authorized.result is True, f"authorize refused: {authorized}"

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def request(self, method: str, params: list[Any], timeout: float = 10.0) -> stratum.Response:
        assert self._writer is not None
        request_id = next(self._ids)
        future: asyncio.Future[stratum.Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(stratum.encode(stratum.Request(request_id, method, params)))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)

    async def _read(self) -> None:
        assert self._reader is not None
        while data := await self._reader.read(65536):
            for event in self._codec.feed(data):
                self._on_event(event)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("proxy closed the connection"))

    def _on_event(self, event: stratum.Event) -> None:
        if isinstance(event, stratum.Response):
            future = self._pending.get(event.id) if isinstance(event.id, int) else None
            if future is not None and not future.done():
                future.set_result(event)
            return
        if isinstance(event, stratum.ProtocolError):
            self.messages.append(f"bad line from the proxy: {event.message}")
            return
        if event.method == "mining.notify":
            job = Job.from_notify(event.params)
            if job.clean_jobs:
                self.jobs.clear()
            self.jobs[job.job_id] = job
            self.received.append(Received(job, time.monotonic()))
        elif event.method == "mining.set_difficulty":
            self.difficulty = float(event.params[0])
        elif event.method == "mining.set_extranonce":
            self.extranonce1 = bytes.fromhex(event.params[0])
            self.extranonce2_size = int(event.params[1])
        elif event.method == "client.show_message":
            self.messages.append(str(event.params[0]))
        self._changed.set()

    @property
    def job(self) -> Job:
        """The newest job."""
        assert self.received, "no job received yet"
        return self.received[-1].job

    async def wait_job(self, after: int, timeout: float = 10.0, clean: bool | None = None) -> Received:
        """The first job received after the `after`-th one (matching `clean` when given)."""
        deadline = time.monotonic() + timeout
        while True:
            for received in self.received[after:]:
                if clean is None or received.job.clean_jobs == clean:
                    return received
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.worker}: no new job within {timeout} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def solve(self, job: Job | None = None) -> Solution:
        """A share on `job` (default: the newest) whose proof of work also meets the network target."""
        job = job or self.job
        target = min(bits_to_target(job.bits), share_difficulty_to_target(self.difficulty))
        extranonce2 = next(self._extranonce2).to_bytes(self.extranonce2_size, "big")
        for nonce in range(1 << 16):
            header = job.header(self.extranonce1, extranonce2, job.ntime, nonce)
            if hash_to_int(scrypt_pow(header)) <= target:
                return Solution(job, extranonce2, job.ntime, nonce, header)
        raise AssertionError("no block in 65536 nonces: is this regtest?")

    async def submit(self, solution: Solution) -> stratum.Response:
        return await self.request("mining.submit", [
            self.worker, solution.job.job_id, solution.extranonce2.hex(), f"{solution.ntime:08x}",
            f"{solution.nonce:08x}",
        ])
