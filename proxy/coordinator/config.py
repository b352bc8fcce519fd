"""The `[coordinator]` section: one coordinator, its upstream session, its share of the nonce space."""

from dataclasses import dataclass, field
from typing import Literal

from qscrypt.bus.config import BusConfig
from qscrypt.settings import ConfigError


@dataclass(frozen=True)
class CoordinatorConfig:
    upstream: str
    """Name of a `[[proxy.upstreams]]` entry: the coordinator opens its own session to it."""
    coordinator_id: int = 0
    """Unique among coordinators sharing an upstream account: the high bytes of every extranonce2."""
    id_bytes: int = 1
    """Bytes of extranonce2 holding coordinator_id; the rest count. 1 allows 256 coordinators."""
    bus: BusConfig = field(default_factory=BusConfig)
    task_seconds: float = 3.0
    """Range size follows each worker's measured rate so one task takes about this long."""
    initial_nonces: int = 4096
    """Range size for a worker whose rate is not known yet."""
    min_nonces: int = 256
    max_nonces: int = 1 << 32
    tasks_ahead: int = 2
    """Tasks outstanding per worker: one hashing, the rest queued so it never waits for the next."""
    task_timeout_s: float = 60.0
    """A task not completed by then is issued again to another live worker (same id, same range)."""
    max_attempts: int = 3
    worker_timeout_s: float = 15.0
    """A worker heard from neither by heartbeat nor result for this long is taken for gone."""
    share_difficulty: float | None = None
    """Difficulty workers report shares at (credited in accounting); default: the upstream's."""
    submit_rate: float = 1.0
    """Shares per second forwarded upstream (token bucket); blocks are never held back."""
    submit_burst: int = 1
    submit_queue: int = 256
    """Shares waiting for a token beyond this drop oldest-first; stale ones drop when their turn comes."""
    store: Literal["memory", "postgres"] = "postgres"
    """Where the nonce cursor persists; postgres uses [database] (memory: nothing survives a restart)."""
    reserve_nonces: int = 1 << 32
    """Positions reserved per cursor write: one write per this many nonces issued."""
    tick_s: float = 0.25
    """How often timeouts are checked and partitions without a known worker get a task."""

    def __post_init__(self) -> None:
        if not 1 <= self.id_bytes <= 2:
            raise ConfigError("coordinator.id_bytes", "must be 1 or 2")
        if not 0 <= self.coordinator_id < 1 << (8 * self.id_bytes):
            raise ConfigError("coordinator.coordinator_id", f"must fit in id_bytes = {self.id_bytes}")
        if not 1 <= self.min_nonces <= self.initial_nonces <= self.max_nonces <= 1 << 32:
            raise ConfigError("coordinator", "need 1 <= min_nonces <= initial_nonces <= max_nonces <= 2^32")
        for name in ("task_seconds", "task_timeout_s", "worker_timeout_s", "submit_rate", "tick_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"coordinator.{name}", "must be positive")
        for name in ("tasks_ahead", "max_attempts", "submit_burst", "submit_queue", "reserve_nonces"):
            if getattr(self, name) < 1:
                raise ConfigError(f"coordinator.{name}", "must be at least 1")
        if self.share_difficulty is not None and self.share_difficulty <= 0:
            raise ConfigError("coordinator.share_difficulty", "must be positive")
