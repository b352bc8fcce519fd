"""Solo payouts against a real Litecoin Core regtest pair and PostgreSQL: blocks credited immature,
matured after 100 confirmations, reversed when they leave the main chain; the payout run sends one
real transaction that the receiving wallet sees, and confirms it; approval; failure gives back."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from payouts import db
from payouts.accounts import POOL_ACCOUNT
from payouts.config import to_units
from payouts.run import run_payouts
from qscrypt.db.migrate import migrate
from qscrypt.devnet.litecoind import RegtestPair
from tests.payouts.support import balance, coin_config, received, receiver, record_block


@pytest.fixture
async def pool(pg_dsn: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=3)
    yield pool
    await pool.close()


async def _run(pool: asyncpg.Pool, pair: RegtestPair, **overrides: object):  # type: ignore[no-untyped-def]
    config = coin_config(pair, **overrides)
    wallet = pair.wallet
    try:
        return await run_payouts(pool, "LTC", config, wallet, datetime.now(UTC))
    finally:
        await wallet.close()


async def test_a_block_is_immature_then_paid_to_its_finder_and_the_wallet_sees_it(
    pool: asyncpg.Pool, payouts_pair: RegtestPair
) -> None:
    pair = payouts_pair
    wallet = receiver(pair)
    alice = wallet.call("getnewaddress")  # mines as ADDRESS.RIG
    bob = wallet.call("getnewaddress")  # registered: mines as bob.rig
    async with pool.acquire() as conn:
        await db.register(conn, "bob", None, "0" * 64, {"LTC": bob})
        (h1, h2) = await asyncio.to_thread(pair.generate, 2)
        r1 = await record_block(conn, pair, h1, f"{alice}.rig1")
        r2 = await record_block(conn, pair, h2, "bob.rig7+night")

    report = await _run(pool, pair)
    assert sorted(report.settled.found) == sorted([h1, h2]) and not report.settled.matured
    assert report.created == 0 and not report.sent
    async with pool.acquire() as conn:
        # 1 % fee: the finder gets 99 % of the coinbase, immature until 100 confirmations.
        fee1, fee2 = to_units(r1) // 100, to_units(r2) // 100
        assert await balance(conn, alice, "immature") == to_units(r1) - fee1
        assert await balance(conn, "bob", "immature") == to_units(r2) - fee2
        assert await balance(conn, POOL_ACCOUNT, "fee") == fee1 + fee2
        assert await balance(conn, alice, "balance") == 0

    # Running again changes nothing.
    async with pool.acquire() as conn:
        entries = await conn.fetchval("SELECT count(*) FROM ledger_entries")
    again = await _run(pool, pair)
    assert not again.settled.found and not again.sent
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == entries

    await asyncio.to_thread(pair.generate, 100)
    report = await _run(pool, pair)
    assert sorted(report.settled.matured) == sorted([h1, h2])
    assert report.created == 2 and len(report.sent) == 1  # one sendmany for both
    txid = report.sent[0]
    await asyncio.to_thread(pair.sync_mempools, [txid])
    got = {
        tx["address"]: Decimal(str(tx["amount"]))
        for tx in wallet.call("listtransactions", "*", 100, 0, True)
        if tx["txid"] == txid
    }
    assert got == {alice: Decimal(to_units(r1) - fee1) / 10**8, bob: Decimal(to_units(r2) - fee2) / 10**8}
    async with pool.acquire() as conn:
        assert await balance(conn, alice, "immature") == 0
        assert await balance(conn, alice, "balance") == 0
        assert await balance(conn, alice, "paid") == to_units(r1) - fee1
        rows = await db.payouts_page(conn, "bob", None, None, 10)
        assert [(r["status"], r["txid"]) for r in rows] == [("sent", txid)]
        (bob_balance,) = await db.balances(conn, "bob")
        assert (bob_balance["immature"], bob_balance["pending"], bob_balance["paid"]) == (
            0,
            0,
            to_units(r2) - fee2,
        )

    await asyncio.to_thread(pair.generate, 1)
    report = await _run(pool, pair)
    assert report.confirmed == 1 and not report.sent
    async with pool.acquire() as conn:
        rows = await db.payouts_page(conn, None, "confirmed", None, 10)
        assert {r["account"] for r in rows} == {alice, "bob"}
    assert len(received(wallet, alice)) == 1 and len(received(wallet, bob)) == 1


async def test_a_block_that_leaves_the_main_chain_is_reversed(
    pool: asyncpg.Pool, payouts_pair: RegtestPair
) -> None:
    pair = payouts_pair
    address = receiver(pair).call("getnewaddress")
    (stale,) = await asyncio.to_thread(pair.generate, 1)
    async with pool.acquire() as conn:
        reward = await record_block(conn, pair, stale, address)
    report = await _run(pool, pair)
    assert report.settled.found == [stale]
    async with pool.acquire() as conn:
        assert await balance(conn, address, "immature") == to_units(reward) - to_units(reward) // 100
    # Node 0 forgets the block and both nodes move to a longer chain without it.
    pair.rpc(0, "invalidateblock", stale)
    # To another address: the same template again would make the very block just invalidated.
    pair.rpc(0, "generatetoaddress", 2, receiver(pair).call("getnewaddress"))
    await asyncio.to_thread(pair.sync_blocks)
    pair.rpc(0, "reconsiderblock", stale)
    assert pair.rpc(0, "getblock", stale)["confirmations"] == -1
    report = await _run(pool, pair)
    assert report.settled.orphaned == [stale]
    async with pool.acquire() as conn:
        for bucket in ("immature", "balance", "paid"):
            assert await balance(conn, address, bucket) == 0
        assert await conn.fetchval("SELECT status FROM blocks WHERE hash = $1", stale) == "orphaned"
        # Counter-entries, not edits: the credit is still there, and its reversal beside it.
        txns = await conn.fetch(
            "SELECT txn, amount FROM ledger_entries WHERE account = $1 ORDER BY id", address
        )
        assert [(t["txn"].rsplit(":", 1)[1], t["amount"]) for t in txns] == [
            ("found", to_units(reward) - to_units(reward) // 100),
            ("orphan", -(to_units(reward) - to_units(reward) // 100)),
        ]


async def test_a_reversed_block_back_on_the_main_chain_is_credited_again_and_matures(
    pool: asyncpg.Pool, payouts_pair: RegtestPair
) -> None:
    """A reorg undone: the block leaves the main chain (reversed), then its chain outgrows the one
    that replaced it. Its finder is credited again, by counter-entries, and paid at maturity; the
    same twice over (the txns are numbered)."""
    pair = payouts_pair
    address = receiver(pair).call("getnewaddress")
    elsewhere = receiver(pair).call("getnewaddress")
    (ours,) = await asyncio.to_thread(pair.generate, 1)
    async with pool.acquire() as conn:
        reward = await record_block(conn, pair, ours, address)
    credit = to_units(reward) - to_units(reward) // 100
    assert (await _run(pool, pair)).settled.found == [ours]

    height = pair.rpc(0, "getblock", ours)["height"]

    async def outgrow(invalid: str) -> None:
        """Node 0 forgets `invalid` and mines past node 1's chain without it; both follow; then
        node 0 takes `invalid` back as a known side-chain block."""
        pair.rpc(0, "invalidateblock", invalid)
        ahead = pair.rpc(1, "getblockcount") - pair.rpc(0, "getblockcount") + 1
        pair.rpc(0, "generatetoaddress", ahead, elsewhere)
        await asyncio.to_thread(pair.sync_blocks)
        pair.rpc(0, "reconsiderblock", invalid)

    async def out_then_back() -> None:
        await outgrow(ours)
        assert pair.rpc(0, "getblock", ours)["confirmations"] == -1
        report = await _run(pool, pair)
        assert report.settled.orphaned == [ours] and report.settled.returned == []
        async with pool.acquire() as conn:
            assert await balance(conn, address, "immature") == 0
        await outgrow(pair.rpc(0, "getblockhash", height))  # the rival at our block's height
        assert pair.rpc(1, "getblock", ours)["confirmations"] >= 1
        report = await _run(pool, pair)
        assert report.settled.returned == [ours] and report.settled.orphaned == [], report.summary()
        async with pool.acquire() as conn:
            assert await balance(conn, address, "immature") == credit
            assert await conn.fetchval("SELECT status FROM blocks WHERE hash = $1", ours) == "accepted"

    await out_then_back()
    await out_then_back()
    async with pool.acquire() as conn:
        txns = await conn.fetch("SELECT txn, amount FROM ledger_entries WHERE account = $1 ORDER BY id",
                                address)
    assert [(t["txn"].split(":", 2)[2], t["amount"]) for t in txns] == [
        ("found", credit), ("orphan", -credit), ("return", credit), ("orphan:2", -credit),
        ("return:2", credit),
    ]
    await asyncio.to_thread(pair.generate, 100)
    report = await _run(pool, pair)
    assert report.settled.matured == [ours] and report.created == 1, report.summary()
    async with pool.acquire() as conn:
        assert await balance(conn, address, "immature") == 0
        assert await balance(conn, address, "balance") == 0
        assert await balance(conn, address, "paid") == credit  # once, not once per return
    (txid,) = report.sent
    await asyncio.to_thread(pair.sync_mempools, [txid])
    got = [Decimal(str(tx["amount"])) for tx in receiver(pair).call("listtransactions", "*", 100, 0, True)
           if tx["txid"] == txid and tx["address"] == address]
    assert got == [Decimal(credit) / 10**8]


async def test_the_ledger_refuses_edits_and_unbalanced_txns(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError, match="does not balance"):
            async with conn.transaction():
                await db.post(conn, [("LTC", "t:unbalanced", "alice", "balance", 5)])
        await db.post(
            conn, [("LTC", "t:ok", "alice", "balance", 5), ("LTC", "t:ok", POOL_ACCOUNT, "income", -5)]
        )
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute(
                "UPDATE ledger_entries SET amount = 6 WHERE txn = 't:ok' AND account = 'alice'"
            )
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM ledger_entries WHERE txn = 't:ok'")
        # Posting the same txn again inserts nothing.
        assert (
            await db.post(
                conn, [("LTC", "t:ok", "alice", "balance", 5), ("LTC", "t:ok", POOL_ACCOUNT, "income", -5)]
            )
            == 0
        )
        assert await balance(conn, "alice", "balance") == 5


async def test_big_payouts_wait_for_approval_and_refused_sends_give_the_balance_back(
    pool: asyncpg.Pool, payouts_pair: RegtestPair
) -> None:
    pair = payouts_pair
    wallet = receiver(pair)
    small, big = wallet.call("getnewaddress"), wallet.call("getnewaddress")
    async with pool.acquire() as conn:
        await db.post(
            conn,
            [
                ("LTC", "t:grant", small, "balance", 500_000),
                ("LTC", "t:grant", big, "balance", 5 * 10**8),
                ("LTC", "t:grant", POOL_ACCOUNT, "income", -(500_000 + 5 * 10**8)),
            ],
        )
    report = await _run(pool, pair, approval_threshold=1.0)
    assert report.created == 2 and report.awaiting_approval == 1 and len(report.sent) == 1
    async with pool.acquire() as conn:
        (waiting,) = await db.payouts_page(conn, big, None, None, 10)
        assert waiting["status"] == "awaiting_approval" and waiting["txid"] is None
        (row,) = await db.balances(conn, big)
        assert (row["pending"], row["paid"]) == (5 * 10**8, 0)  # reserved, not yet paid
    # Not approved: the next run leaves it alone.
    report = await _run(pool, pair, approval_threshold=1.0)
    assert report.created == 0 and not report.sent
    async with pool.acquire() as conn:
        approved = await db.approve(conn, waiting["id"])
        assert approved is not None and approved["status"] == "pending"
    report = await _run(pool, pair, approval_threshold=1.0)
    assert len(report.sent) == 1
    await asyncio.to_thread(pair.sync_mempools, report.sent)
    assert [Decimal(str(tx["amount"])) for tx in received(wallet, big)] == [Decimal(5)]

    # A payout the wallet cannot fund is refused by the daemon: failed, and owed again.
    poor = wallet.call("getnewaddress")
    huge = 10**8 * 10**7  # ten million LTC
    async with pool.acquire() as conn:
        await db.post(
            conn, [("LTC", "t:huge", poor, "balance", huge), ("LTC", "t:huge", POOL_ACCOUNT, "income", -huge)]
        )
    report = await _run(pool, pair)
    assert report.failed and not report.sent
    async with pool.acquire() as conn:
        (row,) = await db.payouts_page(conn, poor, None, None, 10)
        assert row["status"] == "failed"
        assert await balance(conn, poor, "balance") == huge and await balance(conn, poor, "paid") == 0


async def test_with_tx_fee_miners_the_fee_comes_out_of_the_outputs(
    pg_empty_dsn: str, payouts_pair: RegtestPair
) -> None:
    await migrate(pg_empty_dsn)  # a database of its own: this module's owes more than the wallet has
    pool = await asyncpg.create_pool(pg_empty_dsn, min_size=1, max_size=2)
    try:
        await _pays_the_fee_from_the_outputs(pool, payouts_pair)
    finally:
        await pool.close()


async def _pays_the_fee_from_the_outputs(pool: asyncpg.Pool, pair: RegtestPair) -> None:
    wallet = receiver(pair)
    address = wallet.call("getnewaddress")
    async with pool.acquire() as conn:
        await db.post(conn, [("LTC", "t:fee", address, "balance", 1_000_000),
                             ("LTC", "t:fee", POOL_ACCOUNT, "income", -1_000_000)])  # fmt: skip
    report = await _run(pool, pair, tx_fee="miners")
    (txid,) = report.sent
    async with pool.acquire() as conn:
        tx_fee = await conn.fetchval("SELECT tx_fee FROM payout_batches WHERE txid = $1", txid)
    assert tx_fee > 0
    await asyncio.to_thread(pair.sync_mempools, [txid])
    (got,) = received(wallet, address)
    assert Decimal(str(got["amount"])) == Decimal(1_000_000 - tx_fee) / 10**8
