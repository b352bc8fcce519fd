"""Plumbing for the tests against real third-party peers: a real Proxy built from a real
ProxyConfig, and a record of what it did with every share and every job.

The record subscribes to the proxy's own seams, it changes nothing: `StratumServer.share_consumers`
(every share's verdict, refused before its hash or judged by it), `forward_consumers` (the
upstream's verdict on each share sent on) and the router's `JobBook.add` (every job miners get).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mining.target import share_target_to_difficulty
from proxy.app import Proxy
from proxy.config import FailoverConfig, ListenConfig, ProxyConfig, UpstreamConfig, VardiffConfig
from proxy.jobs import ProxyJob
from proxy.upstream.base import SubmitOutcome, UpstreamWork
from proxy.validate import JudgedShare, ShareCandidate
from qscrypt.devnet.litecoind import RegtestPair
from tests.services.peers import FoundationPool, PeerProcess, PoolShare

# Miners name their difficulty with `-p x,d=…`; vardiff only starts those that do not.
VARDIFF = VardiffConfig(initial=0.05, minimum=1e-6, maximum=1e6)
FAILOVER = FailoverConfig(no_job_timeout_s=90.0, retry_backoff_s=0.5, retry_backoff_max_s=2.0, grace_s=5.0)
SOLO_TAG = "/qscrypt-peers-test/"
# Regtest's network target 0x7fffff·2^232 is share difficulty 2^-15: any share at or above that
# difficulty is a whole block.
REGTEST_SHARE_DIFFICULTY = 2.0**-15


@dataclass(frozen=True)
class Answer:
    """A share the proxy answered: `true`, or an error."""

    at: float
    worker: str
    upstream: str
    job_id: str  # the proxy's job id, as miners see it
    accepted: bool
    reason: str | None  # "label: message" of a refusal
    difficulty: float  # the miner's difficulty for it
    share_difficulty: float | None  # what its hash reached (shares that were hashed)


@dataclass
class Forward:
    """A share the proxy sent upstream, and what the upstream said."""

    at: float
    worker: str
    upstream: str
    job_id: str
    upstream_job_id: str
    job_difficulty: float  # the upstream's share difficulty for the job (its target)
    share_difficulty: float | None
    outcome: SubmitOutcome | None = None
    answered_at: float | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome is not None and self.outcome.accepted

    @property
    def refused(self) -> bool:
        """The upstream said no. Not a share that completed a second block on a template one of ours
        had already won at that height: the proxy keeps that one home ("stale"), since it could only
        compete with our own block (regtest, where every share is a block, sees it often)."""
        return self.outcome is not None and not self.outcome.accepted and self.outcome.status != "stale"

    def __str__(self) -> str:
        verdict = "pending" if self.outcome is None else \
            ("accepted" if self.outcome.accepted else f"rejected ({self.outcome.reason})")
        reached = "?" if self.share_difficulty is None else f"{self.share_difficulty:.6g}"
        return (f"{self.worker} → {self.upstream} job {self.upstream_job_id} (proxy {self.job_id}) "
                f"at {self.job_difficulty:.6g}, reached {reached}: {verdict}")


@dataclass(frozen=True)
class JobEntry:
    at: float
    job_id: str
    upstream: str
    upstream_job_id: str
    clean: bool
    extranonce1: bytes
    difficulty: float  # the upstream's share difficulty for it


@dataclass
class ShareLog:
    proxy: Proxy
    answers: list[Answer] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    jobs: list[JobEntry] = field(default_factory=list)
    _forwarding: dict[tuple[str, bytes, int, int], Forward] = field(default_factory=dict)

    def __post_init__(self) -> None:
        server = self.proxy.server
        server.share_consumers.append(self._on_share)
        server.forward_consumers.append(self._on_forwarded)
        book = self.proxy.router.book
        add = book.add

        def adding(upstream: str, work: UpstreamWork, now: float, coin: str | None = None) -> ProxyJob:
            job = add(upstream, work, now, coin)
            self.jobs.append(JobEntry(time.monotonic(), job.id, upstream, work.job.job_id,
                                      work.job.clean_jobs, work.extranonce1,
                                      share_target_to_difficulty(work.target)))
            return job

        book.add = adding  # type: ignore[method-assign]

    def _on_share(self, judged: JudgedShare) -> None:
        verdict, candidate = judged.verdict, judged.candidate
        rejection = verdict.rejection
        self.answers.append(Answer(time.monotonic(), judged.worker, judged.upstream, judged.job_id,
                                   rejection is None,
                                   None if rejection is None else f"{rejection.reason}: {rejection.message}",
                                   judged.difficulty, verdict.share_difficulty if candidate else None))
        if verdict.meets_upstream and candidate is not None:
            job = candidate.job
            self._forwarding[_key(candidate)] = record = Forward(
                time.monotonic(), candidate.worker, job.upstream, job.id, job.job.job_id,
                share_target_to_difficulty(job.work.target), verdict.share_difficulty)
            self.forwards.append(record)

    def _on_forwarded(self, judged: JudgedShare, outcome: SubmitOutcome) -> None:
        assert judged.candidate is not None
        record = self._forwarding.pop(_key(judged.candidate))
        record.outcome, record.answered_at = outcome, time.monotonic()

    # -- queries ----------------------------------------------------------------------------------

    def accepted(self, upstream: str | None = None, since: float = 0.0) -> list[Answer]:
        return [a for a in self.answers if a.accepted and a.at >= since and upstream in (None, a.upstream)]

    def rejected(self, since: float = 0.0) -> list[Answer]:
        return [a for a in self.answers if not a.accepted and a.at >= since]

    def forwarded(self, upstream: str | None = None, since: float = 0.0) -> list[Forward]:
        return [f for f in self.forwards if f.at >= since and upstream in (None, f.upstream)]

    def job(self, job_id: str) -> JobEntry | None:
        return next((j for j in self.jobs if j.job_id == job_id), None)

    def worth_forwarding(self, upstream: str | None = None) -> list[Answer]:
        """Accepted shares whose hash also meets their upstream's difficulty for the job."""
        worth = []
        for answer in self.accepted(upstream):
            job = self.job(answer.job_id)
            if job is not None and answer.share_difficulty is not None and \
                    answer.share_difficulty >= job.difficulty:
                worth.append(answer)
        return worth

    def jobs_of(self, upstream: str, since: float = 0.0) -> list[JobEntry]:
        return [j for j in self.jobs if j.upstream == upstream and j.at >= since]

    def replaced_before(self, job_id: str, at: float) -> bool:
        """Whether the job had been replaced by clean work of its upstream before `at`: a share for
        it is stale then, whatever else happened."""
        entry = self.job(job_id)
        if entry is None:
            return False
        return any(j.upstream == entry.upstream and j.clean and entry.at < j.at < at for j in self.jobs)

    def stale(self) -> list[Answer]:
        """Refused shares whose job had been replaced by clean work when they arrived: a miner's
        share crossing a new block's job on the wire (cpuminer drops most of those itself)."""
        return [a for a in self.rejected() if self.replaced_before(a.job_id, a.at)]

    def refused_otherwise(self) -> list[Answer]:
        """Every other refusal: none is expected from a real miner."""
        return [a for a in self.rejected() if not self.replaced_before(a.job_id, a.at)]

    async def settle(self, timeout: float = 20.0) -> None:
        """Wait until every forwarded share has the upstream's verdict."""
        await wait_until(lambda: all(f.outcome is not None for f in self.forwards), timeout,
                         "every forwarded share's upstream verdict")


def _key(candidate: ShareCandidate) -> tuple[str, bytes, int, int]:
    return (candidate.job.id, candidate.extranonce2, candidate.ntime, candidate.nonce)


@dataclass
class RunningProxy:
    proxy: Proxy
    shares: ShareLog
    started_at: float
    ready_after: float | None = None

    @property
    def url(self) -> str:
        return f"stratum+tcp://127.0.0.1:{self.proxy.ports['tcp']}"

    def metric(self, name: str, **labels: str) -> float:
        value = self.proxy.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def upstream_of(self, worker: str) -> str | None:
        for session in self.proxy.router.sessions():
            if worker in session.workers and session.assignment is not None:
                return session.assignment.upstream
        return None


@asynccontextmanager
async def running_proxy(spill_dir: Path, upstreams: list[UpstreamConfig], *, ready: bool = True,
                        ready_timeout: float = 90.0, dsn: str | None = None,
                        **overrides: Any) -> AsyncIterator[RunningProxy]:
    """A proxy on loopback with `upstreams`; with `ready`, once one of them has work. `dsn`: the
    database it records in (none by default)."""
    config = ProxyConfig(listen=ListenConfig(host="127.0.0.1", port=0), vardiff=VARDIFF, failover=FAILOVER,
                         upstreams=upstreams, metrics_port=None, spill_dir=spill_dir, hash_processes=1)
    proxy = Proxy(replace(config, **overrides), dsn)
    run = RunningProxy(proxy, ShareLog(proxy), time.monotonic())
    await proxy.start()
    try:
        if ready:
            run.ready_after = await wait_until(lambda: proxy.router.active is not None, ready_timeout,
                                               "an upstream of the proxy to have work")
        yield run
    finally:
        await proxy.close()


def solo_upstream(pair: RegtestPair, name: str = "solo", priority: int = 0,
                  address_type: str = "bech32") -> tuple[UpstreamConfig, str]:
    """A daemon upstream on node 0 of `pair`, paying a new address of its wallet; and that address."""
    address = pair.wallet.call("getnewaddress", name, address_type)
    return UpstreamConfig(name=name, kind="daemon", coin="LTC", network="regtest", priority=priority,
                          rpc_url=pair.rpc_url(0), rpc_user=pair.user, rpc_password=pair.password,
                          payout_address=address, coinbase_tag=SOLO_TAG), address


def pool_upstream(pool: FoundationPool, name: str = "pool", port: str = "main", priority: int = 0,
                  worker: str = "qscrypt") -> UpstreamConfig:
    """The foundation pool as an upstream: its worker name is `ADDRESS.WORKER` (the pool checks
    the address part with the daemon)."""
    return UpstreamConfig(name=name, kind="pool", coin="LTC", url=pool.url(port),
                          user=f"{pool.address}.{worker}", password="x", priority=priority)


async def wait_until(predicate: Callable[[], object], timeout: float, what: str,
                     *peers: PeerProcess) -> float:
    """Seconds until `predicate()` holds; on a timeout the failure shows the peers' output."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            details = "".join(f"\n\n{peer.describe()}" for peer in peers)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{details}")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


def match_pool_verdicts(forwards: list[Forward], verdicts: list[PoolShare],
                        optional: list[Forward] | None = None) -> list[str]:
    """Problems found pairing each share the proxy forwarded with the pool's verdict on it, by the
    difficulty each computed for the share (the pool logs 8 decimals): a share with no verdict at
    that difficulty (the pool hashed another header: another coinbase), a share the pool refused,
    and a verdict on no share the proxy forwarded. `optional` shares may have a verdict or none
    (the pool was stopped before it logged it)."""
    problems = []
    left = list(verdicts)

    def take(forward: Forward) -> PoolShare | None:
        mine = forward.share_difficulty
        for verdict in left:
            if mine is not None and verdict.actual is not None and \
                    abs(verdict.actual - mine) <= 1.5e-8 + 1e-9 * mine:
                left.remove(verdict)
                return verdict
        return None

    for forward in forwards:
        verdict = take(forward)
        if verdict is None:
            problems.append(f"no verdict at the pool for the difficulty the proxy computed: {forward}")
        elif not verdict.accepted:
            problems.append(f"the pool refused {forward}: {verdict.error}")
    for forward in optional or ():
        take(forward)
    for verdict in left:
        if verdict.accepted and verdict.actual is not None and verdict.difficulty is not None and \
                verdict.actual < 0.99 * verdict.difficulty:
            # On regtest the pool takes any hash under the network target as a block before it
            # checks the share difficulty: a share built on another coinbase passes half the time.
            problems.append(f"the pool took a share only as a regtest block: difficulty {verdict.actual:.8f} "
                            f"where it asks {verdict.difficulty:g}, and the proxy forwarded none of that "
                            f"difficulty")
        elif not verdict.accepted:
            problems.append(f"the pool refused a share the proxy forwarded ({verdict.error})")
        else:
            problems.append(f"the pool accepted a share at difficulty {verdict.actual} that the proxy did "
                            f"not forward at that difficulty")
    return problems


def judge_pool_window(forwards: list[Forward], verdicts: list[PoolShare], stop: float | None = None,
                      margin: float = 1.0) -> tuple[list[str], list[Forward]]:
    """`match_pool_verdicts` for the shares forwarded until the pool was stopped at `stop`: those the
    pool answered within `margin` s of the stop may have lost their log line with it, and those it
    never answered (it died first) are returned apart, as lost in flight."""
    def answered(forward: Forward) -> float:
        return forward.answered_at if forward.answered_at is not None else float("inf")

    lost = [f for f in forwards if stop is not None and not f.accepted and answered(f) >= stop]
    late = [f for f in forwards if stop is not None and f not in lost and answered(f) >= stop - margin]
    judged = [f for f in forwards if f not in lost and f not in late]
    problems = match_pool_verdicts(judged, verdicts, optional=late)
    problems += [f"answered true, refused by the pool: {f}" for f in judged + late if not f.accepted]
    return problems, lost
