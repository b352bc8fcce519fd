"""Never paid twice: a real `qscrypt payouts run` process killed (SIGKILL) after `sendmany`
answered and before it recorded the txid; the next run finds the transaction in the wallet by its
comment, records it, and sends nothing new. The receiving wallet sees exactly one payment."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from payouts import db
from payouts.accounts import POOL_ACCOUNT
from payouts.run import PAUSE_ENV, RESEND_AFTER_S, run_payouts
from qscrypt.devnet.litecoind import RegtestPair
from qscrypt.jsonrpc import JsonRpcClient, RpcTransportError
from tests.payouts.support import coin_config, received, receiver, toml

ROOT = Path(__file__).resolve().parents[2]


def _payouts(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "-c", str(config), "payouts", "run", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _wait_for_line(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return line
    process.kill()
    raise AssertionError(f"no {marker!r} from the payout run; it wrote:\n{''.join(seen)}")


async def test_a_run_killed_between_sendmany_and_the_txid_pays_once(
    pg_dsn: str, payouts_pair: RegtestPair, tmp_path: Path
) -> None:
    pair = payouts_pair
    wallet = receiver(pair)
    address = wallet.call("getnewaddress")
    conn = await asyncpg.connect(pg_dsn)
    try:
        await db.post(
            conn,
            [
                ("LTC", "t:crash", address, "balance", 12_345_678),
                ("LTC", "t:crash", POOL_ACCOUNT, "income", -12_345_678),
            ],
        )
    finally:
        await conn.close()
    config = tmp_path / "payouts.toml"
    config.write_text(toml(pair, pg_dsn))

    first = _payouts(config, env={PAUSE_ENV: "120"})
    line = await asyncio.to_thread(_wait_for_line, first, "payouts.sent_unrecorded", 120)
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(30) == -signal.SIGKILL
    txid = line.split("txid=")[1].split()[0]

    conn = await asyncpg.connect(pg_dsn)
    try:
        batch = await conn.fetchrow("SELECT status, txid FROM payout_batches")
        assert (batch["status"], batch["txid"]) == ("sending", None)  # the kill came before the record
    finally:
        await conn.close()

    second = _payouts(config)
    out, err = await asyncio.to_thread(second.communicate, timeout=120)
    assert second.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["recovered"] == [txid] and summary["sent"] == [], summary

    third = _payouts(config)
    out, err = await asyncio.to_thread(third.communicate, timeout=120)
    assert third.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["sent"] == []

    await asyncio.to_thread(pair.sync_mempools, [txid])
    payments = received(wallet, address)
    assert [(tx["txid"], Decimal(str(tx["amount"]))) for tx in payments] == [(txid, Decimal("0.12345678"))]
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT p.status, b.txid FROM payouts p JOIN payout_batches b ON b.id = p.batch_id"
        )
        assert [(r["status"], r["txid"]) for r in rows] == [("sent", txid)]
    finally:
        await conn.close()


class _LostSend:
    """The wallet, except that sendmany never reaches it: the connection fails first."""

    def __init__(self, wallet: JsonRpcClient) -> None:
        self.wallet = wallet

    async def acall(self, method: str, *params: object, timeout_s: float | None = None) -> object:
        if method == "sendmany":
            raise RpcTransportError("sendmany: connection reset")
        return await self.wallet.acall(method, *params, timeout_s=timeout_s)


async def test_a_batch_the_wallet_never_got_is_sent_again_once_and_only_after_a_grace(
    pg_dsn: str, payouts_pair: RegtestPair
) -> None:
    pair = payouts_pair
    wallet = receiver(pair)
    address = wallet.call("getnewaddress")
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    config = coin_config(pair)
    rpc = pair.wallet
    try:
        async with pool.acquire() as conn:
            await db.post(conn, [("LTC", "t:lost", address, "balance", 2_000_000),
                                 ("LTC", "t:lost", POOL_ACCOUNT, "income", -2_000_000)])  # fmt: skip
        now = datetime.now(UTC)
        with pytest.raises(RpcTransportError):
            await run_payouts(pool, "LTC", config, _LostSend(rpc), now)
        # Soon after: not in the wallet, but a send may still be on its way: wait.
        soon = await run_payouts(pool, "LTC", config, rpc, now + timedelta(seconds=5))
        assert not soon.sent and soon.waiting and "sent again after" in soon.waiting[0]
        later = await run_payouts(pool, "LTC", config, rpc, now + timedelta(seconds=RESEND_AFTER_S + 1))
        assert len(later.sent) == 1
        again = await run_payouts(pool, "LTC", config, rpc, now + timedelta(seconds=RESEND_AFTER_S + 2))
        assert not again.sent and not again.waiting
    finally:
        await rpc.close()
        await pool.close()
    await asyncio.to_thread(pair.sync_mempools, later.sent)
    assert [(t["txid"], Decimal(str(t["amount"]))) for t in received(wallet, address)] == [
        (later.sent[0], Decimal("0.02"))
    ]


async def test_on_a_schedule_the_run_repeats_until_told_to_stop(
    pg_dsn: str, payouts_pair: RegtestPair, tmp_path: Path
) -> None:
    config = tmp_path / "payouts.toml"
    config.write_text(toml(payouts_pair, pg_dsn))
    scheduled = _payouts(config, "--every", "0.5")
    assert scheduled.stdout is not None

    def summaries(count: int) -> list[dict[str, object]]:
        assert scheduled.stdout is not None
        return [json.loads(scheduled.stdout.readline()) for _ in range(count)]

    runs = await asyncio.to_thread(summaries, 3)
    assert [r["coin"] for r in runs] == ["LTC"] * 3
    scheduled.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(scheduled.wait, 30) == 0
