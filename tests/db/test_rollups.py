"""Share rollups (migration 0009): buckets filled as shares are written, by COPY as the proxy's
writer does and by INSERT; pruning raw shares that never cuts into the PPLNS window."""

from __future__ import annotations

import datetime as dt

import asyncpg

from proxy import db

UTC = dt.UTC
COLUMNS = ("ts", "worker", "upstream", "job_id", "difficulty", "share_diff", "result", "reason")


async def test_copy_rolls_shares_up_per_worker_and_pool(pg_conn: asyncpg.Connection) -> None:
    base = dt.datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
    rows = [
        (base + dt.timedelta(seconds=10), "alice.rig1", "pool-a", "j1", 16.0, 20.0, "accepted", None),
        (base + dt.timedelta(seconds=70), "alice.rig1", "pool-a", "j1", 16.0, 30.0, "accepted", None),
        (
            base + dt.timedelta(seconds=80),
            "alice.rig1",
            "pool-a",
            "j1",
            16.0,
            None,
            "rejected",
            "low difficulty",
        ),
        (base + dt.timedelta(minutes=6), "alice.rig2", "pool-a", "j2", 8.0, 9.0, "accepted", None),
        (base + dt.timedelta(minutes=6), "bob", "pool-b", "j2", 4.0, None, "stale", "stale job"),
    ]
    await db.ensure_share_partitions(pg_conn, base.date(), 1)
    await pg_conn.copy_records_to_table("shares", records=rows, columns=COLUMNS)
    # A second batch into the same bucket adds up.
    await pg_conn.copy_records_to_table("shares", records=rows[:1], columns=COLUMNS)
    got = {
        (r["worker"], r["bucket"], r["result"], r["reason"]): (r["account"], r["shares"], r["difficulty"])
        for r in await pg_conn.fetch("SELECT * FROM share_buckets WHERE bucket >= $1", base)
    }
    five = base + dt.timedelta(minutes=5)
    assert got == {
        ("alice.rig1", base, "accepted", ""): ("alice", 3, 48.0),
        ("alice.rig1", base, "rejected", "low difficulty"): ("alice", 1, 16.0),
        ("alice.rig2", five, "accepted", ""): ("alice", 1, 8.0),
        ("bob", five, "stale", "stale job"): ("bob", 1, 4.0),
    }
    pool = {
        (r["bucket"], r["upstream"], r["result"]): (r["shares"], r["difficulty"])
        for r in await pg_conn.fetch("SELECT * FROM pool_buckets WHERE bucket >= $1", base)
    }
    assert pool == {
        (base, "pool-a", "accepted"): (3, 48.0),
        (base, "pool-a", "rejected"): (1, 16.0),
        (five, "pool-a", "accepted"): (1, 8.0),
        (five, "pool-b", "stale"): (1, 4.0),
    }


async def test_prune_keeps_the_pplns_window(pg_conn: asyncpg.Connection) -> None:
    await pg_conn.execute("TRUNCATE shares, share_buckets, pool_buckets")
    first = dt.date(2029, 1, 1)
    await db.ensure_share_partitions(pg_conn, first, 4)
    # 1,000 difficulty a day for four days on one upstream.
    rows = [
        (dt.datetime(2029, 1, 1 + d, 6, tzinfo=UTC), "w.r", "pool-a", "j", 1000.0, 1000.0, "accepted", None)
        for d in range(4)
    ]
    await pg_conn.copy_records_to_table("shares", records=rows, columns=COLUMNS)
    window = await pg_conn.fetchval("SELECT qscrypt_pplns_window_start($1)", 2500.0)
    # The last three shares make 3,000 >= 2,500: the window starts at the third day's bucket.
    assert window == dt.datetime(2029, 1, 2, 6, tzinfo=UTC)
    # Retention asks for everything before day 4; the window says keep from day 2 on.
    cutoff = await db.share_prune_cutoff(pg_conn, dt.datetime(2029, 1, 4, tzinfo=UTC), 2500.0)
    assert cutoff == window
    assert await pg_conn.fetchval("SELECT qscrypt_prune_shares($1)", cutoff) == 1
    days = [r[0] for r in await pg_conn.fetch("SELECT ts FROM shares ORDER BY ts")]
    assert days == [r[0] for r in rows[1:]]
    # Rollups outlive the raw shares.
    assert await pg_conn.fetchval("SELECT sum(shares) FROM share_buckets WHERE worker = 'w.r'") == 4
