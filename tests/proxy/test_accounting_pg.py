"""Share accounting into the real PostgreSQL, including an outage: no accepted share is lost."""

import asyncio
import shutil

import asyncpg

from qscrypt.db.embedded import EmbeddedPostgres
from qscrypt.db.migrate import migrate
from tests.proxy.conftest import pool_upstream, wait_for
from tests.services.postgres import scratch_dir
from tests.stratum_peers import PoolServer


async def _count(dsn: str, result: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM shares WHERE result = $1", result)
    finally:
        await conn.close()


async def test_shares_and_workers_are_written_in_batches(pool: PoolServer, make_proxy, miners,
                                                         pg_dsn: str) -> None:
    proxy = await make_proxy([pool_upstream(pool, "p1")], dsn=pg_dsn, share_flush_s=0.2)
    miner = await miners(proxy.ports["tcp"])
    await miner.subscribe()
    await miner.authorize("writer", "d=0.001")
    for i in range(3):
        assert (await miner.mine_one("writer", extranonce2=bytes([0, i]))).result is True
    mjob = await miner.wait_job()
    await miner.submit("writer", mjob, b"\x00\x00\x00", 1)  # wrong extranonce2 size: rejected
    await wait_for(lambda: proxy.writer.written >= 4, "the batch to be written")
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT result, reason, difficulty FROM shares WHERE worker = 'writer' "
                                "ORDER BY ts")
        worker = await conn.fetchrow("SELECT accepted, rejected, stale FROM workers WHERE name = 'writer'")
    finally:
        await conn.close()
    assert [r["result"] for r in rows].count("accepted") == 3
    assert any(r["reason"] == "bad-extranonce2" for r in rows)
    assert all(r["difficulty"] == 0.001 for r in rows if r["result"] == "accepted")
    assert (worker["accepted"], worker["rejected"], worker["stale"]) == (3, 1, 0)


async def test_postgres_outage_loses_no_accepted_share(pool: PoolServer, make_proxy, miners) -> None:
    root = scratch_dir("outage")
    server = EmbeddedPostgres(root / "pg", durable=False)
    dsn = await asyncio.to_thread(server.start)
    try:
        await migrate(dsn)
        # A tiny buffer forces the spill-to-disk path during the outage.
        proxy = await make_proxy([pool_upstream(pool, "p1")], dsn=dsn, share_flush_s=0.2,
                                 share_buffer_max=2)
        miner = await miners(proxy.ports["tcp"])
        await miner.subscribe()
        await miner.authorize("survivor", "d=0.001")
        for i in range(2):
            assert (await miner.mine_one("survivor", extranonce2=bytes([1, i]))).result is True
        await wait_for(lambda: proxy.writer.written >= 2, "the first shares in PostgreSQL")

        await asyncio.to_thread(server.stop)
        for i in range(6):  # accepted while the database is down
            assert (await miner.mine_one("survivor", extranonce2=bytes([2, i]))).result is True
        # Both, in either order: the buffer spills by itself, the writer's next flush then fails.
        await wait_for(lambda: proxy.accounting.log.rows_on_disk_only > 0 and proxy.writer.failures > 0,
                       "rows spilled to disk and a failed write")

        await asyncio.to_thread(server.start)
        await wait_for(lambda: proxy.writer.written >= 8 and proxy.accounting.rows_waiting == 0,
                       "the backlog to be written", timeout=20)
        assert not list(proxy.accounting.log.directory.iterdir()), "every segment file is deleted"
        assert await _count(dsn, "accepted") == 8
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)


async def test_time_and_expected_earnings_per_worker_and_coin(pool: PoolServer, make_proxy, miners,
                                                              pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "INSERT INTO coins (symbol, algorithm, name, price_usd, difficulty, block_reward)"
            " VALUES ('LTC', 'scrypt', 'Litecoin', 80, 20000000, 6.25)"
            " ON CONFLICT (symbol, algorithm) DO UPDATE SET price_usd = 80, difficulty = 20000000,"
            " block_reward = 6.25, stale = false")
    finally:
        await conn.close()
    proxy = await make_proxy([pool_upstream(pool, "ltc-pool")], dsn=pg_dsn, share_flush_s=0.2)
    miner = await miners(proxy.ports["tcp"])
    await miner.subscribe()
    await miner.authorize("earner", "d=0.001")
    for i in range(3):
        assert (await miner.mine_one("earner", extranonce2=bytes([3, i]))).result is True
    proxy._count_time_on_coins(10.0)  # what the 10 s report loop does
    await wait_for(lambda: not proxy.accounting.coins and proxy.writer.written >= 3, "the coin tally")
    await asyncio.sleep(0.3)
    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM worker_coin_daily WHERE worker = 'earner'")
    finally:
        await conn.close()
    assert row["coin"] == "LTC" and row["seconds"] == 10.0
    assert abs(row["accepted_difficulty"] - 0.003) < 1e-12
    # 0.003 share difficulty = 0.003·2^16 hashes; one block takes 2e7·2^32, pays 6.25 LTC at $80:
    # 0.003 · 65536 · 6.25 / (2e7 · 4294967296) = 1228.8 / 8.589934592e16 = 1.4305e-14 LTC,
    # × $80 = 1.1444e-12 USD
    assert abs(row["expected_coins"] - 1.430511474609375e-14) < 1e-24
    assert abs(row["expected_usd"] - 1.1444091796875e-12) < 1e-22
    assert row["unpriced_difficulty"] == 0.0
