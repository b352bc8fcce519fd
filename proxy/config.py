"""The `[proxy]` section: listeners, limits, vardiff, upstreams, failover and switching."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from qscrypt.config import default_data_dir
from qscrypt.settings import ConfigError


@dataclass(frozen=True)
class ListenConfig:
    host: str = "0.0.0.0"
    port: int = 3333
    tls_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        if self.tls_port is not None and (self.tls_cert is None or self.tls_key is None):
            raise ConfigError("proxy.listen.tls_port", "needs tls_cert and tls_key")
        for key, port in (("port", self.port), ("tls_port", self.tls_port)):
            if port is not None and not 0 <= port <= 65535:
                raise ConfigError(f"proxy.listen.{key}", f"{port} is not a TCP port")


@dataclass(frozen=True)
class LimitsConfig:
    max_connections: int = 20000
    max_connections_per_ip: int = 1000
    max_line_bytes: int = 16384
    messages_per_second: float = 20.0
    message_burst: int = 100
    handshake_timeout_s: float = 30.0
    """A connection that has not subscribed and authorized by then is closed."""
    idle_timeout_s: float = 600.0
    """A miner that sends nothing for this long is closed."""
    write_buffer_bytes: int = 256 * 1024
    """A miner that does not read and lets this much pile up is dropped."""
    max_protocol_errors: int = 20
    connects_per_ip_per_s: float = 5.0
    connect_burst_per_ip: int = 1000
    """New connections one IP may open: this burst (a whole farm reconnecting after a restart),
    then this many per second."""
    ban_invalid_ratio: float = 0.8
    ban_min_shares: int = 50
    ban_seconds: float = 600.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_connections_per_ip", "max_line_bytes", "message_burst",
                     "write_buffer_bytes", "connects_per_ip_per_s", "connect_burst_per_ip"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"proxy.limits.{name}", "must be positive")
        if not 0 < self.ban_invalid_ratio <= 1:
            raise ConfigError("proxy.limits.ban_invalid_ratio", "must be in (0, 1]")


@dataclass(frozen=True)
class VardiffConfig:
    initial: float = 0.01
    minimum: float = 0.0001
    maximum: float = 1_000_000.0
    target_interval_s: float = 10.0
    retarget_every_s: float = 30.0
    variance: float = 0.3
    """No retarget while the observed interval is within ±variance of the target."""

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.initial <= self.maximum:
            raise ConfigError("proxy.vardiff", "need 0 < minimum <= initial <= maximum")
        if self.target_interval_s <= 0 or self.retarget_every_s <= 0:
            raise ConfigError("proxy.vardiff", "intervals must be positive")
        if not 0 <= self.variance < 1:
            raise ConfigError("proxy.vardiff.variance", "must be in [0, 1)")


@dataclass(frozen=True)
class UpstreamConfig:
    name: str
    kind: Literal["pool", "daemon"] = "pool"
    coin: str = "LTC"
    priority: int = 0
    """Lower is preferred; failover walks upstreams in priority order."""
    # kind = "pool"
    url: str = ""
    """stratum+tcp://host:port or stratum+ssl://host:port"""
    user: str = ""
    password: str = "x"
    tls_verify: bool = True
    tls_ca: Path | None = None
    # kind = "daemon"
    rpc_url: str = ""
    rpc_user: str = ""
    rpc_password: str = ""
    rpc_cookie_file: Path | None = None
    network: Literal["main", "test", "regtest"] = "main"
    payout_address: str = ""
    coinbase_tag: str = "/qscrypt/"
    refresh_s: float = 30.0

    def __post_init__(self) -> None:
        key = f"proxy.upstreams[{self.name}]"
        if self.kind == "pool":
            if not self.url.startswith(("stratum+tcp://", "stratum+ssl://", "stratum+tls://")):
                raise ConfigError(f"{key}.url", "must look like stratum+tcp://host:port or stratum+ssl://host:port")
            if not self.user:
                raise ConfigError(f"{key}.user", "is required for a pool upstream")
        else:
            if not self.rpc_url.startswith(("http://", "https://")):
                raise ConfigError(f"{key}.rpc_url", "must be an http:// or https:// URL")
            if not self.payout_address:
                raise ConfigError(f"{key}.payout_address", "is required for a daemon upstream")
            if not self.rpc_cookie_file and not self.rpc_user:
                raise ConfigError(f"{key}.rpc_user", "set rpc_user/rpc_password or rpc_cookie_file")


@dataclass(frozen=True)
class FailoverConfig:
    no_job_timeout_s: float = 180.0
    """An upstream that sends no new job for this long is treated as dead."""
    retry_backoff_s: float = 30.0
    retry_backoff_max_s: float = 300.0
    fallback_to_preferred: bool = True
    hot_standby: int = 1
    """Extra upstream sessions kept open besides the active one, so a move is instant."""
    grace_s: float = 30.0
    """Shares for a previous upstream's jobs are still forwarded for this long after a move."""


@dataclass(frozen=True)
class SwitchingConfig:
    api_url: str = ""
    """The decision API, e.g. http://127.0.0.1:8080; empty: no profit switching (failover only)."""
    poll_s: float = 15.0
    """How often decisions are polled (ETag: unchanged costs a 304); NOTIFY wakes it sooner."""
    stagger_miners: int = 200
    stagger_interval_s: float = 0.1
    """A switch moves `stagger_miners` miners every `stagger_interval_s`, so a pool never sees
    thousands of new miners in the same second."""

    def __post_init__(self) -> None:
        if self.poll_s <= 0 or self.stagger_miners <= 0 or self.stagger_interval_s < 0:
            raise ConfigError("proxy.switching", "poll_s and stagger_miners must be positive")


@dataclass(frozen=True)
class ProxyConfig:
    listen: ListenConfig = field(default_factory=ListenConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    vardiff: VardiffConfig = field(default_factory=VardiffConfig)
    failover: FailoverConfig = field(default_factory=FailoverConfig)
    switching: SwitchingConfig = field(default_factory=SwitchingConfig)
    upstreams: list[UpstreamConfig] = field(default_factory=list)
    extranonce_prefix_size: int = 2
    auth_mode: Literal["open", "tokens"] = "open"
    tokens: list[str] = field(default_factory=list)
    """With auth_mode = "tokens": accepted passwords (or from the workers table)."""
    metrics_port: int | None = 9100
    """Prometheus /metrics port; 0 disables it."""
    metrics_host: str = ""
    """Address the metrics server binds; empty: the Stratum listen host."""
    keepalive_s: float = 30.0
    """A miner that has had no mining.notify for this long gets the current job again (fresh ntime,
    clean_jobs false): cpuminer drops a server silent for 120 s."""
    workers: int = 1
    """Event-loop processes behind the listening ports (proxy.supervisor); 1: a single process."""
    hash_processes: int = 0
    """Helper processes that hash shares; 0: one per core."""
    share_flush_s: float = 1.0
    share_buffer_max: int = 100_000
    spill_dir: Path = field(default_factory=lambda: default_data_dir() / "spill")
    share_retention_days: float = 30.0
    """Raw shares older than this are dropped (whole days), but never those inside the PPLNS window;
    the 5-minute rollups (share_buckets) are kept."""
    pplns_factor: float = 2.0
    """The PPLNS window is pplns_factor x D x 65536 of share difficulty (D the network difficulty)."""
    bans_poll_s: float = 5.0
    """How often the operator's bans (table `bans`, set from the admin page) are read."""

    def __post_init__(self) -> None:
        if not 1 <= self.extranonce_prefix_size <= 4:
            raise ConfigError("proxy.extranonce_prefix_size", "must be 1..4 bytes")
        if not 1 <= self.workers <= 256:
            raise ConfigError("proxy.workers", "must be 1..256 (session ids carry the worker in one byte)")
        if not 1 <= self.keepalive_s <= 110:
            raise ConfigError("proxy.keepalive_s",
                              "must be 1..110 s (cpuminer drops a server silent for 120 s)")
        if self.share_retention_days <= 0:
            raise ConfigError("proxy.share_retention_days", "must be positive")
        if self.pplns_factor <= 0:
            raise ConfigError("proxy.pplns_factor", "must be positive")
        if self.bans_poll_s <= 0:
            raise ConfigError("proxy.bans_poll_s", "must be positive")
        if self.hash_processes < 0:
            raise ConfigError("proxy.hash_processes", "must be 0 (one per core) or more")
        names = [u.name for u in self.upstreams]
        if len(names) != len(set(names)):
            raise ConfigError("proxy.upstreams", "upstream names must be unique")
