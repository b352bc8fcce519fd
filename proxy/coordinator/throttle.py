"""Forwarding shares upstream at a bounded rate: a token bucket in front of one upstream session.

A fleet of workers can find shares far faster than a pool wants them from one session. Excess
shares wait in a bounded queue; when it is full the oldest goes, and a share whose job the upstream
no longer accepts is dropped when its turn comes rather than sent to be rejected. Blocks skip the
queue: holding one back could lose it to an orphan race.
"""

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from proxy.token_bucket import TokenBucket
from qscrypt.bus.aio import wait_event

T = TypeVar("T")


@dataclass
class ThrottleStats:
    offered: int = 0
    sent: int = 0
    dropped_overflow: int = 0
    dropped_stale: int = 0


class ShareThrottle(Generic[T]):
    def __init__(self, send: Callable[[T], Awaitable[None]], is_stale: Callable[[T], bool], rate: float,
                 burst: int, max_queue: int) -> None:
        self._send = send
        self._is_stale = is_stale
        self._bucket = TokenBucket(rate, burst, time.monotonic())
        self.queue: deque[T] = deque()
        self.max_queue = max_queue
        self.stats = ThrottleStats()
        self._wakeup = asyncio.Event()
        self._urgent: deque[T] = deque()

    def offer(self, item: T, urgent: bool = False) -> None:
        self.stats.offered += 1
        if urgent:
            self._urgent.append(item)
        else:
            if len(self.queue) >= self.max_queue:
                self.purge()
            if len(self.queue) >= self.max_queue:
                self.queue.popleft()
                self.stats.dropped_overflow += 1
            self.queue.append(item)
        self._wakeup.set()

    def purge(self) -> None:
        """Drop every queued share that has gone stale (after a job change, say), oldest first."""
        kept = deque(item for item in self.queue if not self._is_stale(item))
        self.stats.dropped_stale += len(self.queue) - len(kept)
        self.queue = kept

    async def run(self) -> None:
        while True:
            if not self.queue and not self._urgent:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._urgent:
                # Blocks take no token: they are rare, and pool shares must not wait behind them.
                await self._deliver(self._urgent.popleft())
                continue
            wait = self._bucket.wait_s(time.monotonic())
            if wait > 0:
                self._wakeup.clear()
                # A block arriving meanwhile must not wait for the token.
                await wait_event(self._wakeup, wait)
                continue
            item = self.queue.popleft()
            if self._is_stale(item):
                self.stats.dropped_stale += 1
                continue
            self._bucket.take(time.monotonic())
            await self._deliver(item)

    async def _deliver(self, item: T) -> None:
        self.stats.sent += 1
        await self._send(item)

