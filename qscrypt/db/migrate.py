"""Schema migrations: the ordered plain SQL files `migrations/NNNN_name.sql`, applied once each.

Each file runs in its own transaction and is recorded in `schema_migrations` with a checksum,
so an applied file that was edited afterwards is an error rather than a silent divergence. An
advisory lock makes concurrent `migrate` calls (several processes starting at once) take turns.
A file that cannot run in a transaction (CREATE INDEX CONCURRENTLY) does not belong here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

# Any 64-bit constant shared by every Qscrypt process: the ASCII of "qscrypt".
_LOCK_KEY = int.from_bytes(b"qscrypt", "big")
_FILE_NAME = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migrations on disk and in the database disagree, or one failed to apply."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def file_name(self) -> str:
        return self.path.name


def discover(directory: Path | None = None) -> list[Migration]:
    """The migrations in `directory` (default: the repository's `migrations/`), in order."""
    directory = directory or MIGRATIONS_DIR
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    migrations: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        migration = _load(path)
        clash = migrations.get(migration.version)
        if clash is not None:
            raise MigrationError(
                f"{clash.file_name} and {migration.file_name} share version {migration.version}"
            )
        migrations[migration.version] = migration
    return list(migrations.values())


async def migrate(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply the pending migrations to the database at `dsn`; the file names applied."""
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate_connection(conn, directory)
    finally:
        await conn.close()


async def migrate_connection(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """`migrate` over a connection the caller owns (and must not use in a transaction)."""
    migrations = discover(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_CREATE_LEDGER)
        applied = await _applied_checksums(conn)
        _check_unchanged(migrations, applied)
        pending = [m for m in migrations if m.version not in applied]
        for migration in pending:
            await _apply(conn, migration)
        return [m.file_name for m in pending]
    finally:
        # A dead connection has released the lock already; unlocking it would mask the error.
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


def _load(path: Path) -> Migration:
    match = _FILE_NAME.fullmatch(path.name)
    if match is None:
        raise MigrationError(f"{path.name}: migration files are named NNNN_lower_snake_name.sql")
    raw = path.read_bytes()
    try:
        sql = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationError(f"{path.name} is not UTF-8: {exc}") from None
    return Migration(
        version=match["version"],
        name=match["name"],
        path=path,
        sql=sql,
        checksum=hashlib.sha256(raw).hexdigest(),
    )


async def _applied_checksums(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


def _check_unchanged(migrations: list[Migration], applied: dict[str, str]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"{migration.file_name} changed after it was applied (checksum {recorded} in "
                f"schema_migrations, {migration.checksum} on disk): add a new migration instead"
            )


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"{migration.file_name} failed: {exc}") from exc
