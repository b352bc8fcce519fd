"""PostgreSQL: the embedded development server and schema migrations."""

from qscrypt.config import DatabaseConfig


def database_dsn(database: DatabaseConfig) -> str:
    """The configured DSN, or the embedded server's (started if it is not running)."""
    if database.dsn:
        return database.dsn
    from qscrypt.db.embedded import ensure_running

    database.embedded_data_dir.parent.mkdir(parents=True, exist_ok=True)
    return ensure_running(database.embedded_data_dir, database="qscrypt")
