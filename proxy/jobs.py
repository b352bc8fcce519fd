"""Jobs as the proxy hands them to miners, and the book that finds them again.

The book keeps each upstream's recent jobs apart, bounded per upstream: a busy upstream that sends
a job a second can never evict the current job of an idle one (that once rejected every share of
miners moved to the idle upstream as "job not found").

Every miner on an upstream is sent each of its jobs, in the order the book made them, so what a
miner may submit is kept here once per upstream, not once per miner: its newest JOBS_LIVE jobs, and
the ids of the JOBS_RETIRED before them (a share naming one is stale, not made up). A miner's
session keeps only where its jobs there began and at which difficulties (`proxy.session`).
"""

from collections import OrderedDict
from dataclasses import dataclass, replace

from mining import stratum
from mining.job import Job
from proxy.upstream.base import UpstreamWork

JOBS_LIVE = 16
"""The jobs of an upstream a share may name: its newest 16."""
JOBS_RETIRED = 48
"""Ids of an upstream's older jobs kept: 64 jobs back in all."""


@dataclass(frozen=True, slots=True)
class ProxyJob:
    """One upstream job under the proxy's own id (upstream ids can collide across pools)."""

    id: str
    seq: int
    """The book's count when it made the job: an upstream's jobs reach its miners in this order."""
    upstream: str
    work: UpstreamWork
    epoch: int
    """Bumped by every clean job of the upstream: a share for an older epoch is stale."""
    created: float
    notify_clean: bytes
    """`mining.notify` with clean_jobs=true, serialised once for every miner."""
    notify: bytes
    coin: str | None = None
    """The upstream's coin: what accepted shares of this job are credited to."""

    @property
    def job(self) -> Job:
        return self.work.job


class JobBook:
    """Recent jobs of each upstream, oldest evicted first per upstream, so memory stays bounded."""

    def __init__(self, live: int = JOBS_LIVE, retired: int = JOBS_RETIRED) -> None:
        self._jobs: dict[str, ProxyJob] = {}
        self._by_upstream: dict[str, OrderedDict[str, None]] = {}
        self._retired: dict[str, OrderedDict[str, int]] = {}
        """Per upstream, ids of jobs no longer live, oldest first, with their seq."""
        self._live = live
        self._retired_kept = retired
        self._counter = 0
        self._epochs: dict[str, int] = {}

    def add(self, upstream: str, work: UpstreamWork, now: float, coin: str | None = None) -> ProxyJob:
        epoch = self._epochs.get(upstream, 0)
        if work.job.clean_jobs:
            epoch += 1
            self._epochs[upstream] = epoch
        self._counter += 1
        job_id = f"{self._counter:x}"
        params = work.job.notify_params(job_id=job_id, clean_jobs=True)
        notify_clean = stratum.notify("mining.notify", params)
        params[-1] = work.job.clean_jobs
        notify = stratum.notify("mining.notify", params)
        proxy_job = ProxyJob(job_id, self._counter, upstream, work, epoch, now, notify_clean, notify, coin)
        self._jobs[job_id] = proxy_job
        recent = self._by_upstream.setdefault(upstream, OrderedDict())
        recent[job_id] = None
        while len(recent) > self._live:
            old, _ = recent.popitem(last=False)
            retired = self._retired.setdefault(upstream, OrderedDict())
            retired[old] = self._jobs.pop(old).seq
            if len(retired) > self._retired_kept:
                retired.popitem(last=False)
        return proxy_job

    def refreshed(self, job: ProxyJob, ntime: int, now: float) -> ProxyJob:
        """The same upstream job again, not clean, with a later ntime: what a miner that has heard
        nothing for a while gets (cpuminer drops a silent server after 120 s and stops hashing a job
        it got 120 s ago). Shares of the earlier copy stay good: the epoch does not move."""
        work = job.work
        fresh = replace(work.job, ntime=max(ntime, work.job.ntime), clean_jobs=False)
        return self.add(job.upstream, replace(work, job=fresh), now, job.coin)

    def get(self, job_id: str) -> ProxyJob | None:
        """A live job: one a share may name."""
        return self._jobs.get(job_id)

    def retired(self, job_id: str) -> tuple[str, int] | None:
        """The upstream and seq of a job no longer live (one of the last JOBS_RETIRED before them)."""
        for upstream, retired in self._retired.items():
            seq = retired.get(job_id)
            if seq is not None:
                return upstream, seq
        return None

    def current_epoch(self, upstream: str) -> int:
        return self._epochs.get(upstream, 0)

    def __len__(self) -> int:
        return len(self._jobs)
