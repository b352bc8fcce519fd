"""All of the payouts package's SQL (tables of migrations/0008_payouts.sql, and the proxy's
`shares`/`blocks` and the aggregator's `coins`/`coin_history` it reads). Parameterised only."""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

Entry = tuple[str, str, str, str, int]
"""One ledger row: (coin, txn, account, bucket, amount in smallest units)."""
OPEN_STATUSES = ("awaiting_approval", "pending")


# --- ledger --------------------------------------------------------------------------------------


async def post(conn: asyncpg.Connection, entries: Sequence[Entry]) -> int:
    """Append `entries` (whole txns; zero amounts left out); rows of a txn already posted are kept
    as they were. Answers how many rows went in. The database refuses a txn that does not balance."""
    rows = [e for e in entries if e[4] != 0]
    if not rows:
        return 0
    coins, txns, accounts, buckets, amounts = (list(column) for column in zip(*rows, strict=True))
    status: str = await conn.execute(
        """
        INSERT INTO ledger_entries (coin, txn, account, bucket, amount)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
        ON CONFLICT (coin, txn, account, bucket) DO NOTHING
        """,
        coins,
        txns,
        accounts,
        buckets,
        amounts,
    )
    return int(status.split()[-1])


async def posted(conn: asyncpg.Connection, coin: str, txns: Sequence[str]) -> set[str]:
    """Which of `txns` have been posted."""
    rows = await conn.fetch(
        "SELECT DISTINCT txn FROM ledger_entries WHERE coin = $1 AND txn = ANY($2::text[])", coin, list(txns)
    )
    return {r["txn"] for r in rows}


async def txn_sums(conn: asyncpg.Connection, coin: str, txns: Sequence[str]) -> list[tuple[str, str, int]]:
    """(account, bucket, sum) over `txns`: what a counter-entry must reverse."""
    rows = await conn.fetch(
        """
        SELECT account, bucket, sum(amount)::bigint AS amount FROM ledger_entries
        WHERE coin = $1 AND txn = ANY($2::text[]) GROUP BY account, bucket HAVING sum(amount) <> 0
        ORDER BY account, bucket
        """,
        coin,
        list(txns),
    )
    return [(r["account"], r["bucket"], r["amount"]) for r in rows]


async def account_bucket_sums(conn: asyncpg.Connection, coin: str, txn: str, bucket: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT account, amount FROM ledger_entries WHERE coin = $1 AND txn = $2 AND bucket = $3",
        coin,
        txn,
        bucket,
    )
    return {r["account"]: r["amount"] for r in rows}


async def due(conn: asyncpg.Connection, coin: str, minimum: int) -> list[tuple[str, int]]:
    """Accounts whose balance of `coin` is at least `minimum`, with it, by name."""
    rows = await conn.fetch(
        """
        SELECT account, sum(amount)::bigint AS balance FROM ledger_entries
        WHERE coin = $1 AND bucket = 'balance' GROUP BY account HAVING sum(amount) >= $2 ORDER BY account
        """,
        coin,
        minimum,
    )
    return [(r["account"], r["balance"]) for r in rows]


async def balances(conn: asyncpg.Connection, account: str) -> list[asyncpg.Record]:
    """Per coin: immature, pending (owed, including payouts not yet handed to the wallet) and paid."""
    return list(
        await conn.fetch(
            """
        WITH sums AS (
            SELECT coin,
                   coalesce(sum(amount) FILTER (WHERE bucket = 'immature'), 0)::bigint AS immature,
                   coalesce(sum(amount) FILTER (WHERE bucket = 'balance'), 0)::bigint AS balance,
                   coalesce(sum(amount) FILTER (WHERE bucket = 'paid'), 0)::bigint AS paid
            FROM ledger_entries WHERE account = $1 GROUP BY coin
        ), open AS (
            SELECT coin, sum(amount)::bigint AS amount FROM payouts
            WHERE account = $1 AND status IN ('awaiting_approval', 'pending') GROUP BY coin
        )
        SELECT s.coin, s.immature, s.balance + coalesce(o.amount, 0) AS pending,
               s.paid - coalesce(o.amount, 0) AS paid
        FROM sums s LEFT JOIN open o USING (coin) ORDER BY s.coin
        """,
            account,
        )
    )


# --- what was earned: blocks, shares, network data -----------------------------------------------


async def unsettled_blocks(conn: asyncpg.Connection, coin: str) -> list[asyncpg.Record]:
    """Accepted blocks of `coin` not yet matured in the ledger, oldest first."""
    return list(
        await conn.fetch(
            """
        SELECT b.hash, b.height, b.worker, b.upstream, b.reward, b.found_at FROM blocks b
        WHERE b.coin = $1 AND b.status = 'accepted' AND NOT EXISTS (
            SELECT 1 FROM ledger_entries l WHERE l.coin = $1 AND l.txn = 'block:' || b.hash || ':mature')
        ORDER BY b.found_at, b.id
        """,
            coin,
        )
    )


async def orphaned_blocks(conn: asyncpg.Connection, coin: str, above_height: int) -> list[asyncpg.Record]:
    """Blocks of `coin` off the main chain when last looked at (reversed by the ledger, or found on
    a side chain at submission), above `above_height`, oldest first."""
    return list(
        await conn.fetch(
            """
        SELECT b.hash, b.height FROM blocks b
        WHERE b.coin = $1 AND b.status = 'orphaned' AND b.height > $2
        ORDER BY b.found_at, b.id
        """,
            coin,
            above_height,
        )
    )


async def mark_orphaned(conn: asyncpg.Connection, block_hash: str, reason: str) -> None:
    await conn.execute(
        "UPDATE blocks SET status = 'orphaned', reason = $2 WHERE hash = $1", block_hash, reason
    )


async def mark_returned(conn: asyncpg.Connection, block_hash: str) -> None:
    await conn.execute("UPDATE blocks SET status = 'accepted', reason = NULL WHERE hash = $1", block_hash)


async def recent_coinbase_values(
    conn: asyncpg.Connection, coin: str, count: int
) -> list[tuple[int, Decimal]]:
    """(height, coinbase value in coins) of the `count` latest accepted blocks of `coin`."""
    rows = await conn.fetch(
        "SELECT height, reward FROM blocks WHERE coin = $1 AND status = 'accepted' AND reward IS NOT NULL "
        "ORDER BY found_at DESC, id DESC LIMIT $2",
        coin,
        count,
    )
    return [(r["height"], r["reward"]) for r in rows]


async def shares_before(
    conn: asyncpg.Connection, upstreams: Sequence[str], until: datetime, before: datetime | None, limit: int
) -> list[tuple[datetime, str, float]]:
    """Accepted shares (ts, worker, difficulty) at or before `until` (and before `before`, the
    previous page's oldest), newest first; `upstreams` empty: every upstream."""
    rows = await conn.fetch(
        """
        SELECT ts, worker, difficulty FROM shares
        WHERE result = 'accepted' AND ts <= $2 AND ($3::timestamptz IS NULL OR ts < $3)
          AND (cardinality($1::text[]) = 0 OR upstream = ANY($1::text[]))
        ORDER BY ts DESC LIMIT $4
        """,
        list(upstreams),
        until,
        before,
        limit,
    )
    return [(r["ts"], r["worker"], r["difficulty"]) for r in rows]


async def network_at(conn: asyncpg.Connection, coin: str, at: datetime) -> tuple[float, Decimal] | None:
    """The aggregator's network difficulty and block reward of `coin` as of `at` (its history, else
    its current row), or None when it has neither."""
    row = await conn.fetchrow(
        """
        SELECT h.difficulty, h.block_reward FROM coin_history h JOIN coins c ON c.id = h.coin_id
        WHERE c.symbol = $1 AND c.algorithm = 'scrypt' AND h.ts <= $2 AND h.difficulty > 0
          AND h.block_reward IS NOT NULL
        ORDER BY h.ts DESC LIMIT 1
        """,
        coin,
        at,
    ) or await conn.fetchrow(
        "SELECT difficulty, block_reward FROM coins WHERE symbol = $1 AND algorithm = 'scrypt' "
        "AND difficulty > 0 AND block_reward IS NOT NULL",
        coin,
    )
    return None if row is None else (float(row["difficulty"]), row["block_reward"])


async def period_work(
    conn: asyncpg.Connection, coin: str, upstreams: Sequence[str], start: datetime, end: datetime
) -> list[tuple[str, float, float | None, Decimal | None]]:
    """Accepted share difficulty per worker in [start, end), grouped by the aggregator's network
    difficulty and block reward in force when each share was found (None: no data then)."""
    rows = await conn.fetch(
        """
        SELECT s.worker, sum(s.difficulty) AS difficulty, h.difficulty AS network, h.block_reward
        FROM shares s
        LEFT JOIN LATERAL (
            SELECT ch.difficulty, ch.block_reward FROM coin_history ch JOIN coins c ON c.id = ch.coin_id
            WHERE c.symbol = $1 AND c.algorithm = 'scrypt' AND ch.ts <= s.ts AND ch.difficulty > 0
              AND ch.block_reward IS NOT NULL
            ORDER BY ch.ts DESC LIMIT 1
        ) h ON true
        WHERE s.result = 'accepted' AND s.ts >= $3 AND s.ts < $4
          AND (cardinality($2::text[]) = 0 OR s.upstream = ANY($2::text[]))
        GROUP BY s.worker, h.difficulty, h.block_reward
        ORDER BY s.worker
        """,
        coin,
        list(upstreams),
        start,
        end,
    )
    return [(r["worker"], float(r["difficulty"]), r["network"], r["block_reward"]) for r in rows]


async def first_share_at(conn: asyncpg.Connection, upstreams: Sequence[str]) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT min(ts) FROM shares WHERE result = 'accepted' "
        "AND (cardinality($1::text[]) = 0 OR upstream = ANY($1::text[]))",
        list(upstreams),
    )
    return value


async def last_pps_period_end(conn: asyncpg.Connection, coin: str) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT max(period_end) FROM pps_periods WHERE coin = $1", coin
    )
    return value


async def add_pps_period(conn: asyncpg.Connection, coin: str, start: datetime, end: datetime) -> bool:
    status: str = await conn.execute(
        "INSERT INTO pps_periods (coin, period_start, period_end) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        coin,
        start,
        end,
    )
    return status.endswith(" 1")


async def add_pool_payment(
    conn: asyncpg.Connection, coin: str, pool: str, amount: int, earned_at: datetime, reference: str
) -> int | None:
    """The new payment's id; None when one with this reference was recorded before."""
    value: int | None = await conn.fetchval(
        """
        INSERT INTO pool_payments (coin, pool, amount, earned_at, reference) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (coin, reference) DO NOTHING RETURNING id
        """,
        coin,
        pool,
        amount,
        earned_at,
        reference,
    )
    return value


async def pool_payment_by_reference(
    conn: asyncpg.Connection, coin: str, reference: str
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM pool_payments WHERE coin = $1 AND reference = $2", coin, reference
    )
    return row


async def unsplit_pool_payments(conn: asyncpg.Connection, coin: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """
            SELECT p.id, p.pool, p.amount, p.earned_at FROM pool_payments p
            WHERE p.coin = $1 AND NOT EXISTS (
                SELECT 1 FROM ledger_entries l WHERE l.coin = $1 AND l.txn = 'poolpay:' || p.id)
            ORDER BY p.id
            """,
            coin,
        )
    )


async def pool_payment(conn: asyncpg.Connection, payment_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        """
        SELECT p.id, p.coin, p.pool, p.amount, p.earned_at, p.reference, p.created_at,
               EXISTS (SELECT 1 FROM ledger_entries l WHERE l.coin = p.coin AND l.txn = 'poolpay:' || p.id)
               AS split
        FROM pool_payments p WHERE p.id = $1
        """,
        payment_id,
    )
    return row


# --- fees ----------------------------------------------------------------------------------------


async def fee_percent(conn: asyncpg.Connection, coin: str) -> Decimal | None:
    value: Decimal | None = await conn.fetchval("SELECT fee_percent FROM coin_fees WHERE coin = $1", coin)
    return value


async def set_fee(conn: asyncpg.Connection, coin: str, percent: Decimal) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        """
        INSERT INTO coin_fees (coin, fee_percent) VALUES ($1, $2)
        ON CONFLICT (coin) DO UPDATE SET fee_percent = excluded.fee_percent, updated_at = now()
        RETURNING coin, fee_percent, updated_at
        """,
        coin,
        percent,
    )
    return row


async def fees(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT coin, fee_percent, updated_at FROM coin_fees ORDER BY coin"))


# --- accounts ------------------------------------------------------------------------------------


async def register(
    conn: asyncpg.Connection, name: str, email: str | None, token_hash: str, addresses: dict[str, str]
) -> asyncpg.Record | None:
    """The new account; None when the name is taken."""
    async with conn.transaction():
        row: asyncpg.Record | None = await conn.fetchrow(
            "INSERT INTO accounts (name, email, token_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING "
            "RETURNING name, email, created_at",
            name,
            email,
            token_hash,
        )
        if row is None:
            return None
        await conn.executemany(
            "INSERT INTO account_addresses (account, coin, address) VALUES ($1, $2, $3)",
            [(name, coin, address) for coin, address in sorted(addresses.items())],
        )
    return row


async def account_names(conn: asyncpg.Connection) -> set[str]:
    return {r["name"] for r in await conn.fetch("SELECT name FROM accounts")}


async def account_exists(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM accounts WHERE name = $1)", name))


async def payout_addresses(conn: asyncpg.Connection, coin: str, accounts: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT account, address FROM account_addresses WHERE coin = $1 AND account = ANY($2)",
        coin,
        list(accounts),
    )
    return {r["account"]: r["address"] for r in rows}


# --- payouts and their wallet transactions -------------------------------------------------------

_ITEM = """id, coin, account, amount, status, batch_id,
    (SELECT txid FROM payout_batches b WHERE b.id = p.batch_id) AS txid,
    created_at, sent_at, confirmed_at"""


async def open_payouts(conn: asyncpg.Connection, coin: str, accounts: Sequence[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT account FROM payouts WHERE coin = $1 AND status IN ('awaiting_approval', 'pending') "
        "AND batch_id IS NULL AND account = ANY($2)",
        coin,
        list(accounts),
    )
    return {r["account"] for r in rows}


async def insert_payouts(
    conn: asyncpg.Connection, coin: str, rows: Sequence[tuple[str, str, int, str]]
) -> list[tuple[int, str, int]]:
    """New payouts (account, address, amount, status); answers (id, account, amount) of each."""
    if not rows:
        return []
    accounts, addresses, amounts, statuses = (list(c) for c in zip(*rows, strict=True))
    inserted = await conn.fetch(
        """
        INSERT INTO payouts (coin, account, address, amount, status)
        SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[])
        RETURNING id, account, amount
        """,
        coin,
        accounts,
        addresses,
        amounts,
        statuses,
    )
    return [(r["id"], r["account"], r["amount"]) for r in inserted]


async def sendable(conn: asyncpg.Connection, coin: str, limit: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT id, account, address, amount FROM payouts WHERE coin = $1 AND status = 'pending' "
            "AND batch_id IS NULL ORDER BY id LIMIT $2 FOR UPDATE",
            coin,
            limit,
        )
    )


async def new_batch(
    conn: asyncpg.Connection, coin: str, payout_ids: Sequence[int], comment_prefix: str
) -> tuple[int, str]:
    """A batch of `payout_ids`, its comment `comment_prefix` + its id: (id, comment)."""
    batch_id: int = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('payout_batches', 'id'))")
    comment = f"{comment_prefix}{batch_id}"
    await conn.execute(
        "INSERT INTO payout_batches (id, coin, comment) VALUES ($1, $2, $3)", batch_id, coin, comment
    )
    await conn.execute(
        "UPDATE payouts SET batch_id = $1 WHERE id = ANY($2::bigint[])", batch_id, list(payout_ids)
    )
    return batch_id, comment


async def batches(conn: asyncpg.Connection, coin: str, status: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT id, comment, txid, created_at FROM payout_batches WHERE coin = $1 AND status = $2 "
            "ORDER BY id",
            coin,
            status,
        )
    )


async def batch_outputs(conn: asyncpg.Connection, batch_id: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT id, account, address, amount FROM payouts WHERE batch_id = $1 ORDER BY id", batch_id
        )
    )


async def batch_sent(conn: asyncpg.Connection, batch_id: int, txid: str, tx_fee: int | None) -> None:
    await conn.execute(
        "UPDATE payout_batches SET status = 'sent', txid = $2, tx_fee = $3, sent_at = now() "
        "WHERE id = $1 AND status = 'sending'",
        batch_id,
        txid,
        tx_fee,
    )
    await conn.execute("UPDATE payouts SET status = 'sent', sent_at = now() WHERE batch_id = $1", batch_id)


async def batch_confirmed(conn: asyncpg.Connection, batch_id: int) -> None:
    await conn.execute(
        "UPDATE payout_batches SET status = 'confirmed', confirmed_at = now() WHERE id = $1", batch_id
    )
    await conn.execute(
        "UPDATE payouts SET status = 'confirmed', confirmed_at = now() WHERE batch_id = $1", batch_id
    )


async def batch_failed(conn: asyncpg.Connection, batch_id: int, reason: str) -> list[asyncpg.Record]:
    await conn.execute(
        "UPDATE payout_batches SET status = 'failed', reason = $2 WHERE id = $1", batch_id, reason
    )
    return list(
        await conn.fetch(
            "UPDATE payouts SET status = 'failed' WHERE batch_id = $1 RETURNING id, account, amount", batch_id
        )
    )


async def payout(conn: asyncpg.Connection, payout_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_ITEM} FROM payouts p WHERE id = $1", payout_id
    )
    return row


async def approve(conn: asyncpg.Connection, payout_id: int) -> asyncpg.Record | None:
    """Approve a payout awaiting approval; the payout as it is now (None: no such payout)."""
    await conn.execute(
        "UPDATE payouts SET status = 'pending', approved_at = now() "
        "WHERE id = $1 AND status = 'awaiting_approval'",
        payout_id,
    )
    return await payout(conn, payout_id)


async def payouts_page(
    conn: asyncpg.Connection, account: str | None, status: str | None, before: int | None, limit: int
) -> list[asyncpg.Record]:
    """Payouts newest first, of one account and/or status; `before`: ids below it (the cursor)."""
    return list(
        await conn.fetch(
            f"""
        SELECT {_ITEM} FROM payouts p
        WHERE ($1::text IS NULL OR account = $1) AND ($2::text IS NULL OR status = $2)
          AND ($3::bigint IS NULL OR id < $3)
        ORDER BY id DESC LIMIT $4
        """,
            account,
            status,
            before,
            limit,
        )
    )


async def ledger_version(conn: asyncpg.Connection, account: str | None) -> tuple[Any, ...]:
    """What an ETag over an account's (or every) balance and payout list changes with."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT max(id) FROM ledger_entries WHERE $1::text IS NULL OR account = $1) AS entry,
               (SELECT count(*) FROM payouts WHERE $1::text IS NULL OR account = $1) AS payouts,
               (SELECT max(greatest(created_at, approved_at, sent_at, confirmed_at)) FROM payouts
                WHERE $1::text IS NULL OR account = $1) AS changed
        """,
        account,
    )
    return tuple(row.values()) if row is not None else ()
