"""Writes of one run, in one transaction: realtime rows upserted, history appended, old history
deleted, failed sources' data marked stale. Parameterised SQL only.
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from aggregator.config import AggregatorConfig, PoolConfig
from aggregator.model import CoinId, SourceData, SourceKind
from aggregator.profit import Profitability
from aggregator.reconcile import Reconciliation, Resolved

# Any constant shared by every aggregator process: runs from two processes take turns.
_RUN_LOCK_KEY = int.from_bytes(b"qsagg", "big")
# A coin row is stale while any of these has no fresh value: profitability needs all three.
ESSENTIAL_COIN_QUANTITIES = ("price_usd", "difficulty", "block_reward")
_COIN_COLUMNS = ("price_usd", "difficulty", "block_reward", "block_time_s", "network_hashrate_hs", "height")
_HISTORY_QUANTITIES = ("price_usd", "difficulty", "block_reward", "network_hashrate_hs", "height")
CONSENSUS_SOURCE = "consensus"
_HARDWARE_KINDS = ("asic", "gpu", "cpu")

RANKED_SQL = """
SELECT p.computed_at, c.symbol, pl.name AS pool, p.algorithm, p.hashrate_hs, p.coins_per_day,
       p.usd_per_day, p.fee_pct, p.usd_per_day_net, p.inputs
FROM profitability p
JOIN coins c ON c.id = p.coin_id
LEFT JOIN pools pl ON pl.id = p.pool_id
WHERE p.algorithm = $1
  AND p.computed_at = (SELECT max(computed_at) FROM profitability WHERE algorithm = $1)
ORDER BY p.usd_per_day_net DESC NULLS LAST
"""
"""The latest run's profitability for an algorithm, best first: served by profitability_best_idx."""


@dataclass(frozen=True)
class SourceOutcome:
    name: str
    kind: SourceKind
    ok: bool
    duration_s: float
    error: str = ""
    observations: int = 0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class WriteCounts:
    coins: int
    coin_history: int
    pools: int
    pool_history: int
    hardware: int
    profitability: int
    deleted_history: int


async def ranked(conn: asyncpg.Connection, algorithm: str) -> list[asyncpg.Record]:
    return list(await conn.fetch(RANKED_SQL, algorithm))


async def write_run(
    conn: asyncpg.Connection,
    config: AggregatorConfig,
    run_at: datetime,
    outcomes: Sequence[SourceOutcome],
    data: Sequence[SourceData],
    rec: Reconciliation,
    profits: Sequence[Profitability],
) -> WriteCounts:
    """Everything one run learnt; the caller holds the transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _RUN_LOCK_KEY)
    failed = [o.name for o in outcomes if not o.ok]
    oldest = run_at - timedelta(seconds=config.stale_after_s)
    await _write_status(conn, run_at, outcomes)
    await _write_observations(conn, run_at, oldest, data, failed)
    coin_ids = await _write_coins(conn, config, run_at, rec)
    coin_history = await _append_coin_history(conn, run_at, coin_ids, data, rec)
    pool_ids = await _write_pools(conn, config, run_at, rec, coin_ids)
    pool_history = await _append_pool_history(conn, run_at, config.pools, pool_ids, rec)
    hardware = await _write_hardware(conn, run_at, oldest, rec, failed)
    profit_rows = await _write_profitability(conn, run_at, profits, coin_ids, pool_ids)
    deleted = await _delete_old_history(conn, run_at - timedelta(days=config.history_retention_days))
    return WriteCounts(
        len(coin_ids), coin_history, len(pool_ids), pool_history, hardware, profit_rows, deleted
    )


async def _write_status(
    conn: asyncpg.Connection, run_at: datetime, outcomes: Sequence[SourceOutcome]
) -> None:
    await conn.executemany(
        """
        INSERT INTO source_status AS s (source, kind, last_attempt_at, last_success_at, last_error,
                                        consecutive_failures)
        VALUES ($1, $2, $3::timestamptz, CASE WHEN $4::boolean THEN $3::timestamptz END, NULLIF($5::text, ''),
                CASE WHEN $4::boolean THEN 0 ELSE 1 END)
        ON CONFLICT (source) DO UPDATE SET
            kind = EXCLUDED.kind,
            last_attempt_at = EXCLUDED.last_attempt_at,
            last_success_at = COALESCE(EXCLUDED.last_success_at, s.last_success_at),
            last_error = EXCLUDED.last_error,
            consecutive_failures = CASE WHEN $4 THEN 0 ELSE s.consecutive_failures + 1 END
        """,
        [(o.name, o.kind, run_at, o.ok, o.error) for o in outcomes],
    )


async def _write_observations(
    conn: asyncpg.Connection,
    run_at: datetime,
    oldest: datetime,
    data: Sequence[SourceData],
    failed: list[str],
) -> None:
    rows = [
        (
            o.subject_kind,
            o.subject,
            o.quantity,
            o.source,
            o.value,
            o.observed_at,
            run_at,
            o.observed_at < oldest,
        )
        for source_data in data
        for o in source_data.observations
    ]
    await conn.executemany(
        """
        INSERT INTO source_observations AS so
            (subject_kind, subject, quantity, source, value, observed_at, fetched_at, stale)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (subject_kind, subject, quantity, source) DO UPDATE SET
            value = EXCLUDED.value, observed_at = EXCLUDED.observed_at,
            fetched_at = EXCLUDED.fetched_at, stale = EXCLUDED.stale
        """,
        rows,
    )
    await conn.execute(
        """
        UPDATE source_observations SET stale = true
        WHERE NOT stale AND (source = ANY($1::text[]) OR observed_at < $2)
        """,
        failed,
        oldest,
    )


def _provenance(resolved: Resolved) -> dict[str, Any]:
    return {
        "rule": resolved.rule,
        "at": resolved.observed_at.isoformat(),
        "stale": False,
        "sources": {o.source: {"value": o.value, "at": o.observed_at.isoformat()} for o in resolved.used},
    }


async def _write_coins(
    conn: asyncpg.Connection, config: AggregatorConfig, run_at: datetime, rec: Reconciliation
) -> dict[CoinId, int]:
    ids: dict[CoinId, int] = {}
    for coin in config.coins:
        coin_id = CoinId.of(coin.symbol, coin.algorithm)
        row = await conn.fetchrow(
            """
            INSERT INTO coins (symbol, algorithm, name) VALUES ($1, $2, $3)
            ON CONFLICT (symbol, algorithm) DO UPDATE SET name = EXCLUDED.name
            RETURNING id, sources
            """,
            coin_id.symbol,
            coin_id.algorithm,
            coin.name or coin_id.symbol,
        )
        fresh = rec.of("coin", str(coin_id))
        sources: dict[str, Any] = json.loads(row["sources"])
        for quantity in _COIN_COLUMNS:
            if quantity in fresh:
                sources[quantity] = _provenance(fresh[quantity])
            elif quantity in sources:
                sources[quantity]["stale"] = True
        values = [fresh[q].value if q in fresh else None for q in _COIN_COLUMNS]
        height = values[-1]
        await conn.execute(
            """
            UPDATE coins SET
                price_usd = COALESCE($2::float8, price_usd),
                difficulty = COALESCE($3, difficulty),
                block_reward = COALESCE($4::float8, block_reward),
                block_time_s = COALESCE($5, block_time_s),
                network_hashrate = COALESCE($6, network_hashrate),
                height = COALESCE($7, height),
                sources = $8::jsonb,
                stale = $9,
                updated_at = CASE WHEN $10 THEN $11 ELSE updated_at END
            WHERE id = $1
            """,
            row["id"],
            *values[:-1],
            None if height is None else round(height),
            json.dumps(sources, sort_keys=True),
            any(q not in fresh for q in ESSENTIAL_COIN_QUANTITIES),
            bool(fresh),
            run_at,
        )
        ids[coin_id] = row["id"]
    return ids


def _history_row(
    coin_db_id: int, run_at: datetime, source: str, values: dict[str, float]
) -> tuple[Any, ...] | None:
    if not any(q in values for q in _HISTORY_QUANTITIES):
        return None
    height = values.get("height")
    return (
        coin_db_id,
        run_at,
        source,
        values.get("price_usd"),
        values.get("difficulty"),
        values.get("block_reward"),
        values.get("network_hashrate_hs"),
        None if height is None else round(height),
    )


async def _append_coin_history(
    conn: asyncpg.Connection,
    run_at: datetime,
    coin_ids: dict[CoinId, int],
    data: Sequence[SourceData],
    rec: Reconciliation,
) -> int:
    """One row per source that reported the coin (its own values), and one for the consensus."""
    by_subject = {str(coin): db_id for coin, db_id in coin_ids.items()}
    per_source: dict[tuple[int, str], dict[str, float]] = defaultdict(dict)
    for source_data in data:
        for o in source_data.observations:
            if o.subject_kind == "coin" and o.subject in by_subject:
                per_source[(by_subject[o.subject], o.source)][o.quantity] = o.value
    rows = [_history_row(db_id, run_at, source, values) for (db_id, source), values in per_source.items()]
    for subject, db_id in by_subject.items():
        consensus = {q: r.value for q, r in rec.of("coin", subject).items()}
        rows.append(_history_row(db_id, run_at, CONSENSUS_SOURCE, consensus))
    kept = [r for r in rows if r is not None]
    await conn.executemany(
        """
        INSERT INTO coin_history
            (coin_id, ts, source, price_usd, difficulty, block_reward, network_hashrate, height)
        VALUES ($1, $2, $3, $4::float8, $5, $6::float8, $7, $8)
        """,
        kept,
    )
    return len(kept)


def pool_source(pool: PoolConfig) -> str:
    """The source name a pool's statistics come from ("config" for a pool without an API)."""
    return "config" if pool.api == "none" else f"{pool.api}:{pool.name}"


async def _write_pools(
    conn: asyncpg.Connection,
    config: AggregatorConfig,
    run_at: datetime,
    rec: Reconciliation,
    coin_ids: dict[CoinId, int],
) -> dict[str, int]:
    ids: dict[str, int] = {}
    for pool in config.pools:
        main = CoinId.of(pool.coins[0], pool.algorithm)
        fresh = rec.of("pool", pool.name)
        hashrate = fresh.get("hashrate_hs")
        miners = fresh.get("miners")
        endpoints = [{"url": pool.stratum_url}] if pool.stratum_url else []
        ids[pool.name] = await conn.fetchval(
            """
            INSERT INTO pools AS p (name, coin_id, endpoints, fee_pct, merged_coins, hashrate, miners, source,
                                    stale, updated_at)
            VALUES ($1, $2, $3::jsonb, $4::float8, $5::text[], $6, $7, $8, $9, $10)
            ON CONFLICT (coin_id, name) DO UPDATE SET
                endpoints = EXCLUDED.endpoints,
                fee_pct = EXCLUDED.fee_pct,
                merged_coins = EXCLUDED.merged_coins,
                hashrate = COALESCE(EXCLUDED.hashrate, p.hashrate),
                miners = COALESCE(EXCLUDED.miners, p.miners),
                source = EXCLUDED.source,
                stale = EXCLUDED.stale,
                updated_at = EXCLUDED.updated_at
            RETURNING id
            """,
            pool.name,
            coin_ids[main],
            json.dumps(endpoints),
            pool.fee_percent,
            [s.upper() for s in pool.coins[1:]],
            None if hashrate is None else hashrate.value,
            None if miners is None else round(miners.value),
            pool_source(pool),
            pool.api != "none" and hashrate is None,
            run_at,
        )
    return ids


async def _append_pool_history(
    conn: asyncpg.Connection,
    run_at: datetime,
    pools: Iterable[PoolConfig],
    pool_ids: dict[str, int],
    rec: Reconciliation,
) -> int:
    rows = []
    for pool in pools:
        fresh = rec.of("pool", pool.name)
        hashrate, miners = fresh.get("hashrate_hs"), fresh.get("miners")
        rows.append((
            pool_ids[pool.name], run_at, None if hashrate is None else hashrate.value,
            None if miners is None else round(miners.value), pool.fee_percent,
        ))  # fmt: skip
    await conn.executemany(
        "INSERT INTO pool_history (pool_id, ts, hashrate, miners, fee_pct)"
        " VALUES ($1, $2, $3, $4, $5::float8)",
        rows,
    )
    return len(rows)


async def _write_hardware(
    conn: asyncpg.Connection, run_at: datetime, oldest: datetime, rec: Reconciliation, failed: list[str]
) -> int:
    written = 0
    for subject in rec.subjects("hardware"):
        slug, algorithm = subject.rsplit("/", 1)
        fresh = rec.of("hardware", subject)
        hashrate, power = fresh.get("hashrate_hs"), fresh.get("power_w")
        info = rec.hardware.get(slug)
        if hashrate is None or info is None:
            continue
        kind = info.kind if info.kind in _HARDWARE_KINDS else "asic"
        hardware_id = await conn.fetchval(
            """
            INSERT INTO hardware AS h (name, slug, vendor, kind) VALUES ($1, $2, NULLIF($3, ''), $4)
            ON CONFLICT (slug) DO UPDATE SET vendor = COALESCE(EXCLUDED.vendor, h.vendor)
            RETURNING id
            """,
            info.name,
            slug,
            info.brand,
            kind,
        )
        used = sorted(set(hashrate.sources) | set(power.sources if power else ()))
        await conn.execute(
            """
            INSERT INTO hardware_mining AS m
                (hardware_id, algorithm, hashrate_hs, power_w, source, updated_at, stale)
            VALUES ($1, $2, $3, $4, $5, $6, false)
            ON CONFLICT (hardware_id, algorithm) DO UPDATE SET
                hashrate_hs = EXCLUDED.hashrate_hs,
                power_w = COALESCE(EXCLUDED.power_w, m.power_w),
                source = EXCLUDED.source,
                updated_at = EXCLUDED.updated_at,
                stale = false
            """,
            hardware_id,
            algorithm,
            hashrate.value,
            None if power is None else power.value,
            ",".join(used),
            run_at,
        )
        written += 1
    # Figures not refreshed by this run that came from a source that just failed, or that have
    # not been refreshed for stale_after_s, are no longer to be trusted.
    await conn.execute(
        """
        UPDATE hardware_mining SET stale = true
        WHERE NOT stale AND updated_at < $1
          AND (string_to_array(source, ',') && $2::text[] OR updated_at < $3)
        """,
        run_at,
        failed,
        oldest,
    )
    return written


async def _write_profitability(
    conn: asyncpg.Connection,
    run_at: datetime,
    profits: Sequence[Profitability],
    coin_ids: dict[CoinId, int],
    pool_ids: dict[str, int],
) -> int:
    await conn.executemany(
        """
        INSERT INTO profitability (computed_at, coin_id, pool_id, algorithm, hashrate_hs, coins_per_day,
                                   usd_per_day, fee_pct, usd_per_day_net, inputs)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::float8, $9, $10::jsonb)
        """,
        [
            (
                run_at,
                coin_ids[p.coin],
                None if p.pool is None else pool_ids[p.pool],
                p.algorithm,
                p.hashrate_hs,
                p.coins_per_day,
                p.usd_per_day,
                p.fee_percent,
                p.usd_per_day_net,
                json.dumps(p.inputs, sort_keys=True),
            )
            for p in profits
        ],
    )
    return len(profits)


async def _delete_old_history(conn: asyncpg.Connection, before: datetime) -> int:
    deleted = 0
    for statement in (
        "DELETE FROM coin_history WHERE ts < $1",
        "DELETE FROM pool_history WHERE ts < $1",
        "DELETE FROM profitability WHERE computed_at < $1",
    ):
        status = await conn.execute(statement, before)
        deleted += int(status.split()[-1])
    return deleted


async def source_ages(conn: asyncpg.Connection, now: datetime) -> dict[str, float]:
    """Seconds since each source's last successful fetch (sources never successful are absent)."""
    rows = await conn.fetch(
        "SELECT source, last_success_at FROM source_status WHERE last_success_at IS NOT NULL"
    )
    return {r["source"]: (now - r["last_success_at"]).total_seconds() for r in rows}
