"""The proxy's SQL (proxy.db) against a real migrated PostgreSQL: what the flows above it rely on
and no other test shows directly."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from proxy import db

FOUND_AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


async def test_a_block_row_moves_from_pending_once_and_never_back(pg_conn: asyncpg.Connection) -> None:
    async def put(status: str, reason: str | None) -> None:
        await db.insert_block(pg_conn, "LTC", 500, "ab" * 32, "rig.1", "solo", Decimal("6.25"), status,
                              reason, FOUND_AT, timeout=5.0)

    async def row() -> tuple[str, str | None, int]:
        found = await pg_conn.fetch("SELECT status, reason FROM blocks WHERE hash = $1", "ab" * 32)
        return found[0]["status"], found[0]["reason"], len(found)

    await put("pending", None)
    assert await row() == ("pending", None, 1)
    await put("rejected", "bad-txnmrklroot")
    assert await row() == ("rejected", "bad-txnmrklroot", 1)
    await put("accepted", None)  # a replayed older record must not overwrite the final status
    assert await row() == ("rejected", "bad-txnmrklroot", 1)


async def test_an_upstream_event_keeps_its_detail_as_json(pg_conn: asyncpg.Connection) -> None:
    await db.insert_upstream_event(pg_conn, "backup", "failover",
                                   {"profile": "default", "from": "main", "to": "backup", "miners": 3})
    row = await pg_conn.fetchrow("SELECT upstream, event, detail->>'from' AS previous,"
                                 " (detail->>'miners')::int AS miners FROM upstream_events")
    assert dict(row) == {"upstream": "backup", "event": "failover", "previous": "main", "miners": 3}


async def test_a_decision_notice_reaches_the_listener(pg_dsn: str, pg_conn: asyncpg.Connection) -> None:
    heard = asyncio.Event()
    listener = await asyncpg.connect(pg_dsn)
    try:
        await db.listen_decisions(listener, lambda *_: heard.set())
        await db.ping(listener)
        await pg_conn.execute("SELECT pg_notify($1, 'maxusd')", db.DECISIONS_CHANNEL)
        await asyncio.wait_for(heard.wait(), 5)
    finally:
        await listener.close()


async def test_a_cursor_has_one_owner_and_survives_it(pg_dsn: str) -> None:
    first, second = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    try:
        assert await db.lock_cursor(first, 3, "ltc-pool")
        assert not await db.lock_cursor(second, 3, "ltc-pool")
        assert await db.lock_cursor(second, 4, "ltc-pool")  # another coordinator id: its own cursor
        assert await db.load_cursor(first, 3, "ltc-pool") is None
        await db.save_cursor(first, 3, "ltc-pool", "job-a", 1, 5000)
        await db.save_cursor(first, 3, "ltc-pool", "job-b", 2, 10_000)
        await first.close()  # the owner goes: its lock with it, its cursor stays
        assert await db.lock_cursor(second, 3, "ltc-pool")
        assert await db.load_cursor(second, 3, "ltc-pool") == ("job-b", 2, 10_000)
    finally:
        await first.close()
        await second.close()


async def test_a_worker_keeps_the_host_and_address_of_its_latest_share(pg_conn: asyncpg.Connection) -> None:
    # Two hosts write the same worker's batches; a late one (a dead host's journal replayed after
    # the worker moved on) adds its counts but leaves where the worker is now.
    later = datetime(2026, 5, 1, 12, 5, tzinfo=UTC)
    await db.add_worker_totals(pg_conn, [("roaming", 2, 0, 0, later, "198.51.100.7", "edge-b")])
    await db.add_worker_totals(pg_conn, [("roaming", 3, 1, 0, FOUND_AT, "198.51.100.7", "edge-a")])
    row = await pg_conn.fetchrow("SELECT accepted, rejected, host, last_ip, last_share_at FROM workers"
                                 " WHERE name = 'roaming'")
    assert tuple(row) == (5, 1, "edge-b", "198.51.100.7", later)
    latest = later.replace(minute=9)
    await db.add_worker_totals(pg_conn, [("roaming", 1, 0, 0, latest, "203.0.113.4", "edge-a")])
    row = await pg_conn.fetchrow("SELECT host, last_ip FROM workers WHERE name = 'roaming'")
    assert tuple(row) == ("edge-a", "203.0.113.4")


async def test_rows_of_moves_and_blocks_carry_the_host(pg_conn: asyncpg.Connection) -> None:
    await db.insert_switch_event(pg_conn, "night", 4, "pool-a", "pool-b", "better", 7.5, host="edge-a")
    await db.insert_upstream_event(pg_conn, "pool-b", "failover", {}, host="edge-b")
    await db.insert_block(pg_conn, "LTC", 501, "cd" * 32, "rig.1", "solo", Decimal("6.25"), "accepted", None,
                          FOUND_AT, host="edge-c")
    assert await pg_conn.fetchval("SELECT host FROM switch_events WHERE profile = 'night'") == "edge-a"
    assert await pg_conn.fetchval("SELECT host FROM upstream_events WHERE upstream = 'pool-b'") == "edge-b"
    assert await pg_conn.fetchval("SELECT host FROM blocks WHERE hash = $1", "cd" * 32) == "edge-c"
