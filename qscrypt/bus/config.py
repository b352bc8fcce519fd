"""Task bus settings: which bus, where the broker is, topic shapes, and how clients authenticate.

A frozen dataclass so the `[coordinator.bus]` TOML table and the worker's command line map onto it
through `qscrypt.settings.load_section`, with the same checks either way.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from qscrypt.settings import ConfigError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]


@dataclass(frozen=True)
class BusConfig:
    kind: Literal["memory", "kafka"] = "memory"
    """memory: an in-process asyncio bus (coordinator and workers in one process); kafka: a broker."""
    bootstrap: str = ""
    """Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]."""
    topic_prefix: str = "qscrypt."
    task_partitions: int = 12
    """Upper bound on useful workers per group: each partition is consumed by one worker at a time."""
    result_partitions: int = 4
    """Each coordinator reads one results partition (coordinator id modulo this)."""
    control_partitions: int = 1
    replication_factor: int = 1
    task_retention_ms: int = 3_600_000
    result_retention_ms: int = 3_600_000
    control_segment_ms: int = 60_000
    """The control topic is compacted (latest epoch per coordinator); short segments keep it small."""
    worker_group: str = "qscrypt-workers"
    session_timeout_ms: int = 10_000
    """A worker that stops heartbeating to the broker for this long loses its partitions."""
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    fetch_max_wait_ms: int = 500
    """How long an idle consumer's fetch waits at the broker; data arriving ends the wait at once, so
    a large fleet can raise this to cut idle requests without slowing delivery."""
    request_timeout_ms: int = 30_000
    retry_backoff_ms: int = 200
    linger_ms: int = 2
    security_protocol: SecurityProtocol = "PLAINTEXT"
    ssl_cafile: Path | None = None
    """CA bundle the broker's certificate must chain to (hostname checked too)."""
    ssl_certfile: Path | None = None
    """Client certificate for mTLS; its CN is the worker id when set."""
    ssl_keyfile: Path | None = None
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-256"
    sasl_username: str = ""
    """With SASL the username is the worker id."""
    sasl_password: str = ""
    memory_max_records: int = 1_000_000
    """In-process bus only: records kept per partition beyond what every group has committed."""

    def __post_init__(self) -> None:
        if self.kind == "kafka" and not self.bootstrap:
            raise ConfigError("bus.bootstrap", "is required with kind = \"kafka\"")
        for name in ("task_partitions", "result_partitions", "control_partitions", "replication_factor",
                     "memory_max_records"):
            if getattr(self, name) < 1:
                raise ConfigError(f"bus.{name}", "must be at least 1")
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ConfigError("bus.sasl_username",
                              f"{self.security_protocol} needs sasl_username and sasl_password")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError("bus.ssl_certfile", "ssl_certfile and ssl_keyfile go together")
        if self.ssl_certfile is not None and self.security_protocol not in ("SSL", "SASL_SSL"):
            raise ConfigError("bus.ssl_certfile",
                              "a client certificate needs security_protocol SSL or SASL_SSL")

    @property
    def tasks_topic(self) -> str:
        return f"{self.topic_prefix}tasks"

    @property
    def results_topic(self) -> str:
        return f"{self.topic_prefix}results"

    @property
    def control_topic(self) -> str:
        return f"{self.topic_prefix}control"
