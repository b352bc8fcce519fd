"""The `[api]` TOML section, mapped by `qscrypt.settings.load_section` onto `ApiConfig`."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

TOKEN_ENV = "QSCRYPT_API_TOKEN"


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""
    """Bearer token for profile writes; empty falls back to QSCRYPT_API_TOKEN, and with neither
    set every write is refused."""
    switch_threshold_pct: float = 5.0
    """A profile moves only when the best choice beats the current one by at least this much."""
    min_dwell_s: float = 600.0
    """... and the current choice has been held at least this long."""
    max_data_age_s: float = 1800.0
    """Profitability data older than this is stale: decisions keep the current choice and say so."""
    evaluate_every_s: float = 1.0
    """How often new data is looked for and every profile's decision re-evaluated."""
    rate_limit_per_s: float = 20.0
    """Requests per second each client IP may make on average; 0 turns rate limiting off."""
    rate_limit_burst: int = 40
    """Requests a client may make at once before the average applies."""
    db_pool_size: int = 8
    payout_network: Literal["main", "test", "regtest"] = "main"
    """Whose address rules accounts' payout addresses follow (POST /v1/accounts, {account} paths)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not a TCP port")
        if self.switch_threshold_pct < 0 or self.min_dwell_s < 0:
            raise ValueError("switch_threshold_pct and min_dwell_s must be >= 0")
        if self.max_data_age_s <= 0 or self.evaluate_every_s <= 0:
            raise ValueError("max_data_age_s and evaluate_every_s must be positive")
        if self.rate_limit_per_s < 0 or self.rate_limit_burst < 1:
            raise ValueError("rate_limit_per_s must be >= 0 and rate_limit_burst >= 1")
        if self.db_pool_size < 1:
            raise ValueError("db_pool_size must be >= 1")

    def write_token(self, environ: Mapping[str, str] | None = None) -> str:
        """The token writes must present; "" when none is configured (writes refused)."""
        env = os.environ if environ is None else environ
        return self.token or env.get(TOKEN_ENV, "")
