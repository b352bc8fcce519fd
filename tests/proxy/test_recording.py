"""Share and block recording under hostile input and outages (issue 15), against the real
embedded PostgreSQL: each test here failed on the code before the journal and the wire-text rule.

The long ones — a 60 s PostgreSQL outage and a SIGKILL of the proxy mid-batch — are in
test_recording_outages.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import string
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mining import stratum
from proxy.app import Proxy
from proxy.config import LimitsConfig
from qscrypt.db.embedded import EmbeddedPostgres, free_port
from qscrypt.db.migrate import migrate
from qscrypt.devnet.litecoind import RegtestPair
from tests.proxy.conftest import pool_upstream, proxy_config, wait_for
from tests.services.postgres import scratch_dir
from tests.solo.miner import SoloMiner
from tests.solo.support import daemon_config, mine_block, running_proxy
from tests.stratum_peers import PoolServer, ScriptedMiner

# Incompressible: a 10,000-character name of one repeated letter fits a btree index after TOAST
# compression, random letters do not ("index row requires 10024 bytes", SQLSTATE 54000).
LONG_NAME = "".join(random.Random(15).choices(string.ascii_letters + string.digits, k=10_000))


async def query(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def eventually_rows(dsn: str, sql: str, expected: Any, *args: Any, timeout: float = 15.0) -> None:
    """Poll until the first value of the first row of `sql` equals `expected`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rows = await query(dsn, sql, *args)
        value = rows[0][0] if rows else None
        if value == expected:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{sql} gave {value!r}, expected {expected!r}")
        await asyncio.sleep(0.1)


async def stored_names(dsn: str) -> set[str]:
    rows = await query(dsn, "SELECT worker AS name FROM shares UNION SELECT name FROM workers")
    return {r["name"] for r in rows}


@pytest.fixture
async def proxy_with_db(pool: PoolServer, pg_dsn: str, tmp_path: Path) -> AsyncIterator[Proxy]:
    """A proxy on the pool and the module's database; closed by the test itself where the close is
    what it checks (closing twice is harmless)."""
    await query(pg_dsn, "TRUNCATE shares, workers, blocks")
    proxy = Proxy(proxy_config([pool_upstream(pool, "p1")], tmp_path / "spill", share_flush_s=0.2), pg_dsn)
    await proxy.start()
    try:
        await wait_for(lambda: proxy.router.active is not None, "an upstream to become active")
        yield proxy
    finally:
        await proxy.close()


async def honest_shares(proxy: Proxy, miners: Any, name: str, count: int, tag: int) -> ScriptedMiner:
    miner = await miners(proxy.ports["tcp"])
    await miner.subscribe()
    assert (await miner.authorize(name, "x,d=0.001")).result is True
    for i in range(count):
        reply = await miner.mine_one(name, extranonce2=bytes([tag, i]))
        assert reply.result is True, reply
    return miner


def hashers_closed(proxy: Proxy) -> bool:
    return all(h.gone.done() for h in proxy.hashers._hashers)


# -- issue 15, defect 1: one lone surrogate stopped share recording for good ----------------------


async def test_a_lone_surrogate_from_a_stranger_does_not_stop_share_recording(
        proxy_with_db: Proxy, miners: Any, pg_dsn: str) -> None:
    proxy = proxy_with_db
    stranger = await miners(proxy.ports["tcp"])  # never subscribes
    for params in (["\ud800", "1", "00", "00000000", "00000000"],
                   ["w", "\udfff\ud800", "00", "00000000", "00000000"]):
        reply = await stranger.call("mining.submit", params)
        assert reply.error is not None and reply.result is None
    await honest_shares(proxy, miners, "honest", 3, tag=1)
    await eventually_rows(pg_dsn, "SELECT count(*) FROM shares WHERE worker = 'honest'"
                          " AND result = 'accepted'", 3)
    assert await stored_names(pg_dsn) == {"honest"}
    await proxy.close()  # raised the writer's UnicodeEncodeError before, and left the hashers running
    assert hashers_closed(proxy)
    assert proxy.writer is not None and proxy.writer.restarts == 0 and proxy.writer.failures == 0


# -- defect 2: a long name jammed the queue -------------------------------------------------------


async def test_a_ten_thousand_character_name_neither_jams_the_writer_nor_is_stored(
        proxy_with_db: Proxy, miners: Any, pg_dsn: str) -> None:
    proxy = proxy_with_db
    pest = await miners(proxy.ports["tcp"])
    await pest.subscribe()
    refused = await pest.authorize(LONG_NAME)
    assert refused.result is not True
    submitted = await pest.call("mining.submit", [LONG_NAME, "1", "0000", "00000000", "00000000"])
    assert submitted.error is not None
    await honest_shares(proxy, miners, "steady", 2, tag=2)
    await eventually_rows(pg_dsn, "SELECT count(*) FROM shares WHERE worker = 'steady'"
                          " AND result = 'accepted'", 2)
    assert await stored_names(pg_dsn) == {"steady"}
    assert proxy.writer is not None and proxy.writer.failures == 0


# -- defect 3: names never authorized reached shares and workers; made-up job ids never banned --


async def test_names_nobody_authorized_never_become_rows_and_are_counted_in_metrics(
        proxy_with_db: Proxy, miners: Any, pg_dsn: str) -> None:
    proxy = proxy_with_db
    port = proxy.ports["tcp"]
    unsubscribed = await miners(port)
    reply = await unsubscribed.call("mining.submit", ["stranger", "1", "0000", "00000000", "00000000"])
    assert reply.error is not None and reply.error[0] in (stratum.UNAUTHORIZED, stratum.NOT_SUBSCRIBED)
    intruder = await miners(port)
    await intruder.subscribe()
    reply = await intruder.call("mining.submit", ["intruder", "1", "0000", "00000000", "00000000"])
    assert reply.error is not None and reply.error[0] == stratum.UNAUTHORIZED
    await honest_shares(proxy, miners, "member", 1, tag=3)
    # Rows are written in the order they came: once the member's is in, the refusals before it
    # would be too.
    await eventually_rows(pg_dsn, "SELECT count(*) FROM shares WHERE worker = 'member'", 1)
    assert await stored_names(pg_dsn) == {"member"}
    assert set(proxy.accounting.workers) == {"member"}  # not in the top workers either
    refused = proxy.metrics.registry.get_sample_value(
        "qscrypt_shares_total", {"result": "rejected", "reason": "unauthorized"})
    assert refused is not None and refused >= 2


async def test_made_up_job_ids_count_toward_the_ban_and_stale_shares_do_not(
        pool: PoolServer, make_proxy: Any, miners: Any) -> None:
    limits = LimitsConfig(ban_min_shares=10, ban_invalid_ratio=0.5, ban_seconds=60.0)
    proxy = await make_proxy([pool_upstream(pool, "p1")], limits=limits)
    port = proxy.ports["tcp"]

    late = await miners(port)  # genuinely stale shares: a job the miner was given, since replaced
    await late.subscribe()
    await late.authorize("late", "x,d=0.001")
    old = await late.wait_job()
    pool.new_job(clean=True)
    await wait_for(lambda: late.jobs and late.jobs[-1].job.job_id != old.job.job_id, "a new job")
    for nonce in range(30):
        reply = await late.submit("late", old, bytes(late.extranonce2_size), nonce)
        assert reply.error is not None and reply.error[0] == stratum.JOB_NOT_FOUND
    assert not late.closed.is_set(), "stale shares must not ban a miner"

    forger = await miners(port)  # job ids never sent to it
    await forger.subscribe()
    await forger.authorize("forger", "x,d=0.001")
    mjob = await forger.wait_job()
    for n in range(30):
        if forger.closed.is_set():
            break
        try:
            made_up = await forger.submit("forger", mjob, bytes(forger.extranonce2_size), n,
                                          job_id=f"f{n:x}00")
        except ConnectionError:
            break  # banned while this one was on its way
        assert made_up.error is not None and made_up.error[0] == stratum.JOB_NOT_FOUND
    await asyncio.wait_for(forger.closed.wait(), 5)
    shown = [n.params[0] for n in forger.notifications if n.method == "client.show_message"]
    assert any("banned" in text for text in shown), shown
    assert proxy.metrics.registry.get_sample_value(
        "qscrypt_shares_total", {"result": "rejected", "reason": "unknown-job"}) >= 10


# -- defect 5: blocks found during a database outage went missing from `blocks` -------------------


async def test_blocks_found_while_postgres_is_down_reach_the_blocks_table(
        litecoin_pair: RegtestPair, tmp_path: Path) -> None:
    pair = litecoin_pair
    root = scratch_dir("blocks-outage")
    server = EmbeddedPostgres(root / "pg")  # durable: this test stops it while rows are in flight
    dsn = await asyncio.to_thread(server.start)
    try:
        await migrate(dsn)
        address = pair.wallet.call("getnewaddress", "", "bech32")
        async with running_proxy(daemon_config(pair, address), dsn, tmp_path / "spill") as proxy:
            miner = await SoloMiner("127.0.0.1", proxy.ports["tcp"], worker="outage.rig").join()
            try:
                await miner.wait_job()
                await asyncio.to_thread(server.stop)
                found = [(await mine_block(miner, pair, "test_recording")).block_hash for _ in range(3)]
                # Longer than the ~6 s of retries after which the old code gave a block up.
                await asyncio.sleep(8)
                await asyncio.to_thread(server.start)
                await eventually_rows(dsn, "SELECT count(*) FROM blocks WHERE hash = ANY($1::text[])"
                                      " AND status = 'accepted'", 3, found, timeout=30)
                assert proxy.blocks is not None
                journal = proxy.blocks.directory
                await wait_for(lambda: not list(journal.glob("*.json")), "the journal to be emptied",
                               timeout=10)
            finally:
                await miner.close()
        rows = await query(dsn, "SELECT worker, reward FROM blocks WHERE hash = ANY($1::text[])", found)
        assert {r["worker"] for r in rows} == {"outage.rig"} and all(r["reward"] > 0 for r in rows)
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)


# -- the writer itself: classification, bisection, quarantine, supervisor, shutdown ---------------


async def test_the_writer_quarantines_exactly_the_rows_postgres_refuses_and_writes_the_rest(
        proxy_with_db: Proxy, pg_dsn: str) -> None:
    """Rows the codec would never let through, put straight into accounting (a Kafka worker's name,
    a hand-edited segment): the writer must survive them all the same."""
    proxy = proxy_with_db
    accounting = proxy.accounting
    bad = {"\ud800surrogate": "UnicodeEncodeError", "nul\x00name": "22021", LONG_NAME: "54000"}
    for i in range(40):
        accounting.accepted(f"good{i % 4}", "p1", "1", 0.001, 0.002)
        if i % 10 == 5:
            accounting.rejected(list(bad)[i // 10 % 3], "p1", "1", 0.001, "low-difficulty", stale=False)
    accounting.rejected("negative", "p1", "1", -1.0, "low-difficulty", stale=False)  # 23514
    await eventually_rows(pg_dsn, "SELECT count(*) FROM shares", 40)
    assert proxy.writer is not None
    await wait_for(lambda: accounting.rows_waiting == 0, "the rows to be written or quarantined")
    assert await stored_names(pg_dsn) == {f"good{i}" for i in range(4)}
    workers = await query(pg_dsn, "SELECT name, accepted FROM workers ORDER BY name")
    assert [(r["name"], r["accepted"]) for r in workers] == [(f"good{i}", 10) for i in range(4)]
    entries = [json.loads(line) for line in proxy.writer.quarantine_file.read_text().splitlines()]
    quarantined = {e["row"][1]: e for e in entries}
    assert set(quarantined) == {*bad, "negative"} and len(entries) == 5  # the surrogate came twice
    for name, cause in bad.items():
        assert cause in quarantined[name]["error"] or quarantined[name].get("sqlstate") == cause
    assert quarantined["negative"]["sqlstate"] == "23514"
    assert proxy.writer.quarantined == 5 and proxy.writer.failures == 0
    assert proxy.metrics.registry.get_sample_value("qscrypt_shares_quarantined_total") == 5


async def test_the_supervisor_restarts_a_writer_that_ended(proxy_with_db: Proxy, miners: Any,
                                                           pg_dsn: str) -> None:
    proxy = proxy_with_db
    writer = proxy.writer
    assert writer is not None
    await wait_for(lambda: writer.running, "the writer to run")
    assert writer._task is not None
    writer._task.cancel()  # what any bug that ends the task amounts to
    await wait_for(lambda: writer.restarts == 1 and writer.running, "the supervisor to restart it")
    assert proxy.metrics.registry.get_sample_value("qscrypt_share_writer_restarts_total") == 1
    await honest_shares(proxy, miners, "after-restart", 2, tag=4)
    await eventually_rows(pg_dsn, "SELECT count(*) FROM shares WHERE worker = 'after-restart'", 2)
    ready, details = proxy.readiness()
    assert ready and details["restarts"] == 1 and details["database"] == "up"


async def test_shutdown_with_postgres_away_keeps_every_row_for_the_next_start(
        pool: PoolServer, miners: Any, tmp_path: Path) -> None:
    root = scratch_dir("shutdown")
    server = EmbeddedPostgres(root / "pg")
    dsn = await asyncio.to_thread(server.start)
    spill = tmp_path / "spill"
    try:
        await migrate(dsn)
        proxy = Proxy(proxy_config([pool_upstream(pool, "p1")], spill, share_flush_s=0.2), dsn)
        await proxy.start()
        try:
            await wait_for(lambda: proxy.router.active is not None, "an upstream")
            await asyncio.to_thread(server.stop)
            await honest_shares(proxy, miners, "patient", 4, tag=5)
            await asyncio.sleep(0.5)  # a few writer passes against the stopped server
        finally:
            await proxy.close()
        assert hashers_closed(proxy)
        assert sum(len(p.read_text().splitlines()) for p in spill.rglob("*.jsonl")) == 4

        await asyncio.to_thread(server.start)
        again = Proxy(proxy_config([pool_upstream(pool, "p1")], spill, share_flush_s=0.2), dsn)
        await again.start()
        try:
            await eventually_rows(dsn, "SELECT count(*) FROM shares WHERE worker = 'patient'", 4)
            await wait_for(lambda: again.accounting.rows_waiting == 0, "the journal to drain")
        finally:
            await again.close()
        assert not list((spill / "proxy" / "shares").glob("*.jsonl"))
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)


async def test_readyz_says_the_database_is_away_while_the_journal_keeps_the_shares(
        pool: PoolServer, miners: Any, tmp_path: Path) -> None:
    root = scratch_dir("readyz")
    server = EmbeddedPostgres(root / "pg", durable=False)
    dsn = await asyncio.to_thread(server.start)
    port = free_port()
    try:
        await migrate(dsn)
        proxy = Proxy(proxy_config([pool_upstream(pool, "p1")], tmp_path / "spill", share_flush_s=0.2,
                                   metrics_port=port), dsn)
        await proxy.start()
        try:
            await wait_for(lambda: proxy.router.active is not None, "an upstream")
            await asyncio.to_thread(server.stop)
            await honest_shares(proxy, miners, "waiting", 2, tag=6)
            await wait_for(lambda: proxy.writer is not None and proxy.writer.database_up is False,
                           "the writer to notice")
            status, body = await http_get(port, "/readyz")
            details = json.loads(body)
            # Shares are safe in the journal: still ready, and it says why the rows wait.
            assert status == 200 and details["ready"] is True and details["database"] == "down"
            assert details["rows_waiting"] == 2 and details["share_writer"] == "running"
            assert proxy.metrics.registry.get_sample_value("qscrypt_share_writer_up") == 0
            await asyncio.to_thread(server.start)
            await eventually_rows(dsn, "SELECT count(*) FROM shares WHERE worker = 'waiting'", 2)
            await wait_for(lambda: proxy.writer is not None and proxy.writer.database_up is True,
                           "the writer to recover")
            status, body = await http_get(port, "/readyz")
            assert status == 200 and json.loads(body)["database"] == "up"
            assert proxy.metrics.registry.get_sample_value("qscrypt_share_writer_up") == 1
        finally:
            await proxy.close()
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()
