"""Jobs as the proxy hands them to miners, and the bounded book that finds them again."""

from collections import OrderedDict
from dataclasses import dataclass

from mining import stratum
from mining.job import Job
from proxy.upstream.base import UpstreamWork


@dataclass(frozen=True, slots=True)
class ProxyJob:
    """One upstream job under the proxy's own id (upstream ids can collide across pools)."""

    id: str
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
    """Recent jobs of all upstreams, oldest evicted first, so memory stays bounded."""

    def __init__(self, max_jobs: int = 512) -> None:
        self._jobs: OrderedDict[str, ProxyJob] = OrderedDict()
        self._max_jobs = max_jobs
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
        proxy_job = ProxyJob(job_id, upstream, work, epoch, now, notify_clean, notify, coin)
        self._jobs[job_id] = proxy_job
        while len(self._jobs) > self._max_jobs:
            self._jobs.popitem(last=False)
        return proxy_job

    def get(self, job_id: str) -> ProxyJob | None:
        return self._jobs.get(job_id)

    def current_epoch(self, upstream: str) -> int:
        return self._epochs.get(upstream, 0)
