"""A payout run for one coin: settle what was earned, then pay every account whose balance reached
its minimum with `sendmany` through the coin daemon's wallet.

Never twice. A payout reserves its amount in the ledger (balance → paid) in the transaction that
creates it. Before the wallet is asked to send, the batch is written and committed with a comment
that names it ("qscrypt payout batch N"), and the wallet stores that comment with the transaction.
A run that dies between `sendmany` and recording the txid leaves the batch "sending"; the next run
looks for the comment among the wallet's transactions first and records what it finds, and only
sends a batch again when the wallet has no transaction for it. Daemon refusals (insufficient funds,
bad address) fail the batch and give the amounts back to the balances, by counter-entries.
"""

import asyncio
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import structlog

from mining.coins import coin as coin_by_symbol
from payouts import db, ledger
from payouts.accounts import POOL_ACCOUNT, address_problem
from payouts.config import UNITS_PER_COIN, CoinPayouts
from payouts.db import Entry
from payouts.ledger import Rpc, SettleReport
from qscrypt.jsonrpc import RpcCallError

PAUSE_ENV = "QSCRYPT_PAYOUTS_PAUSE_AFTER_SEND"
"""Seconds to sleep between `sendmany` answering and the txid being recorded, after printing
`payouts.sent_unrecorded` to stderr: the crash test kills the run there."""
_LIST_PAGE = 1000
RESEND_AFTER_S = 300.0
"""A batch left "sending" that the wallet has no transaction for is sent again only this long after
it was written: a sendmany the dead run had on the wire may still be reaching the daemon."""
log = structlog.get_logger("payouts")


@dataclass
class RunReport:
    coin: str
    settled: SettleReport = field(default_factory=SettleReport)
    created: int = 0
    awaiting_approval: int = 0
    recovered: list[str] = field(default_factory=list)
    """Batches found in the wallet by their comment (a run died before recording them)."""
    sent: list[str] = field(default_factory=list)
    confirmed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Accounts due that cannot be paid (no payout address for the coin), with why."""
    waiting: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "coin": self.coin,
            "blocks_found": len(self.settled.found),
            "blocks_matured": len(self.settled.matured),
            "blocks_orphaned": len(self.settled.orphaned),
            "blocks_returned": len(self.settled.returned),
            "pps_periods": self.settled.pps_periods,
            "pool_payments": self.settled.pool_payments,
            "waiting": self.settled.waiting + self.waiting,
            "payouts_created": self.created,
            "awaiting_approval": self.awaiting_approval,
            "recovered": self.recovered,
            "sent": self.sent,
            "confirmed": self.confirmed,
            "failed": self.failed,
            "skipped": self.skipped,
        }


COMMENT_PREFIX = "qscrypt payout batch "
"""The wallet comment of batch N is this and N: how a later run finds what an earlier one sent."""


def _amount(units: int) -> Decimal:
    return Decimal(units) / UNITS_PER_COIN


async def run_payouts(
    pool: asyncpg.Pool, symbol: str, config: CoinPayouts, wallet: Rpc, now: datetime, *, send: bool = True
) -> RunReport:
    """One run for `symbol`: reconcile, confirm, settle earnings, create payouts, send them."""
    report = RunReport(symbol)
    async with pool.acquire() as conn:
        # One run per coin at a time, across processes: the lock is the connection's.
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext('qscrypt_payouts:' || $1))", symbol):
            raise RuntimeError(f"another payout run for {symbol} is in progress")
        try:
            await _reconcile(conn, symbol, wallet, report)
            await _confirm(conn, symbol, config, wallet, report)
            if config.mode == "solo":
                await ledger.settle_blocks(conn, symbol, config, wallet, report.settled)
            else:
                await ledger.settle_pool_payments(conn, symbol, config, report.settled)
            await ledger.credit_pps(conn, symbol, config, now, report.settled)
            await _create(conn, symbol, config, report)
            if send:
                await _send(conn, symbol, config, wallet, report, now)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext('qscrypt_payouts:' || $1))", symbol)
    return report


async def _wallet_sends(wallet: Rpc, comments: set[str], since: datetime) -> dict[str, str]:
    """comment -> txid of the wallet's sends carrying one of `comments`, looking back (newest
    first) until transactions older than `since` (less an hour of clock skew)."""
    found: dict[str, str] = {}
    horizon = since.timestamp() - 3600
    skip = 0
    while comments - found.keys():
        page = await wallet.acall("listtransactions", "*", _LIST_PAGE, skip, True)
        for tx in page:
            if tx.get("category") == "send" and tx.get("comment") in comments:
                found[tx["comment"]] = tx["txid"]
        if len(page) < _LIST_PAGE or min(int(tx.get("time", 0)) for tx in page) < horizon:
            break
        skip += _LIST_PAGE
    return found


async def _reconcile(conn: asyncpg.Connection, symbol: str, wallet: Rpc, report: RunReport) -> None:
    """Batches left "sending" by a run that died: recorded from the wallet when it has them."""
    sending = await db.batches(conn, symbol, "sending")
    if not sending:
        return
    found = await _wallet_sends(
        wallet, {b["comment"] for b in sending}, min(b["created_at"] for b in sending)
    )
    for batch in sending:
        txid = found.get(batch["comment"])
        if txid is not None:
            fee = await _tx_fee(wallet, txid)
            async with conn.transaction():
                await db.batch_sent(conn, batch["id"], txid, fee)
            report.recovered.append(txid)
            log.warning("payouts.recovered", coin=symbol, batch=batch["id"], txid=txid)
    # Batches the wallet has no transaction for are sent again by _send, under the same comment.


async def _tx_fee(wallet: Rpc, txid: str) -> int | None:
    tx = await wallet.acall("gettransaction", txid)
    fee = tx.get("fee")
    return None if fee is None else -int(Decimal(str(fee)) * UNITS_PER_COIN)


async def _confirm(
    conn: asyncpg.Connection, symbol: str, config: CoinPayouts, wallet: Rpc, report: RunReport
) -> None:
    for batch in await db.batches(conn, symbol, "sent"):
        tx = await wallet.acall("gettransaction", batch["txid"])
        if int(tx.get("confirmations", 0)) >= config.confirmations:
            async with conn.transaction():
                await db.batch_confirmed(conn, batch["id"])
            report.confirmed += 1


async def _create(conn: asyncpg.Connection, symbol: str, config: CoinPayouts, report: RunReport) -> None:
    """A payout for every account due, its amount moved from balance to paid in the same
    transaction; above the approval threshold it waits for an admin."""
    chain = coin_by_symbol(symbol, config.network)
    async with conn.transaction():
        due = [
            (a, units) for a, units in await db.due(conn, symbol, config.minimum_units) if a != POOL_ACCOUNT
        ]
        if not due:
            return
        busy = await db.open_payouts(conn, symbol, [a for a, _ in due])
        registered = await db.payout_addresses(conn, symbol, [a for a, _ in due])
        rows: list[tuple[str, str, int, str]] = []
        for account, units in due:
            if account in busy:
                continue
            address = registered.get(account, account)
            problem = address_problem(address, chain)
            if problem is not None:
                report.skipped.append(f"{account}: no {symbol} payout address ({problem})")
                continue
            waits = config.approval_units > 0 and units > config.approval_units
            rows.append((account, address, units, "awaiting_approval" if waits else "pending"))
            report.awaiting_approval += waits
        created = await db.insert_payouts(conn, symbol, rows)
        entries: list[Entry] = []
        for payout_id, account, units in created:
            txn = f"payout:{payout_id}"
            entries += [(symbol, txn, account, "balance", -units), (symbol, txn, account, "paid", units)]
        await db.post(conn, entries)
        report.created += len(created)


async def _send(
    conn: asyncpg.Connection, symbol: str, config: CoinPayouts, wallet: Rpc, report: RunReport, now: datetime
) -> None:
    # Batches a dead run wrote but the wallet never got go first, as they were, once they are old
    # enough that a sendmany still in flight when that run died has surely reached the wallet.
    for batch in await db.batches(conn, symbol, "sending"):
        age = (now - batch["created_at"]).total_seconds()
        if age < RESEND_AFTER_S:
            report.waiting.append(
                f"batch {batch['id']} is not in the wallet; sent again after {RESEND_AFTER_S:.0f} s"
            )
            continue
        await _send_batch(conn, symbol, config, wallet, batch["id"], batch["comment"], report)
    while True:
        async with conn.transaction():
            payouts = await db.sendable(conn, symbol, config.max_outputs)
            if not payouts:
                return
            batch_id, comment = await db.new_batch(conn, symbol, [p["id"] for p in payouts], COMMENT_PREFIX)
        # Committed: from here on a crash leaves a batch the next run reconciles.
        await _send_batch(conn, symbol, config, wallet, batch_id, comment, report)


async def _send_batch(
    conn: asyncpg.Connection,
    symbol: str,
    config: CoinPayouts,
    wallet: Rpc,
    batch_id: int,
    comment: str,
    report: RunReport,
) -> None:
    outputs: dict[str, int] = {}
    for payout in await db.batch_outputs(conn, batch_id):
        outputs[payout["address"]] = outputs.get(payout["address"], 0) + payout["amount"]
    # As strings: the daemon reads an amount from a string exactly (AmountFromValue), where a float
    # of 16 significant digits would be rounded by JSON on the way.
    amounts = {address: format(_amount(units), "f") for address, units in outputs.items()}
    subtract = sorted(outputs) if config.tx_fee == "miners" else []
    try:
        txid = await wallet.acall("sendmany", "", amounts, 1, comment, subtract, timeout_s=120.0)
    except RpcCallError as exc:
        # The daemon refused: nothing was sent. The amounts go back to the balances.
        async with conn.transaction():
            failed = await db.batch_failed(conn, batch_id, str(exc))
            entries: list[Entry] = []
            for payout in failed:
                txn = f"payout:{payout['id']}:failed"
                entries += [
                    (symbol, txn, payout["account"], "paid", -payout["amount"]),
                    (symbol, txn, payout["account"], "balance", payout["amount"]),
                ]
            await db.post(conn, entries)
        report.failed.append(f"batch {batch_id}: {exc}")
        log.error("payouts.send_failed", coin=symbol, batch=batch_id, error=str(exc))
        return
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        print(f"payouts.sent_unrecorded batch={batch_id} txid={txid}", file=sys.stderr, flush=True)
        await asyncio.sleep(float(pause))
    fee = await _tx_fee(wallet, txid)
    async with conn.transaction():
        await db.batch_sent(conn, batch_id, txid, fee)
    report.sent.append(txid)
    log.info("payouts.sent", coin=symbol, batch=batch_id, txid=txid, outputs=len(outputs))
