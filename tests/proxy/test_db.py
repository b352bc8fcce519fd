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
