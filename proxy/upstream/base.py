"""The one interface every upstream implements, so the router never knows which kind it drives."""

import abc
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from mining.job import Job
from qscrypt.log import get_logger

_log = get_logger(component="upstream")


class UpstreamState(enum.Enum):
    CONNECTING = "connecting"
    READY = "ready"  # subscribed, authorized, has a job
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    accepted: bool
    reason: str | None
    latency_s: float
    block_hash: str | None = None
    status: str | None = None
    """For a block (a daemon upstream): accepted, rejected, orphaned or pending, as `blocks` has it."""


@dataclass(frozen=True, slots=True)
class UpstreamWork:
    """What a miner needs from an upstream: the job, and the extranonce space it belongs to."""

    job: Job
    extranonce1: bytes
    extranonce2_size: int
    target: int
    """Shares at or below this target are worth submitting upstream."""


JobListener = Callable[["Upstream", UpstreamWork], None]
StateListener = Callable[["Upstream"], None]


class Upstream(abc.ABC):
    def __init__(self, name: str, coin: str, priority: int) -> None:
        self.name = name
        self.coin = coin
        self.priority = priority
        self.state = UpstreamState.CONNECTING
        self.work: UpstreamWork | None = None
        self.last_job_at = 0.0
        self.last_error: str | None = None
        self._job_listeners: list[JobListener] = []
        self._state_listeners: list[StateListener] = []

    def on_job(self, listener: JobListener) -> None:
        self._job_listeners.append(listener)

    def on_state(self, listener: StateListener) -> None:
        self._state_listeners.append(listener)

    def _publish_job(self, work: UpstreamWork) -> None:
        """New work; an upstream with work is READY. Job listeners hear of the work first (the
        router makes room for miners on it), state listeners then see it healthy."""
        self.work = work
        self.last_job_at = time.monotonic()
        for listener in self._job_listeners:
            listener(self, work)
        self._set_state(UpstreamState.READY)

    def _set_state(self, state: UpstreamState, error: str | None = None) -> None:
        if error is not None:
            self.last_error = error
        if state is self.state:
            return
        log = _log.info if state is UpstreamState.READY else _log.warning
        log("upstream.state", upstream=self.name, previous=self.state.value, state=state.value,
            error=error if state is not UpstreamState.READY else None)
        self.state = state
        for listener in self._state_listeners:
            listener(self)

    @property
    def healthy(self) -> bool:
        return self.state is UpstreamState.READY and self.work is not None

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def submit(self, job_id: str, extranonce2: bytes, ntime: int, nonce: int,
                     header: bytes, worker: str, extranonce1: bytes | None = None) -> SubmitOutcome:
        """Submit a share found on `job_id` (the upstream's own id) with the full extranonce2.

        `header` is the 80-byte header the proxy already built and hashed, and `worker` the miner
        that found it: a daemon upstream needs both to assemble and record a block; a pool
        upstream ignores them. `extranonce1` is the one the share was built on: a pool upstream
        refuses to send a share of a session that has ended.
        """
