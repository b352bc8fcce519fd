"""Migrations against a real (embedded) PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import asyncpg
import pytest

from qscrypt.db.migrate import MigrationError, discover, migrate

UTC = dt.UTC

EXPECTED_TABLES = {
    "schema_migrations", "profiles", "coins", "coin_history", "pools", "pool_history",
    "hardware", "hardware_mining", "profitability", "workers", "shares", "shares_default",
    "blocks", "upstream_events", "switch_events",
}  # fmt: skip


def _share(ts: dt.datetime, result: str = "accepted") -> tuple[object, ...]:
    return (ts, "alice.rig1", "pool-a", "job1", 16.0, 17.5, result)


_INSERT_SHARE = """
INSERT INTO shares (ts, worker, upstream, job_id, difficulty, share_diff, result)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""


async def test_every_migration_is_recorded(pg_conn: asyncpg.Connection) -> None:
    rows = await pg_conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    recorded = {(r["version"], r["name"], r["checksum"]) for r in rows}
    assert recorded == {(m.version, m.name, m.checksum) for m in discover()}


async def test_second_run_applies_nothing(pg_dsn: str) -> None:
    assert await migrate(pg_dsn) == []


async def test_schema_has_every_table(pg_conn: asyncpg.Connection) -> None:
    tables = await pg_conn.fetch(
        "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace = 'public'::regnamespace"
    )
    assert EXPECTED_TABLES <= {t["relname"] for t in tables}


async def test_share_partitions_are_created_once_and_used(pg_conn: asyncpg.Connection) -> None:
    ensure = "SELECT qscrypt_ensure_share_partitions($1, $2)"
    assert await pg_conn.fetchval(ensure, dt.date(2030, 1, 1), 2) == 2
    assert await pg_conn.fetchval(ensure, dt.date(2030, 1, 1), 3) == 1
    await pg_conn.execute(_INSERT_SHARE, *_share(dt.datetime(2030, 1, 2, 23, 59, tzinfo=UTC)))
    partition = await pg_conn.fetchval(
        "SELECT tableoid::regclass::text FROM shares WHERE ts = $1",
        dt.datetime(2030, 1, 2, 23, 59, tzinfo=UTC),
    )
    assert partition == "shares_p20300102"


async def test_new_partition_takes_its_rows_from_the_default(pg_conn: asyncpg.Connection) -> None:
    ts = dt.datetime(2031, 6, 1, 0, 0, tzinfo=UTC)
    await pg_conn.execute(_INSERT_SHARE, *_share(ts))
    assert await pg_conn.fetchval("SELECT count(*) FROM shares_default WHERE ts = $1", ts) == 1
    assert (
        await pg_conn.fetchval("SELECT qscrypt_ensure_share_partitions($1, $2)", dt.date(2031, 6, 1), 1) == 1
    )
    assert await pg_conn.fetchval("SELECT count(*) FROM shares_default WHERE ts = $1", ts) == 0
    assert await pg_conn.fetchval("SELECT count(*) FROM shares_p20310601 WHERE ts = $1", ts) == 1


@pytest.mark.parametrize(
    ("statement", "args"),
    [
        (_INSERT_SHARE, _share(dt.datetime(2030, 1, 1, tzinfo=UTC), result="lucky")),
        ("INSERT INTO hardware (name, kind) VALUES ($1, $2)", ("Some FPGA", "fpga")),
        (
            "INSERT INTO profiles (name, strategy, max_fee_pct) VALUES ($1, $2, $3)",
            ("greedy", "max_usd", 101),
        ),
        (
            "INSERT INTO coins (symbol, algorithm, name, price_usd) VALUES ($1, $2, $3, $4)",
            ("LTC", "scrypt", "Litecoin", -1),
        ),
    ],
    ids=["share-result", "hardware-kind", "profile-fee", "coin-price"],
)
async def test_check_constraints_reject_bad_rows(
    pg_conn: asyncpg.Connection, statement: str, args: tuple[object, ...]
) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await pg_conn.execute(statement, *args)


async def test_workers_need_a_known_profile(pg_conn: asyncpg.Connection) -> None:
    await pg_conn.execute("INSERT INTO workers (name) VALUES ($1)", "bob.default")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await pg_conn.execute(
            "INSERT INTO workers (name, profile) VALUES ($1, $2)", "bob.nowhere", "no-such-profile"
        )


async def test_edited_migration_is_an_error_naming_the_file(pg_empty_dsn: str, tmp_path: Path) -> None:
    migration = tmp_path / "0001_first.sql"
    migration.write_text("CREATE TABLE first (id integer);\n")
    assert await migrate(pg_empty_dsn, tmp_path) == ["0001_first.sql"]
    migration.write_text("CREATE TABLE first (id bigint);\n")
    with pytest.raises(MigrationError, match=r"0001_first\.sql changed after it was applied"):
        await migrate(pg_empty_dsn, tmp_path)


async def test_failed_migration_leaves_nothing_behind(pg_empty_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id integer);\n")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id integer);\nSELECT nonsense;\n")
    with pytest.raises(MigrationError, match=r"0002_bad\.sql failed"):
        await migrate(pg_empty_dsn, tmp_path)
    conn = await asyncpg.connect(pg_empty_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert await conn.fetch("SELECT version FROM schema_migrations") == [("0001",)]
    finally:
        await conn.close()


async def test_concurrent_runs_apply_each_file_once(pg_empty_dsn: str) -> None:
    results = await asyncio.gather(*(migrate(pg_empty_dsn) for _ in range(3)))
    assert sorted(results) == [[], [], [m.file_name for m in discover()]]


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0002_a.sql").write_text("SELECT 1;\n")
    (tmp_path / "0002_b.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=r"0002_a\.sql and 0002_b\.sql share version 0002"):
        discover(tmp_path)


def test_badly_named_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "2_oops.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=r"2_oops\.sql"):
        discover(tmp_path)
