"""The `[proxy]` section: listeners, limits, vardiff, upstreams, failover and switching."""

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mining.address import AddressError, address_to_script
from mining.coins import coin as coin_profile
from qscrypt.config import default_data_dir
from qscrypt.settings import ConfigError

_MAX_HOST_NAME = 64


@dataclass(frozen=True)
class ListenConfig:
    host: str = "0.0.0.0"
    port: int = 3333
    tls_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    proxy_protocol_from: list[str] = field(default_factory=list)
    """Networks (CIDR, or single addresses) of the load balancers allowed to send a PROXY protocol
    header (v1 or v2) on both ports; empty: PROXY protocol off. A header from any other source is
    refused, so no miner can claim another's address."""
    proxy_protocol: Literal["required", "optional"] = "required"
    """From a trusted source: "required" refuses a connection without a header."""
    proxy_protocol_timeout_s: float = 5.0
    """How long a trusted source's connection may take to send its header."""

    def __post_init__(self) -> None:
        if self.tls_port is not None and (self.tls_cert is None or self.tls_key is None):
            raise ConfigError("proxy.listen.tls_port", "needs tls_cert and tls_key")
        for i, cidr in enumerate(self.proxy_protocol_from):
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ConfigError(f"proxy.listen.proxy_protocol_from[{i}]",
                                  f"{cidr!r} is not a network in CIDR form (e.g. 10.0.0.0/8 or "
                                  f"192.0.2.7): {exc}") from None
        if not 0 < self.proxy_protocol_timeout_s <= 60:
            raise ConfigError("proxy.listen.proxy_protocol_timeout_s", "must be in (0, 60] seconds")
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
class AuxChainConfig:
    """A chain merge-mined on a daemon upstream's work (AuxPoW, mining.auxpow): its node gives
    blocks to mine with `createauxblock payout_address` and takes them with `submitauxblock`."""

    name: str
    coin: str = "DOGE"
    network: Literal["main", "test", "regtest"] = "main"
    rpc_url: str = ""
    rpc_user: str = ""
    rpc_password: str = ""
    rpc_cookie_file: Path | None = None
    payout_address: str = ""
    poll_s: float = 0.5
    """How often the chain's best block is asked for: a new one means new aux work."""


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
    aux: list[AuxChainConfig] = field(default_factory=list)
    """kind = "daemon": chains merge-mined on this upstream's work (`[[proxy.upstreams.aux]]`)."""

    def __post_init__(self) -> None:
        key = f"proxy.upstreams[{self.name}]"
        self._check_aux(key)
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

    def _check_aux(self, key: str) -> None:
        if self.aux and self.kind != "daemon":
            raise ConfigError(f"{key}.aux",
                              "merged mining needs a daemon upstream (solo): a pool merges its own")
        chain_ids: dict[int, str] = {}
        for aux in self.aux:
            where = f"{key}.aux[{aux.name}]"
            try:
                profile = coin_profile(aux.coin, aux.network)
            except ValueError as exc:
                raise ConfigError(f"{where}.coin", str(exc)) from None
            if profile.aux_chain_id is None:
                raise ConfigError(f"{where}.coin", f"{profile.label} takes no merged-mined (AuxPoW) blocks")
            if not aux.rpc_url.startswith(("http://", "https://")):
                raise ConfigError(f"{where}.rpc_url", "must be an http:// or https:// URL")
            if not aux.rpc_cookie_file and not aux.rpc_user:
                raise ConfigError(f"{where}.rpc_user", "set rpc_user/rpc_password or rpc_cookie_file")
            if not aux.payout_address:
                raise ConfigError(f"{where}.payout_address", "is required: createauxblock pays it")
            try:
                address_to_script(aux.payout_address, profile)
            except AddressError as exc:
                problem = f"{aux.payout_address!r} cannot be paid on {profile.label}: {exc}"
                raise ConfigError(f"{where}.payout_address", problem) from None
            if not 0 < aux.poll_s <= 60:
                raise ConfigError(f"{where}.poll_s", "must be in (0, 60] seconds")
            other = chain_ids.get(profile.aux_chain_id)
            if other is not None:
                raise ConfigError(f"{where}.coin",
                                  f"shares chain id {profile.aux_chain_id} with aux[{other}]: one parent "
                                  "block has one slot per chain id, so they cannot ride together")
            chain_ids[profile.aux_chain_id] = aux.name


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
    require_accounts: bool = False
    """Authorize only workers named ACCOUNT.RIG whose ACCOUNT is a payout address of an upstream's
    coin or a user name registered through the API (POST /v1/accounts); others are refused with a
    client.show_message saying why. Off: any printable name mines."""
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
    host_name: str = ""
    """This proxy host's name, in the rows it writes (shares, workers, blocks, switches, upstream
    events) and, hashed, in its solo coinbases; empty: the machine's hostname. Several hosts on
    one database need different names."""

    @property
    def host(self) -> str:
        return self.host_name or socket.gethostname()[:_MAX_HOST_NAME]

    def solo_earnings(self) -> dict[str, tuple[str, ...]]:
        """The coins each solo (daemon) upstream's coin earns besides itself by merged mining, as
        the aggregator's `solo_merged` takes them: {"LTC": ("DOGE",)}."""
        earnings: dict[str, tuple[str, ...]] = {}
        for upstream in self.upstreams:
            if upstream.kind == "daemon" and upstream.aux:
                coin = upstream.coin.upper()
                merged = tuple(aux.coin.upper() for aux in upstream.aux)
                earnings[coin] = tuple(dict.fromkeys(earnings.get(coin, ()) + merged))
        return earnings

    share_retention_days: float = 30.0
    """Raw shares older than this are dropped (whole days), but never those inside the PPLNS window;
    the 5-minute rollups (share_buckets) are kept."""
    pplns_factor: float = 2.0
    """The PPLNS window is pplns_factor x D x 65536 of share difficulty (D the network difficulty)."""
    bans_poll_s: float = 5.0
    """How often the operator's bans (table `bans`, set from the admin page) are read."""

    def __post_init__(self) -> None:
        if len(self.host_name) > _MAX_HOST_NAME or not self.host_name.isprintable():
            raise ConfigError("proxy.host_name",
                              f"must be printable text of at most {_MAX_HOST_NAME} characters")
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
