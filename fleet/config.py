"""The `[fleet]` TOML section and its `[[fleet.devices]]`, mapped by `qscrypt.settings.load_section`."""

import re
from dataclasses import dataclass
from typing import Literal

from qscrypt.settings import ConfigError

RateUnit = Literal["auto", "H", "kH", "MH", "GH", "TH"]
DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
"""A device's name is a metric label and a URL path segment: short, plain characters."""


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    host: str
    port: int = 4028
    model: str = ""
    """A hint for firmwares that do not say what they are (a Bitmain STATS `Type` wins)."""
    worker: str = ""
    """The worker name it mines as on the proxy: its hashrate there is set beside its own."""
    rate_unit: RateUnit = "auto"
    """What its rate fields really are; auto checks each label against the device's hash counter."""

    def __post_init__(self) -> None:
        if not DEVICE_NAME.match(self.name):
            raise ValueError(f"device name {self.name!r}: 1-64 of A-Z a-z 0-9 . _ : - "
                             "(first a letter or digit)")
        if not self.host or len(self.host) > 255:
            raise ValueError("host must be 1-255 characters")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not a TCP port")
        if len(self.worker) > 128 or len(self.model) > 128:
            raise ValueError("worker and model are at most 128 characters")


@dataclass(frozen=True)
class FleetConfig:
    poll_s: float = 30.0
    """How often each device is read (summary, pools, stats)."""
    timeout_s: float = 5.0
    """The most one command to one device may take, connection included."""
    concurrency: int = 32
    """Devices read at once."""
    backoff_max_s: float = 600.0
    """A device that does not answer is retried after poll_s, then twice that… up to this."""
    window_s: float = 600.0
    """The window over which a device's own hashrate is set beside the proxy's measure of it."""
    share_lag_s: float = 15.0
    """Shares reach PostgreSQL up to proxy.share_flush_s late: the window ends this long ago."""
    json_format: bool = True
    """Ask in JSON; false asks in cgminer's plain text (old firmwares)."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9102
    """Prometheus metrics of the poller (0: none)."""
    max_devices: int = 10_000
    devices: tuple[DeviceConfig, ...] = ()

    def __post_init__(self) -> None:
        if self.poll_s <= 0 or self.timeout_s <= 0 or self.backoff_max_s < self.poll_s:
            raise ConfigError("fleet", "poll_s and timeout_s must be positive and backoff_max_s >= poll_s")
        if self.window_s < 2 * self.poll_s:
            raise ConfigError("fleet.window_s", f"must be at least two polls ({2 * self.poll_s:g} s)")
        if self.share_lag_s < 0:
            raise ConfigError("fleet.share_lag_s", "must be >= 0")
        if self.concurrency < 1:
            raise ConfigError("fleet.concurrency", "must be >= 1")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("fleet.metrics_port", f"{self.metrics_port} is not a TCP port")
        names = [d.name for d in self.devices]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ConfigError(f"fleet.devices.{i}.name", f"{name!r} is used by another device")
