"""The whole TOML file: the library's sections and each package's, as the `qscrypt` command loads it.

Documented key by key in `qscrypt.example.toml`. Sections of packages that load their own typed
config (`[aggregator]`, `[api]`, `[coordinator]`) travel as tables to the subcommand that needs them.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.config import ProxyConfig
from qscrypt.config import DatabaseConfig, LoggingConfig
from qscrypt.settings import load_section, read_toml


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    aggregator: dict[str, Any] = field(default_factory=dict)
    """Passed to the aggregator's own typed loader."""
    api: dict[str, Any] = field(default_factory=dict)
    coordinator: dict[str, Any] = field(default_factory=dict)
    """Kafka fan-out of one upstream's work (proxy.coordinator.config.CoordinatorConfig); empty: off."""
    fleet: dict[str, Any] = field(default_factory=dict)
    """ASICs polled over the cgminer API (fleet.config.FleetConfig), for `qscrypt fleet`."""
    payouts: dict[str, Any] = field(default_factory=dict)
    """Paying miners (payouts.config.PayoutsConfig), for `qscrypt payouts`."""


def load_config(path: Path | None, environ: dict[str, str] | None = None) -> Config:
    import os

    env = dict(os.environ if environ is None else environ)
    data = read_toml(path) if path is not None else {}
    config = load_section(Config, data, "", env)
    dsn = env.get("QSCRYPT_DATABASE_DSN")
    if dsn and not config.database.dsn:
        from dataclasses import replace

        config = replace(config, database=replace(config.database, dsn=dsn))
    return config
