"""Pool mode against PostgreSQL and a real regtest wallet: a pool payment recorded with
`qscrypt payouts import-pool-payment` is split by PPLNS over the window of shares that ends when it
was earned, once however often it is imported; PPS credits each ended period's shares at their
expected value from the aggregator's network difficulty and reward; the payout run pays both."""

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import asyncpg

from payouts import db, ledger, schemes
from payouts.accounts import POOL_ACCOUNT
from payouts.config import CoinPayouts
from payouts.run import run_payouts
from qscrypt.devnet.litecoind import RegtestPair
from tests.payouts.support import balance, coin_config, received, receiver, toml

ROOT = Path(__file__).resolve().parents[2]
D = 0.001  # the aggregator's network difficulty: a block is D x 2^32 hashes
REWARD = Decimal("12.5")


async def _market_and_shares(
    conn: asyncpg.Connection, at: datetime, shares: list[tuple[float, str, float]]
) -> None:
    """The aggregator's LTC row and history as of `at`, and accepted shares (seconds after `at`,
    worker, difficulty) of upstream pool-a."""
    coin_id = await conn.fetchval(
        "INSERT INTO coins (symbol, algorithm, name, difficulty, block_reward) "
        "VALUES ('LTC', 'scrypt', 'Litecoin', $1, $2) "
        "ON CONFLICT (symbol, algorithm) DO UPDATE SET difficulty = excluded.difficulty RETURNING id",
        D,
        REWARD,
    )
    await conn.execute(
        "INSERT INTO coin_history (coin_id, ts, source, difficulty, block_reward) "
        "VALUES ($1, $2, 'litecoind', $3, $4) ON CONFLICT DO NOTHING",
        coin_id,
        at - timedelta(hours=1),
        D,
        REWARD,
    )
    await conn.executemany(
        "INSERT INTO shares (ts, worker, upstream, job_id, difficulty, result) "
        "VALUES ($1, $2, 'pool-a', 'j', $3, 'accepted')",
        [(at + timedelta(seconds=s), worker, d) for s, worker, d in shares],
    )


def _cli(config: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "-c", str(config), "payouts", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


async def test_a_pool_payment_is_split_by_pplns_once_and_paid(
    pg_dsn: str, payouts_pair: RegtestPair, tmp_path: Path
) -> None:
    pair = payouts_pair
    wallet = receiver(pair)
    earned_at = datetime(2026, 11, 1, 12, tzinfo=UTC)
    conn = await asyncpg.connect(pg_dsn)
    try:
        addresses = {}
        for name in ("alice", "bob", "carol"):
            addresses[name] = wallet.call("getnewaddress")
            await db.register(conn, name, None, "0" * 64, {"LTC": addresses[name]})
        # The window is 2 x D x 65536 = 131.072 of share difficulty, newest first: alice 40, bob 50,
        # then 41.072 of alice's 100; carol's share is older than the window. One share after the
        # payment was earned does not count either.
        await _market_and_shares(conn, earned_at - timedelta(minutes=10), [
            (0, "carol.r1", 30.0), (60, "alice.r1+night", 100.0), (120, "bob.r9", 50.0),
            (180, "alice.r2", 40.0), (900, "carol.r1", 500.0),
        ])  # fmt: skip
    finally:
        await conn.close()
    config = tmp_path / "payouts.toml"
    config.write_text(toml(pair, pg_dsn, mode='"pool"', scheme='"pplns"'))
    args = ["import-pool-payment", "--coin", "LTC", "--pool", "pool-a", "--amount", "0.5", "--reference",
            "pool-tx-1", "--earned-at", earned_at.isoformat()]  # fmt: skip
    first = await asyncio.to_thread(_cli, config, *args)
    assert first["recorded"] is True
    # By hand: 49,500,000 after the 1 % fee, alice 81.072 / 131.072 of it, bob 50 / 131.072.
    # 49,500,000 x 81.072 / 131.072 = 30,617,248.9 and x 50 / 131.072 = 18,882,751.5, rounded down.
    assert first["credits"] == {"alice": 30_617_248, "bob": 18_882_751} and first["fee"] == 500_000
    assert first["remainder"] == 1
    assert first["credits"] == dict(
        schemes.pplns(
            [schemes.Share("alice", 100.0), schemes.Share("bob", 50.0), schemes.Share("alice", 40.0)],
            50_000_000,
            D,
            Fraction(1, 100),
        ).credits
    )
    again = await asyncio.to_thread(_cli, config, *args)
    assert again == {"id": first["id"], "recorded": False, "credits": None, "fee": None, "remainder": None}

    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            assert await balance(conn, "alice", "balance") == 30_617_248
            assert await balance(conn, "carol", "balance") == 0
            assert await balance(conn, POOL_ACCOUNT, "income") == -50_000_000
        cfg = coin_config(pair, mode="pool", scheme="pplns")
        rpc = pair.wallet
        try:
            report = await run_payouts(pool, "LTC", cfg, rpc, datetime.now(UTC))
        finally:
            await rpc.close()
        assert report.created == 2 and len(report.sent) == 1
        await asyncio.to_thread(pair.sync_mempools, report.sent)
        assert [Decimal(str(t["amount"])) for t in received(wallet, addresses["alice"])] == [
            Decimal("0.30617248")
        ]
        assert [Decimal(str(t["amount"])) for t in received(wallet, addresses["bob"])] == [
            Decimal("0.18882751")
        ]
    finally:
        await pool.close()


async def test_pps_credits_each_ended_period_once_at_expected_value(pg_empty_dsn: str) -> None:
    from qscrypt.db.migrate import migrate

    await migrate(pg_empty_dsn)
    hour = datetime(2026, 11, 2, 8, tzinfo=UTC)
    conn = await asyncpg.connect(pg_empty_dsn)
    try:
        await _market_and_shares(conn, hour, [(10, "dave.r1", 1.0), (20, "dave.r2", 2.0), (3000, "erin", 0.5),
                                              (3700, "erin", 4.0)])  # fmt: skip
        config = CoinPayouts(mode="pool", scheme="pps", network="regtest", fee_percent=2.0)
        # The first hour has ended (and settled) two hours later; the second has not.
        report = await ledger.credit_pps(conn, "LTC", config, hour + timedelta(hours=1, minutes=5))
        assert report.pps_periods == 1
        # 12.5 LTC x d / (0.001 x 65536) x 0.98, per account: dave d = 3, erin d = 0.5.
        per_unit = Fraction(1_250_000_000) / (Fraction(D) * 65536)
        assert await balance(conn, "dave", "balance") == int(per_unit * 3 * Fraction(98, 100))
        assert await balance(conn, "erin", "balance") == int(per_unit * Fraction(1, 2) * Fraction(98, 100))
        again = await ledger.credit_pps(conn, "LTC", config, hour + timedelta(hours=1, minutes=5))
        assert again.pps_periods == 0
        later = await ledger.credit_pps(conn, "LTC", config, hour + timedelta(hours=3))
        assert later.pps_periods == 1  # the second hour (erin's 4.0); the third has not settled yet
        assert await balance(conn, "erin", "balance") == int(
            per_unit * Fraction(1, 2) * Fraction(98, 100)
        ) + int(per_unit * 4 * Fraction(98, 100))
    finally:
        await conn.close()


async def test_a_pool_payment_recorded_through_the_api_is_split_by_the_next_run(pg_empty_dsn: str) -> None:
    from qscrypt.db.migrate import migrate

    await migrate(pg_empty_dsn)
    at = datetime(2026, 11, 3, 8, tzinfo=UTC)
    conn = await asyncpg.connect(pg_empty_dsn)
    try:
        await _market_and_shares(conn, at, [(10, "dave.r1", 100.0), (20, "erin.r1", 31.072)])
        config = CoinPayouts(mode="pool", scheme="pplns", network="regtest", fee_percent=0.0)
        # Recorded as POST /v1/pool-payments records it: the row only.
        await db.add_pool_payment(conn, "LTC", "pool-a", 1_000_000, at + timedelta(minutes=1), "api-1")
        await db.add_pool_payment(conn, "LTC", "pool-a", 5_000, at - timedelta(days=30), "too-early")
        report = await ledger.settle_pool_payments(conn, "LTC", config)
        expected = schemes.pplns(
            [schemes.Share("dave", 100.0), schemes.Share("erin", 31.072)], 1_000_000, D, Fraction(0)
        )
        assert report.pool_payments == 2 and not report.waiting
        # No shares before the early one: its window is empty and the pool keeps it.
        assert await balance(conn, POOL_ACCOUNT, "remainder") == 5_000 + expected.remainder
        assert await balance(conn, "dave", "balance") == expected.credits["dave"]
        assert await balance(conn, "erin", "balance") == expected.credits["erin"]
        again = await ledger.settle_pool_payments(conn, "LTC", config)
        assert again.pool_payments == 0 and await balance(conn, "dave", "balance") == expected.credits["dave"]
    finally:
        await conn.close()


async def test_fpps_adds_the_recent_average_of_transaction_fees(pg_empty_dsn: str) -> None:
    from qscrypt.db.migrate import migrate

    await migrate(pg_empty_dsn)
    hour = datetime(2026, 11, 4, 8, tzinfo=UTC)
    conn = await asyncpg.connect(pg_empty_dsn)
    try:
        await _market_and_shares(conn, hour, [(10, "dave.r1", 1.0)])
        # Regtest halves every 150 blocks: 25 LTC at 160, 12.5 at 310. Coinbase values carry fees.
        await conn.executemany(
            "INSERT INTO blocks (coin, height, hash, reward, status, found_at) "
            "VALUES ('LTC', $1, $2, $3, 'accepted', $4)",
            [(160, "aa" * 32, Decimal("25.0003"), hour), (310, "bb" * 32, Decimal("12.5001"), hour)],
        )
        config = CoinPayouts(mode="pool", scheme="fpps", network="regtest", fee_percent=0.0)
        assert await ledger.fpps_tx_fees(conn, "LTC", config) == 20_000  # (30,000 + 10,000) / 2
        report = await ledger.credit_pps(conn, "LTC", config, hour + timedelta(hours=2))
        assert report.pps_periods == 1
        # (12.5 LTC + 20,000 litoshis) x 1 / (0.001 x 65536)
        expected = Fraction(1_250_000_000 + 20_000) / (Fraction(D) * 65536)
        assert await balance(conn, "dave", "balance") == int(expected)
    finally:
        await conn.close()
