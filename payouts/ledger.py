"""What miners earned, into the ledger: solo blocks (credited immature when found, paid when mature,
reversed when they leave the main chain, credited again if they come back to it), PPS/FPPS periods
of shares at their expected value, and pool payments split by PPLNS. Every posting is one named
ledger txn in one database transaction: running any of these again posts nothing new."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

import asyncpg

from payouts import db, schemes
from payouts.accounts import POOL_ACCOUNT, account_of
from payouts.config import CoinPayouts, to_units
from payouts.db import Entry
from payouts.schemes import Share, Split
from qscrypt.jsonrpc import RpcCallError

NOT_IN_MAIN_CHAIN = -1
"""`getblock`'s confirmations for a block the node knows but is not on its best chain."""
BLOCK_NOT_FOUND = -5
"""The daemons' RPC error code for a block they do not know (RPC_INVALID_ADDRESS_OR_KEY)."""
LEFT_THE_MAIN_CHAIN = "left the main chain"
"""The reason `settle_blocks` writes on a block it reversed."""
_SHARES_PAGE = 10_000


class Rpc(Protocol):
    async def acall(self, method: str, *params: Any, timeout_s: float | None = None) -> Any: ...


@dataclass
class SettleReport:
    found: list[str] = field(default_factory=list)
    matured: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)
    """Blocks reversed earlier that are back on the main chain (a reorg undone), credited again."""
    pps_periods: int = 0
    pool_payments: int = 0
    waiting: list[str] = field(default_factory=list)
    """Why something could not be credited yet (no network data for a period, ...)."""


def split_entries(coin: str, txn: str, split: Split, bucket: str) -> list[Entry]:
    """A split as one balanced txn: the pool's income gives `split.total`, the miners get their
    credits in `bucket`, the operator the fee, and the pool keeps the remainder."""
    entries: list[Entry] = [(coin, txn, POOL_ACCOUNT, "income", -split.total)]
    entries += [(coin, txn, account, bucket, units) for account, units in sorted(split.credits.items())]
    entries += [
        (coin, txn, POOL_ACCOUNT, "fee", split.fee),
        (coin, txn, POOL_ACCOUNT, "remainder", split.remainder),
    ]
    return entries


async def fee_of(conn: asyncpg.Connection, coin: str, config: CoinPayouts) -> Fraction:
    """The operator's fee for `coin`: as set through the API, else as configured."""
    stored = await db.fee_percent(conn, coin)
    return schemes.fee_fraction(stored if stored is not None else Decimal(str(config.fee_percent)))


async def pplns_window(
    conn: asyncpg.Connection,
    config: CoinPayouts,
    upstreams: Sequence[str],
    until: datetime,
    network_difficulty: float,
) -> list[Share]:
    """The shares (oldest first) of the PPLNS window that ends at `until`."""
    wanted = config.pplns_factor * network_difficulty * schemes.SHARE_DIFF1_HASHES
    newest_first: list[Share] = []
    counted = 0.0
    before: datetime | None = None
    while counted < wanted:
        page = await db.shares_before(conn, upstreams, until, before, _SHARES_PAGE)
        for _ts, worker, difficulty in page:
            newest_first.append(Share(account_of(worker), difficulty))
            counted += difficulty
            if counted >= wanted:
                break
        if len(page) < _SHARES_PAGE:
            break
        before = page[-1][0]
    return newest_first[::-1]


async def settle_blocks(
    conn: asyncpg.Connection, coin: str, config: CoinPayouts, rpc: Rpc, report: SettleReport | None = None
) -> SettleReport:
    """Solo mode: credit each accepted block's reward by the coin's scheme (immature), make it
    payable once it has the coin's maturity in confirmations, and reverse it if the daemon says it
    left the main chain; an orphaned block the daemon finds on the main chain again (a reorg undone:
    a race at the tip can flip a block out and back within minutes; or one that lost the race at
    submission and won it later) is credited again, as long as it is within the coin's maturity of
    the tip. `rpc` is `coin`'s own daemon (a
    merge-mined DOGE block is asked of dogecoind), so every coin's blocks settle on their own chain.
    PPS/FPPS pay shares instead (`credit_pps`): there a block is the pool's income.

    A block's txns: `found`, then, while it flips, `orphan`/`return`, `orphan:2`/`return:2`, … (each
    orphan brings the block's net to zero, each return posts `found`'s entries again), and `mature`
    once it has its confirmations, after which it is never looked at again."""
    report = report or SettleReport()
    maturity = config.maturity_of(coin)
    for block in await db.unsettled_blocks(conn, coin):
        block_hash = block["hash"]
        info = await rpc.acall("getblock", block_hash, 1)
        confirmations = int(info["confirmations"])
        found, mature = f"block:{block_hash}:found", f"block:{block_hash}:mature"
        async with conn.transaction():
            if confirmations == NOT_IN_MAIN_CHAIN:
                posted = await db.posted(conn, coin, _block_txns(block_hash))
                orphan = _next_flip(block_hash, "orphan", posted)
                if orphan is None:
                    report.waiting.append(f"block {block_hash} left the main chain {_MAX_FLIPS} times: "
                                          "left as it is, for the operator to look at")
                    continue
                reversal = [(coin, orphan, account, bucket, -amount)
                            for account, bucket, amount in await db.txn_sums(conn, coin, sorted(posted))]
                await _post_marker(conn, coin, orphan, reversal)
                await db.mark_orphaned(conn, block_hash, LEFT_THE_MAIN_CHAIN)
                report.orphaned.append(block_hash)
                continue
            if not await db.posted(conn, coin, [found]):
                split = await _block_split(conn, coin, config, block, float(info["difficulty"]))
                await db.post(conn, split_entries(coin, found, split, "immature"))
                report.found.append(block_hash)
            if confirmations >= maturity:
                immature = await db.account_bucket_sums(conn, coin, found, "immature")
                entries: list[Entry] = []
                for account, units in sorted(immature.items()):
                    entries += [
                        (coin, mature, account, "immature", -units),
                        (coin, mature, account, "balance", units),
                    ]
                await _post_marker(conn, coin, mature, entries)
                report.matured.append(block_hash)
    tip = int(await rpc.acall("getblockcount"))
    for block in await db.orphaned_blocks(conn, coin, tip - maturity):
        block_hash = block["hash"]
        try:
            info = await rpc.acall("getblock", block_hash, 1)
        except RpcCallError as exc:
            if exc.code == BLOCK_NOT_FOUND:  # a node that never had it (or a fresh one): not back
                continue
            raise
        if int(info["confirmations"]) == NOT_IN_MAIN_CHAIN:
            continue
        async with conn.transaction():
            posted = await db.posted(conn, coin, _block_txns(block_hash))
            found = f"block:{block_hash}:found"
            if found in posted:  # else it left before it was ever credited: the next run credits it
                back = _next_flip(block_hash, "return", posted)
                assert back is not None  # one return per orphan, and the orphans are bounded
                again = [(coin, back, account, bucket, amount)
                         for account, bucket, amount in await db.txn_sums(conn, coin, [found])]
                await _post_marker(conn, coin, back, again)
            await db.mark_returned(conn, block_hash)
            report.returned.append(block_hash)
    return report


_MAX_FLIPS = 32
"""Times a block may leave the main chain and come back before settling it is left to the operator."""


def _flip_txn(block_hash: str, step: str, n: int) -> str:
    # The first of each keeps the plain name the ledger has always used.
    return f"block:{block_hash}:{step}" if n == 1 else f"block:{block_hash}:{step}:{n}"


def _block_txns(block_hash: str) -> list[str]:
    """Every txn a block can have (asked by name: the ledger's index finds them, a pattern would not)."""
    flips = [_flip_txn(block_hash, step, n)
             for n in range(1, _MAX_FLIPS + 1) for step in ("orphan", "return")]
    return [f"block:{block_hash}:found", *flips]


def _next_flip(block_hash: str, step: str, posted: set[str]) -> str | None:
    """The name of the block's next `step` txn; None past _MAX_FLIPS."""
    for n in range(1, _MAX_FLIPS + 1):
        if _flip_txn(block_hash, step, n) not in posted:
            return _flip_txn(block_hash, step, n)
    return None


async def _post_marker(conn: asyncpg.Connection, coin: str, txn: str, entries: list[Entry]) -> None:
    """Post `entries`; a txn with no movement still gets a row pair that nets to zero, so that it
    is recorded as done (amounts are never 0 in the ledger)."""
    moving = [e for e in entries if e[4] != 0]
    if not moving:
        moving = [(coin, txn, POOL_ACCOUNT, "income", 1), (coin, txn, POOL_ACCOUNT, "remainder", -1)]
    await db.post(conn, moving)


async def _block_split(
    conn: asyncpg.Connection, coin: str, config: CoinPayouts, block: asyncpg.Record, network_difficulty: float
) -> Split:
    reward = to_units(block["reward"]) if block["reward"] is not None else 0
    fee = await fee_of(conn, coin, config)
    if config.scheme == "solo":
        return schemes.solo(account_of(block["worker"] or POOL_ACCOUNT), reward, fee)
    if config.scheme == "pplns":
        window = await pplns_window(conn, config, config.upstreams, block["found_at"], network_difficulty)
        return schemes.pplns(window, reward, network_difficulty, fee, config.pplns_factor)
    return Split(reward, {}, 0, reward)  # PPS/FPPS: the shares were paid; the block is the pool's


async def record_pool_payment(
    conn: asyncpg.Connection,
    coin: str,
    config: CoinPayouts,
    pool: str,
    amount: int,
    earned_at: datetime,
    reference: str,
) -> tuple[int, Split | None]:
    """Pool mode: record what upstream `pool` paid and split it (`split_pool_payment`), in one
    transaction. Idempotent on `reference`: answers the payment's id and the split, None when it
    was recorded before."""
    if amount <= 0:
        raise ValueError("amount must be positive")
    async with conn.transaction():
        payment_id = await db.add_pool_payment(conn, coin, pool, amount, earned_at, reference)
        if payment_id is None:
            existing = await db.pool_payment_by_reference(conn, coin, reference)
            assert existing is not None
            return int(existing["id"]), None
        split = await split_pool_payment(conn, coin, config, payment_id, pool, amount, earned_at)
    return payment_id, split


async def split_pool_payment(
    conn: asyncpg.Connection,
    coin: str,
    config: CoinPayouts,
    payment_id: int,
    pool: str,
    amount: int,
    earned_at: datetime,
) -> Split:
    """A recorded pool payment into the ledger: under PPLNS split over the window of `pool`'s
    shares (or `upstreams`') that ends at `earned_at`; under PPS/FPPS the shares were paid already,
    so the payment is the pool's. LookupError when PPLNS has no network difficulty for then."""
    if config.scheme == "pplns":
        network = await db.network_at(conn, coin, earned_at)
        if network is None:
            raise LookupError(
                f"no network difficulty for {coin} at {earned_at.isoformat()}: run the aggregator first"
            )
        upstreams = config.upstreams or [pool]
        window = await pplns_window(conn, config, upstreams, earned_at, network[0])
        fee = await fee_of(conn, coin, config)
        split = schemes.pplns(window, amount, network[0], fee, config.pplns_factor)
    else:
        split = Split(amount, {}, 0, amount)
    await db.post(conn, split_entries(coin, f"poolpay:{payment_id}", split, "balance"))
    return split


async def settle_pool_payments(
    conn: asyncpg.Connection, coin: str, config: CoinPayouts, report: SettleReport | None = None
) -> SettleReport:
    """Split the pool payments recorded without being split (through the API)."""
    report = report or SettleReport()
    for row in await db.unsplit_pool_payments(conn, coin):
        try:
            async with conn.transaction():
                await split_pool_payment(
                    conn, coin, config, row["id"], row["pool"], row["amount"], row["earned_at"]
                )
        except LookupError as exc:
            report.waiting.append(f"pool payment {row['id']}: {exc}")
            continue
        report.pool_payments += 1
    return report


async def fpps_tx_fees(conn: asyncpg.Connection, coin: str, config: CoinPayouts) -> int:
    """The recent average of coinbase value − subsidy over the coin's latest blocks."""
    recent = await db.recent_coinbase_values(conn, coin, config.fpps_blocks)
    return schemes.average_tx_fees([to_units(r) for _h, r in recent], [config.subsidy(h) for h, _r in recent])


async def credit_pps(
    conn: asyncpg.Connection,
    coin: str,
    config: CoinPayouts,
    now: datetime,
    report: SettleReport | None = None,
) -> SettleReport:
    """PPS/FPPS: credit every ended period (`pps_period_s`, aligned to the epoch; `pps_settle_s`
    after its end) not yet credited, each share at its expected value from the aggregator's
    network difficulty and reward when it was found. A period with shares that have no network
    data yet waits."""
    report = report or SettleReport()
    if config.scheme not in ("pps", "fpps"):
        return report
    period = timedelta(seconds=config.pps_period_s)
    start = await db.last_pps_period_end(conn, coin)
    if start is None:
        first = await db.first_share_at(conn, config.upstreams)
        if first is None:
            return report
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        start = epoch + ((first - epoch) // period) * period
    tx_fees = await fpps_tx_fees(conn, coin, config) if config.scheme == "fpps" else 0
    while start + period + timedelta(seconds=config.pps_settle_s) <= now:
        end = start + period
        async with conn.transaction():
            work = await db.period_work(conn, coin, config.upstreams, start, end)
            if any(network is None for _w, _d, network, _r in work):
                report.waiting.append(
                    f"{coin} shares of {start.isoformat()}..{end.isoformat()} have no network "
                    "difficulty from the aggregator yet"
                )
                break
            shares = [
                Share(account_of(worker), difficulty, float(network or 0), to_units(reward or 0))
                for worker, difficulty, network, reward in work
            ]
            fee = await fee_of(conn, coin, config)
            split = (
                schemes.fpps(shares, tx_fees, fee) if config.scheme == "fpps" else schemes.pps(shares, fee)
            )
            if await db.add_pps_period(conn, coin, start, end):
                await db.post(conn, split_entries(coin, f"pps:{coin}:{start.isoformat()}", split, "balance"))
                report.pps_periods += 1
        start = end
    return report
