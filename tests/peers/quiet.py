"""cpuminer on a chain where nothing happens, watched for five minutes.

cpuminer drops a server that sends nothing for 120 s ("Stratum connection timed out") and stops
hashing a job older than 120 s; a proxy mining solo on a quiet chain has no new block to announce,
so it must re-send the current job with a fresh ntime every `proxy.keepalive_s` (30 s by default).

Five minutes are long, so the watch runs beside the rest of tests/peers: the session fixture in
tests/peers/conftest.py starts it with the first test of the folder (when
test_quiet_chain.py is among the tests to run) and test_quiet_chain.py, last, waits for what is
left and judges it. Nothing else touches its chain; its cpuminer runs at nice 10, so it takes
little from the tests that time their own miners, and its difficulty is so high that it finds no
share (which on regtest would be a block) in those five minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from qscrypt.devnet.litecoind import RegtestPair, start_pair
from tests.peers.support import RunningProxy, running_proxy, solo_upstream
from tests.services.peers import CpuMiner

QUIET_S = 300.0
KEEPALIVE_S = 30.0  # proxy.keepalive_s, by default
KEEPALIVE_SLACK_S = 15.0
# 6.5e9 hashes a share: at 20 kH/s the chance of one in five minutes is 0.1 %.
QUIET_DIFFICULTY = 1e5
SAMPLE_S = 5.0
CPU_WINDOW_S = 60.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class QuietWatch:
    base: Path
    cpuminer: Path
    pair: RegtestPair | None = None
    run: RunningProxy | None = None
    miner: CpuMiner | None = None
    began: float | None = None  # when cpuminer had its first job
    ended: float | None = None
    height: int = 0
    heights: list[tuple[float, int]] = field(default_factory=list)
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (time, cpuminer's CPU seconds)
    error: str | None = None
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _sampler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            self.pair = pair = await asyncio.to_thread(start_pair, self.base / "litecoin")
            self._stack.callback(pair.stop)
            upstream, _ = solo_upstream(pair, "quiet")
            proxy = running_proxy(self.base / "spill", [upstream])
            self.run = run = await self._stack.enter_async_context(proxy)
            self.height = pair.height()
            self.miner = miner = CpuMiner(self.cpuminer, run.url, "cpu-quiet", f"x,d={QUIET_DIFFICULTY:g}",
                                          self.base / "cpuminer.log", nice=10)
            await miner.start()
            self._stack.push_async_callback(miner.stop)
            await miner.wait_for(lambda: miner.notifies, 30, "cpuminer's first job")
            self.began = time.monotonic()
            self._sampler = asyncio.create_task(self._sample())
        except Exception as exc:  # reported by the test that judges the watch, not by every test
            self.error = f"{type(exc).__name__}: {exc}"

    async def _sample(self) -> None:
        assert self.pair is not None and self.miner is not None
        while True:
            now = time.monotonic()
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = self.miner.pid
                if pid is not None:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    self.cpu.append((now, (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS))
            with contextlib.suppress(Exception):
                self.heights.append((now, await self.pair.arpc(0, "getblockcount")))
            await asyncio.sleep(SAMPLE_S)

    async def finish(self) -> None:
        """Wait until cpuminer has been on the quiet chain for `QUIET_S`, then stop it."""
        assert self.began is not None and self.miner is not None
        await asyncio.sleep(max(0.0, self.began + QUIET_S - time.monotonic()))
        self.ended = time.monotonic()
        await asyncio.sleep(SAMPLE_S)  # one sample past the end
        await self.close()

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        await self._stack.aclose()

    def cpu_in_windows(self) -> list[tuple[float, float]]:
        """(start, CPU seconds) of cpuminer in each `CPU_WINDOW_S` window of the quiet period."""
        assert self.began is not None and self.ended is not None
        windows = []
        start = self.began
        while start + CPU_WINDOW_S <= self.ended + 1e-6:
            inside = [cpu for at, cpu in self.cpu if start <= at <= start + CPU_WINDOW_S + SAMPLE_S]
            windows.append((start - self.began, inside[-1] - inside[0] if len(inside) >= 2 else 0.0))
            start += CPU_WINDOW_S
        return windows
