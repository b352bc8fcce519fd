"""Every SQL statement of the proxy, parameterised; each function takes the connection to use.

Connections, transactions and what a failure means stay with the callers (the share writer, the
daemon upstream, the coordinator's cursor store, the app): this module only knows the tables.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

# --- shares and workers (the share writer) -------------------------------------------------------

SHARE_COLUMNS = ("ts", "worker", "upstream", "job_id", "difficulty", "share_diff", "result", "reason",
                 "block_hash", "ip", "host")
ShareRow = tuple[datetime, str, str, str, float, float | None, str, str | None, str | None, str | None,
                 str | None]
"""One row of `shares`, in SHARE_COLUMNS order (also the share journal's line)."""

WorkerTotals = tuple[str, int, int, int, datetime, str | None, str | None]
"""(name, accepted, rejected, stale, last share, its ip, its host) of one worker over a batch of shares."""

# One statement for a segment's workers (arrays, not one statement per worker: executemany cost
# more than the COPY with a thousand workers, bench.recording). Names come sorted, so writers of
# several proxy processes lock the same rows in the same order and never deadlock each other.
_ADD_WORKER_TOTALS = """
INSERT INTO workers (name, accepted, rejected, stale, last_share_at, last_seen, last_ip, host)
SELECT name, accepted, rejected, stale, at, at, ip, host
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[], $6::text[], $7::text[])
    AS t (name, accepted, rejected, stale, at, ip, host)
ON CONFLICT (name) DO UPDATE SET
    accepted = workers.accepted + EXCLUDED.accepted,
    rejected = workers.rejected + EXCLUDED.rejected,
    stale = workers.stale + EXCLUDED.stale,
    -- where and through which host the worker mined last: a batch older than what is there
    -- (another host's journal replayed late) leaves them
    last_ip = CASE WHEN EXCLUDED.last_share_at >= workers.last_share_at OR workers.last_share_at IS NULL
                   THEN COALESCE(EXCLUDED.last_ip, workers.last_ip) ELSE workers.last_ip END,
    host = CASE WHEN EXCLUDED.last_share_at >= workers.last_share_at OR workers.last_share_at IS NULL
                THEN COALESCE(EXCLUDED.host, workers.host) ELSE workers.host END,
    last_share_at = GREATEST(workers.last_share_at, EXCLUDED.last_share_at),
    last_seen = GREATEST(workers.last_seen, EXCLUDED.last_seen)
"""

_ADD_WORKER_COIN_DAILY = """
INSERT INTO worker_coin_daily AS w (day, worker, coin, seconds, accepted_difficulty,
                                    expected_coins, expected_usd, unpriced_difficulty)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (day, worker, coin) DO UPDATE SET
    seconds = w.seconds + EXCLUDED.seconds,
    accepted_difficulty = w.accepted_difficulty + EXCLUDED.accepted_difficulty,
    expected_coins = w.expected_coins + EXCLUDED.expected_coins,
    expected_usd = w.expected_usd + EXCLUDED.expected_usd,
    unpriced_difficulty = w.unpriced_difficulty + EXCLUDED.unpriced_difficulty
"""

WorkerCoinDay = tuple[date, str, str, float, float, float, float, float]
"""(day, worker, coin, seconds, accepted difficulty, expected coins, expected USD, unpriced difficulty)."""


async def mark_recorded(conn: asyncpg.Connection, segment: UUID, rows: int) -> bool:
    """Note `segment` as written, in the transaction that writes it; False if it was already."""
    fresh = await conn.fetchval(
        "INSERT INTO recorded_segments (segment, rows) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        segment, rows)
    return bool(fresh)


async def prune_recorded(conn: asyncpg.Connection, days: int) -> None:
    """Forget the segments written more than `days` ago."""
    await conn.execute("DELETE FROM recorded_segments WHERE recorded_at < now() - make_interval(days => $1)",
                       days)


async def copy_shares(conn: asyncpg.Connection, rows: Sequence[ShareRow]) -> None:
    await conn.copy_records_to_table("shares", records=rows, columns=SHARE_COLUMNS)


async def add_worker_totals(conn: asyncpg.Connection, totals: Sequence[WorkerTotals]) -> None:
    """Add a batch's counts to `workers`; `totals` sorted by name (see _ADD_WORKER_TOTALS)."""
    await conn.execute(_ADD_WORKER_TOTALS, *zip(*totals, strict=True))


async def ensure_share_partitions(conn: asyncpg.Connection, first_day: date, days: int) -> None:
    """Daily partitions of `shares` for `days` days from `first_day` (the migration's function)."""
    await conn.fetchval("SELECT qscrypt_ensure_share_partitions($1, $2)", first_day, days)


@dataclass(frozen=True, slots=True)
class Quote:
    """A coin's current values from the aggregator; None where it has none."""

    difficulty: float | None
    block_reward: float | None
    price_usd: float | None


async def scrypt_quotes(conn: asyncpg.Connection) -> dict[str, Quote]:
    """The scrypt coins the aggregator has fresh values for, by symbol."""
    rows = await conn.fetch("SELECT symbol, difficulty, block_reward, price_usd FROM coins"
                            " WHERE algorithm = 'scrypt' AND NOT stale")
    return {r["symbol"]: Quote(_float(r["difficulty"]), _float(r["block_reward"]), _float(r["price_usd"]))
            for r in rows}


async def add_worker_coin_days(conn: asyncpg.Connection, rows: Sequence[WorkerCoinDay]) -> None:
    await conn.executemany(_ADD_WORKER_COIN_DAILY, rows)


# --- blocks (the daemon upstream, and the share writer replaying its journal) --------------------

_INSERT_BLOCK = """
INSERT INTO blocks (coin, height, hash, worker, upstream, reward, status, reason, found_at, host)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (hash) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason
    WHERE blocks.status = 'pending'
"""


async def insert_block(conn: asyncpg.Connection, coin: str, height: int, block_hash: str, worker: str,
                       upstream: str, reward: Decimal, status: str, reason: str | None, found_at: datetime,
                       timeout: float | None = None, host: str | None = None) -> None:
    """Idempotent on the hash; a pending row takes the final status when it comes, no other change."""
    await conn.execute(_INSERT_BLOCK, coin, height, block_hash, worker, upstream, reward, status, reason,
                       found_at, host, timeout=timeout)


# --- moves (the app) -----------------------------------------------------------------------------


async def insert_switch_event(conn: asyncpg.Connection, profile: str, worker_count: int,
                              from_upstream: str | None, to_upstream: str, reason: str,
                              expected_gain_pct: float | None, host: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO switch_events (profile, worker_count, from_upstream, to_upstream, reason,"
        " expected_gain_pct, host) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        profile, worker_count, from_upstream, to_upstream, reason, expected_gain_pct, host)


async def insert_upstream_event(conn: asyncpg.Connection, upstream: str, event: str,
                                detail: dict[str, Any], host: str | None = None) -> None:
    await conn.execute("INSERT INTO upstream_events (upstream, event, detail, host)"
                       " VALUES ($1, $2, $3::jsonb, $4)", upstream, event, json.dumps(detail), host)


# --- worker tokens (the app) ---------------------------------------------------------------------


async def worker_token_hashes(conn: asyncpg.Connection) -> set[str]:
    """The sha256 hex digests of the workers' tokens (`workers.token_hash`)."""
    rows = await conn.fetch("SELECT token_hash FROM workers WHERE token_hash IS NOT NULL")
    return {r["token_hash"] for r in rows}


async def operator_bans(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(kind, value) of the bans in force (table `bans`)."""
    rows = await conn.fetch("SELECT kind, value FROM bans WHERE expires_at IS NULL OR expires_at > now()")
    return [(r["kind"], r["value"]) for r in rows]


# --- decisions (the decision feed) ---------------------------------------------------------------

DECISIONS_CHANNEL = "qscrypt_decisions"
"""Where the decision API notifies each change."""


async def listen_decisions(conn: asyncpg.Connection, callback: Callable[..., None]) -> None:
    await conn.add_listener(DECISIONS_CHANNEL, callback)


async def ping(conn: asyncpg.Connection) -> None:
    """A round trip: raises if the connection is dead."""
    await conn.execute("SELECT 1")


# --- the coordinator's cursors (proxy.coordinator.store) -----------------------------------------

_CURSOR_LOCK_CLASS = int.from_bytes(b"qsco", "big") - (1 << 31)  # a signed int4 shared by every coordinator


async def lock_cursor(conn: asyncpg.Connection, coordinator_id: int, upstream: str) -> bool:
    """Own the (coordinator, upstream) cursor for as long as this session lives; False if another does."""
    locked = await conn.fetchval("SELECT pg_try_advisory_lock($1::int, hashtext($2::int || ':' || $3))",
                                 _CURSOR_LOCK_CLASS, coordinator_id, upstream)
    return bool(locked)


async def load_cursor(conn: asyncpg.Connection, coordinator_id: int,
                      upstream: str) -> tuple[str, int, int] | None:
    """(job key, epoch, reserved) of the cursor, None if it was never saved."""
    row = await conn.fetchrow("SELECT job_key, epoch, reserved FROM coordinator_cursors"
                              " WHERE coordinator_id = $1 AND upstream = $2", coordinator_id, upstream)
    if row is None:
        return None
    return row["job_key"], row["epoch"], int(row["reserved"])


async def save_cursor(conn: asyncpg.Connection, coordinator_id: int, upstream: str, job_key: str, epoch: int,
                      reserved: int) -> None:
    await conn.execute(
        """
        INSERT INTO coordinator_cursors (coordinator_id, upstream, job_key, epoch, reserved)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (coordinator_id, upstream) DO UPDATE SET
            job_key = EXCLUDED.job_key, epoch = EXCLUDED.epoch, reserved = EXCLUDED.reserved,
            updated_at = now()
        """,
        coordinator_id, upstream, job_key, epoch, reserved)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# --- rollups and pruning (the share writer, once a day) ------------------------------------------


async def share_prune_cutoff(conn: asyncpg.Connection, retention_before: datetime,
                             window_work: float) -> datetime | None:
    """How far back raw shares may go: the retention's limit, or the PPLNS window's start if that
    is earlier (never cut into the window). None: no shares yet, nothing to prune."""
    start = await conn.fetchval("SELECT qscrypt_pplns_window_start($1)", window_work)
    if start is None:
        return None
    return min(start, retention_before)  # type: ignore[no-any-return]


async def max_network_difficulty(conn: asyncpg.Connection) -> float | None:
    """The largest scrypt network difficulty the aggregator knows: the longest PPLNS window."""
    value = await conn.fetchval("SELECT max(difficulty) FROM coins WHERE algorithm = 'scrypt'")
    return _float(value)


async def prune_shares(conn: asyncpg.Connection, before: datetime) -> int:
    """Drop raw shares older than `before` (whole daily partitions); partitions dropped."""
    return int(await conn.fetchval("SELECT qscrypt_prune_shares($1)", before))
