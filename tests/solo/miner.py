"""The shared test miner as a solo miner: one worker that finds whole blocks. Regtest's target is
0x7fffff…, so about every other scrypt hash is a block."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from mining import stratum
from mining.hashing import hash_to_hex, sha256d
from mining.target import bits_to_target, share_difficulty_to_target
from tests.stratum_peers import MinerJob, ScriptedMiner

BLOCKS_MINED: Counter[str] = Counter()
"""Blocks the daemon accepted from these tests, by test file (for the session summary)."""


@dataclass(frozen=True)
class Solution:
    mjob: MinerJob
    extranonce2: bytes
    ntime: int
    nonce: int
    header: bytes

    @property
    def block_hash(self) -> str:
        return hash_to_hex(sha256d(self.header))


@dataclass
class SoloMiner(ScriptedMiner):
    """A ScriptedMiner that mines as `worker` and solves blocks, each with a fresh extranonce2."""

    worker: str = ""
    _extranonce2: Iterator[int] = field(default_factory=itertools.count)

    async def join(self) -> SoloMiner:
        """Connect, subscribe and authorize, asserting the proxy takes each step."""
        await self.connect()
        subscribed = await self.subscribe(extranonce=False)
        assert subscribed.error is None, f"subscribe refused: {subscribed.error}"
        authorized = await self.authorize(self.worker)
        assert authorized.result is True, f"authorize refused: {authorized}"
        return self

    def solve(self, mjob: MinerJob | None = None) -> Solution:
        """A share on `mjob` (default: the newest job) whose proof of work also meets the network target."""
        assert mjob is not None or self.jobs, "no job received yet"
        mjob = mjob or self.jobs[-1]
        job = mjob.job
        target = min(bits_to_target(job.bits), share_difficulty_to_target(self.difficulty))
        extranonce2 = next(self._extranonce2).to_bytes(self.extranonce2_size, "big")
        nonce = self.find_share(mjob, extranonce2, target=target, limit=1 << 16)
        return Solution(mjob, extranonce2, job.ntime, nonce,
                        job.header(self.extranonce1, extranonce2, job.ntime, nonce))

    async def submit_solution(self, solution: Solution) -> stratum.Response:
        return await self.submit(self.worker, solution.mjob, solution.extranonce2, solution.nonce,
                                 ntime=solution.ntime)
