"""Configuration the library itself needs (the database, logging, where data lives). Each product
package declares its own section (`proxy/config.py`, `aggregator/config.py`, `api/config.py`);
the whole file is assembled in `cli/config.py`."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


def default_data_dir() -> Path:
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "qscrypt"


@dataclass(frozen=True)
class DatabaseConfig:
    dsn: str = ""
    """PostgreSQL DSN; empty starts the embedded server (env: QSCRYPT_DATABASE_DSN)."""
    embedded_data_dir: Path = field(default_factory=lambda: default_data_dir() / "postgres")


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
