"""The share writer's daily pruning of raw shares: past the retention, but never inside the PPLNS
window, and not at all while no network difficulty is known."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from proxy import db
from proxy.accounting import ShareWriter, share_log

COLUMNS = db.SHARE_COLUMNS[:8]  # up to `reason`: no block, address or host


async def _partitions(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'shares'::regclass AND c.relname <> 'shares_default'"
        " ORDER BY 1"
    )
    return [r[0] for r in rows]


async def test_pruning_keeps_the_retention_and_the_pplns_window(
    pg_conn: asyncpg.Connection, pg_dsn: str, tmp_path: Path
) -> None:
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=d) for d in (40, 35, 10, 1)]
    await db.ensure_share_partitions(pg_conn, days[0].date(), 41)
    # 1,000 of share difficulty on each of those days.
    await pg_conn.copy_records_to_table(
        "shares",
        columns=COLUMNS,
        records=[(day, "w.r", "pool-a", "j", 1000.0, 1000.0, "accepted", None) for day in days],
    )
    before = await _partitions(pg_conn)
    writer = ShareWriter(
        share_log(tmp_path / "log"), pg_dsn, tmp_path / "quarantine", retention_days=30, pplns_factor=2.0
    )

    await writer._prune_shares(pg_conn)  # no difficulty known yet: nothing goes
    assert await _partitions(pg_conn) == before

    # D x 65536 x 2 = 3,000: the last three shares make the window; it starts 35 days ago.
    await pg_conn.execute(
        "INSERT INTO coins (symbol, algorithm, name, difficulty) VALUES ('LTC', 'scrypt', 'Litecoin', $1)",
        3000.0 / 2 / 65536,
    )
    writer._shares_pruned = None  # a new day
    await writer._prune_shares(pg_conn)
    kept = sorted(r[0] for r in await pg_conn.fetch("SELECT ts FROM shares"))
    assert kept == days[1:], "the 40-day-old share is past the retention and outside the window"
    assert f"shares_p{days[1]:%Y%m%d}" in await _partitions(pg_conn)
    assert f"shares_p{days[0]:%Y%m%d}" not in await _partitions(pg_conn)

    # A window of one share: the retention (30 days) decides.
    await pg_conn.execute("UPDATE coins SET difficulty = $1", 1000.0 / 2 / 65536)
    writer._shares_pruned = None
    await writer._prune_shares(pg_conn)
    assert sorted(r[0] for r in await pg_conn.fetch("SELECT ts FROM shares")) == days[2:]
    # The rollups stay.
    assert await pg_conn.fetchval("SELECT sum(shares) FROM share_buckets WHERE worker = 'w.r'") == 4
