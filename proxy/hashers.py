"""Scrypt for share checks, in helper processes beside the event loop.

`hashlib.scrypt` releases the GIL, but a hashing thread must take the GIL back between two
hashes; while the event loop holds it (parsing, replying, fanning out jobs) the thread waits and
its core idles. Measured here with the main thread busy half the time: two hashing threads did
3.2 kH/s, two hashing processes 4.8 kH/s (`python -m bench.hashers`, BENCHMARKS.md). Our SIMD
scrypt hashes a read's headers in one call, so a thread would take the GIL back once a batch;
measured again that way (`bench.hashers --batch 64`), processes still hashed more beside a busy
loop (7.9 against 6.3 kH/s with it busy 20 % of the time, on a loaded machine). So each
hasher is a small process that reads 80-byte headers from a pipe and writes their 32-byte hashes
back in the same order: no framing, no pickling, and a burst of shares costs a few pipe writes,
not one per share.

A hasher that dies is started again and given back every header it had not answered, so no
share is lost or answered twice.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

from mining.hashing import scrypt_many
from qscrypt.log import get_logger

HEADER_BYTES = 80
HASH_BYTES = 32
READ_HEADERS = 64
"""Headers a hasher takes per read, all hashed in one `scrypt_many` call (8 or 6 side by side in
SIMD lanes): under load its answers come back every ~2 ms (~20 ms with hashlib.scrypt, one at a
time). Each batch of answers wakes the loop, which then takes the core from a hasher and evicts
part of its scratchpads; 64 instead of 32 halved those wake-ups and saved ~1.5 µs of loop time per
share (bench.proxy with hashlib.scrypt, BENCHMARKS.md)."""
_IN_HAND = 16 * READ_HEADERS
"""Headers sent to one hasher and not yet answered, ~25 ms of its work with AVX-512: the batches
behind the one it hashes wait in its pipe, so it keeps hashing while the loop is busy elsewhere.
With two batches (it was) the loop, parsing a burst for ~8 ms at a time, left both hashers idle
for part of it: the cores idled 22–24 % of a burst (`perf sched` showed hashers waiting on an
empty pipe while the loop ran), and validated shares per second were 20–25 % lower (BENCHMARKS.md)."""
_SPARE = 2 * READ_HEADERS
"""Headers parsed beyond what the hashers hold: the next batch of each is ready when it answers."""
_FEED_EVERY = 16
_NICENESS = 10

Hashed = Callable[[Any, bytes], None]
"""Called with the context given to `hash` and the header's scrypt hash."""


class _Hasher(asyncio.SubprocessProtocol):
    """One hasher process: its pipes, and the headers sent to it not yet answered, in order."""

    def __init__(self, pool: "HasherPool", index: int) -> None:
        self.pool = pool
        self.index = index
        self.transport: asyncio.SubprocessTransport | None = None
        self.stdin: asyncio.WriteTransport | None = None
        self.waiting: deque[tuple[bytes, Hashed, object]] = deque()
        self.partial = b""
        self.running = False
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.stdin = self.transport.get_pipe_transport(0)  # type: ignore[union-attr,assignment]
        self.partial = b""
        self.running = True

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.pool._answered(self, data)

    def process_exited(self) -> None:
        self.running = False

    def connection_lost(self, exc: Exception | None) -> None:
        # The process has exited and its pipes are closed: no answer of it can still arrive.
        self.running = False
        if not self.gone.done():
            self.gone.set_result(None)
        self.pool._lost(self)


class HasherPool:
    """`hash(header, done, context)` calls `done(context, pow_hash)` on the event loop once a hasher
    answers (a context instead of a closure: this runs for every share)."""

    def __init__(self, processes: int) -> None:
        self.size = max(1, processes)
        self.restarts = 0
        self.log = get_logger(component="hashers")
        self._hashers: list[_Hasher] = []
        self._queue: deque[tuple[bytes, Hashed, object]] = deque()
        self._closing = False
        self._restarting: set[asyncio.Task[None]] = set()
        self.on_room: Callable[[], None] | None = None
        """Called when answers have made room (the pool is no longer `full`): the place to let
        held-back input in."""

    @property
    def unanswered(self) -> int:
        """Headers given to `hash` and not yet answered, queued or in a hasher's hands."""
        return len(self._queue) + sum(len(hasher.waiting) for hasher in self._hashers)

    @property
    def full(self) -> bool:
        """Every hasher holds its `_IN_HAND` and the next batches are queued: parsing more shares now
        would only lengthen the loop's stretches (and a waiting miner's wait), not the hashing."""
        return self.unanswered >= self.size * _IN_HAND + _SPARE

    async def start(self) -> None:
        for index in range(self.size):
            hasher = _Hasher(self, index)
            self._hashers.append(hasher)
            await self._spawn(hasher)

    async def _spawn(self, hasher: _Hasher) -> None:
        hasher.gone = asyncio.get_running_loop().create_future()
        # Its own session: a terminal's Ctrl-C must not reach it. Ignoring SIGINT in `serve` is not
        # enough, since uvloop's spawn resets every signal to its default and a Ctrl-C during the
        # child's imports killed it (the pool then reported a hasher died while shutting down).
        await asyncio.get_running_loop().subprocess_exec(
            lambda: hasher, sys.executable, "-m", "proxy.hashers",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, start_new_session=True)
        # Headers it had not answered when its predecessor died, in their order.
        if hasher.waiting:
            self._send(hasher, b"".join(item[0] for item in hasher.waiting))
        self._feed()

    def hash(self, header: bytes, done: Hashed, context: object = None) -> None:
        if len(header) != HEADER_BYTES:
            raise ValueError(f"a block header is {HEADER_BYTES} bytes, got {len(header)}")
        if not self._queue:
            asyncio.get_running_loop().call_soon(self._feed)
        self._queue.append((header, done, context))
        if len(self._queue) >= _FEED_EVERY:
            # A burst of shares parsed in one loop iteration (one read of many connections) would
            # otherwise reach the hashers only when the iteration ends, leaving them idle meanwhile.
            self._feed()

    def _feed(self) -> None:
        """Top every running hasher up to `_IN_HAND` headers from the queue. Handing out work as
        answers come back (not all of a burst at once) keeps the hashers' queues even, so one is
        never left hashing a long tail while the other idles."""
        if self._closing:
            return
        for hasher in self._hashers:
            room = _IN_HAND - len(hasher.waiting)
            if room <= 0 or not self._queue or not hasher.running:
                continue
            chunk = [self._queue.popleft() for _ in range(min(room, len(self._queue)))]
            hasher.waiting.extend(chunk)
            self._send(hasher, b"".join(item[0] for item in chunk))

    @staticmethod
    def _send(hasher: _Hasher, data: bytes) -> None:
        if hasher.stdin is not None and not hasher.stdin.is_closing():
            hasher.stdin.write(data)
        # else: it is dying; everything waiting is sent again to its successor

    def _answered(self, hasher: _Hasher, data: bytes) -> None:
        pending = hasher.partial + data if hasher.partial else data
        count = len(pending) // HASH_BYTES
        waiting = hasher.waiting
        for i in range(count):
            _, done, context = waiting.popleft()
            try:
                done(context, pending[i * HASH_BYTES:(i + 1) * HASH_BYTES])
            except Exception:
                # A bug in one share's handling must not stall every share behind it.
                self.log.exception("hashers.callback_failed")
        hasher.partial = pending[count * HASH_BYTES:]
        self._feed()
        if self.on_room is not None and not self.full:
            self.on_room()

    def _lost(self, hasher: _Hasher) -> None:
        if self._closing:
            return
        code = hasher.transport.get_returncode() if hasher.transport is not None else None
        self.restarts += 1
        self.log.error("hashers.died", hasher=hasher.index, exit_code=code, unanswered=len(hasher.waiting))
        task = asyncio.get_running_loop().create_task(self._spawn(hasher), name=f"hasher-{hasher.index}")
        self._restarting.add(task)
        task.add_done_callback(self._restarting.discard)

    async def close(self) -> None:
        self._closing = True
        for task in list(self._restarting):
            task.cancel()
        for hasher in self._hashers:
            if hasher.transport is not None:
                hasher.transport.close()  # closes its pipes and kills it if it still runs
        for hasher in self._hashers:
            if hasher.transport is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(hasher.gone, 10)


def serve(stdin: int = 0, stdout: int = 1) -> None:
    """The hasher process: headers in, hashes out, in order, until its input closes. The proxy ends
    its hashers itself, after its last share, so they ignore Ctrl-C and SIGTERM (started by hand or
    sent to them directly). It runs at a lower priority than the proxy."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Below the event loop, which needs its core at once but briefly: a miner's reply, a handshake
    # or a job then waits for a hasher's time slice no more (bench.proxy: an idle miner's request
    # under full load, p99 32 → 10 ms, max 75 → 28 ms; throughput unchanged).
    os.nice(_NICENESS)
    pending = b""
    while data := os.read(stdin, HEADER_BYTES * READ_HEADERS):
        pending += data
        whole = len(pending) - len(pending) % HEADER_BYTES
        # All the headers of a read in one call: they are hashed side by side in SIMD lanes.
        out = scrypt_many(memoryview(pending)[:whole])
        pending = pending[whole:]
        while out:
            out = out[os.write(stdout, out):]


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        serve()
