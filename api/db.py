"""Every SQL statement of the API, parameterised; JSON columns arrive decoded."""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from api.decision import Choice, Held
from api.market import Market, candidate_from_row
from api.problems import Problem
from api.profiles import Profile, profile_from_row

log = structlog.get_logger("api.db")

NOTIFY_CHANNEL = "qscrypt_decisions"
# Errors that mean the database cannot be reached right now (worth a retry), as opposed to a
# query the server refused, which is a bug to surface.
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


async def init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, size: int) -> asyncpg.Pool:
    # UTC: timestamps PostgreSQL renders as JSON itself (account_series_json) read as UTC.
    return await asyncpg.create_pool(
        dsn, min_size=1, max_size=size, init=init_connection, server_settings={"timezone": "UTC"}
    )


# --- what the decider watches --------------------------------------------------------------------

# Cheap enough to ask every second: each part is an index lookup or a count over a small table.
VERSION_SQL = """
SELECT (SELECT max(computed_at) FROM profitability),
       (SELECT max(updated_at) FROM profiles), (SELECT count(*) FROM profiles),
       (SELECT max(decided_at) FROM decisions), (SELECT count(*) FROM decisions)
"""

# The latest run for an algorithm: profitability_best_idx finds both the run and its rows.
MARKET_SQL = """
SELECT p.computed_at, p.hashrate_hs, c.symbol, pl.name AS pool, pl.merged_coins, pl.endpoints,
       pl.hashrate AS pool_hashrate_hs, p.fee_pct::float8 AS fee_pct, p.inputs
FROM profitability p
JOIN coins c ON c.id = p.coin_id
LEFT JOIN pools pl ON pl.id = p.pool_id
WHERE p.algorithm = $1
  AND p.computed_at = (SELECT max(computed_at) FROM profitability WHERE algorithm = $1)
"""

_PROFILE_COLUMNS = """name, strategy, params, allow_coins, deny_coins, allow_pools, deny_pools,
       max_fee_pct::float8 AS max_fee_pct, min_pool_hashrate, power_cost_kwh::float8 AS power_cost_kwh,
       updated_at"""


@dataclass(frozen=True)
class HeldRow:
    """A profile's persisted decision."""

    held: Held
    stratum_url: str | None


async def version(conn: asyncpg.Pool | asyncpg.Connection) -> tuple[Any, ...]:
    return tuple(await conn.fetchrow(VERSION_SQL))


async def market(conn: asyncpg.Pool | asyncpg.Connection, algorithm: str) -> Market | None:
    rows = await conn.fetch(MARKET_SQL, algorithm)
    if not rows:
        return None
    candidates = (candidate_from_row(r) for r in rows)
    return Market(
        algorithm=algorithm,
        computed_at=rows[0]["computed_at"],
        reference_hashrate_hs=rows[0]["hashrate_hs"],
        candidates=tuple(c for c in candidates if c is not None),
    )


async def profiles(conn: asyncpg.Pool | asyncpg.Connection) -> list[Profile]:
    """Every valid stored profile; an invalid one (written by hand) is logged and left out, so it
    cannot stop the others' decisions."""
    valid = []
    for row in await conn.fetch(f"SELECT {_PROFILE_COLUMNS} FROM profiles ORDER BY name"):
        try:
            valid.append(profile_from_row(row))
        except Problem as problem:
            log.warning("stored profile is invalid, left out", profile=row["name"], problem=problem.detail)
    return valid


async def profile(conn: asyncpg.Pool | asyncpg.Connection, name: str) -> Profile | None:
    row = await conn.fetchrow(f"SELECT {_PROFILE_COLUMNS} FROM profiles WHERE name = $1", name)
    if row is None:
        return None
    try:
        return profile_from_row(row)
    except Problem as problem:
        raise Problem(
            409,
            "Conflict",
            f"profile {name!r} as stored is invalid ({problem.detail}): PUT a valid one",
            kind="invalid-stored-profile",
        ) from None


def _held(row: asyncpg.Record) -> HeldRow:
    return HeldRow(Held(Choice(row["coin"], row["pool"]), row["decided_at"]), row["stratum_url"])


async def held(conn: asyncpg.Pool | asyncpg.Connection) -> dict[str, HeldRow]:
    rows = await conn.fetch("SELECT profile, coin, pool, stratum_url, decided_at FROM decisions")
    return {r["profile"]: _held(r) for r in rows}


async def lock_held(conn: asyncpg.Connection, name: str) -> tuple[bool, HeldRow | None]:
    """In the caller's transaction: lock the profile (API processes deciding for it take turns);
    whether it still exists, and its persisted decision."""
    exists = await conn.fetchval("SELECT true FROM profiles WHERE name = $1 FOR UPDATE", name)
    if not exists:
        return False, None
    row = await conn.fetchrow(
        "SELECT profile, coin, pool, stratum_url, decided_at FROM decisions WHERE profile = $1", name
    )
    return True, None if row is None else _held(row)


async def save_decision(
    conn: asyncpg.Connection,
    name: str,
    choice: Choice,
    *,
    stratum_url: str | None,
    usd_per_day_net: float | None,
    gain_pct: float | None,
    reason: str,
    data_as_of: datetime | None,
    decided_at: datetime,
) -> None:
    """Persist a new choice. Listeners are told by `announce`, once the decision is being served."""
    await conn.execute(
        """
        INSERT INTO decisions (profile, coin, pool, stratum_url, usd_per_day_net, gain_pct, reason,
                               data_as_of, decided_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (profile) DO UPDATE SET
            coin = EXCLUDED.coin, pool = EXCLUDED.pool, stratum_url = EXCLUDED.stratum_url,
            usd_per_day_net = EXCLUDED.usd_per_day_net, gain_pct = EXCLUDED.gain_pct,
            reason = EXCLUDED.reason, data_as_of = EXCLUDED.data_as_of, decided_at = EXCLUDED.decided_at
        """,
        name,
        choice.coin,
        choice.pool,
        stratum_url,
        usd_per_day_net,
        gain_pct,
        reason,
        data_as_of,
        decided_at,
    )


async def announce(conn: asyncpg.Pool | asyncpg.Connection, names: list[str]) -> None:
    """NOTIFY listeners (the proxy) of each profile whose decision changed. Sent after the new
    decisions are in the API's memory: a listener that polls at once must not get the old ones."""
    for name in names:
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, name)


# --- profiles ------------------------------------------------------------------------------------


def _profile_values(p: Profile) -> tuple[Any, ...]:
    return (
        p.name,
        p.strategy,
        p.params(),
        list(p.allow_coins),
        list(p.deny_coins),
        list(p.allow_pools),
        list(p.deny_pools),
        p.max_fee_pct,
        p.min_pool_hashrate,
        p.power_cost_kwh,
    )


async def insert_profile(conn: asyncpg.Pool, p: Profile) -> Profile | None:
    """The stored profile, or None when the name is taken."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO profiles (name, strategy, params, allow_coins, deny_coins, allow_pools, deny_pools,
                              max_fee_pct, min_pool_hashrate, power_cost_kwh)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::float8, $9, $10::float8)
        ON CONFLICT (name) DO NOTHING
        RETURNING {_PROFILE_COLUMNS}
        """,
        *_profile_values(p),
    )
    return None if row is None else profile_from_row(row)


async def upsert_profile(conn: asyncpg.Pool, p: Profile) -> tuple[Profile, bool]:
    """The stored profile, and whether it was created (else an existing one was replaced)."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO profiles (name, strategy, params, allow_coins, deny_coins, allow_pools, deny_pools,
                              max_fee_pct, min_pool_hashrate, power_cost_kwh)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::float8, $9, $10::float8)
        ON CONFLICT (name) DO UPDATE SET
            strategy = EXCLUDED.strategy, params = EXCLUDED.params, allow_coins = EXCLUDED.allow_coins,
            deny_coins = EXCLUDED.deny_coins, allow_pools = EXCLUDED.allow_pools,
            deny_pools = EXCLUDED.deny_pools, max_fee_pct = EXCLUDED.max_fee_pct,
            min_pool_hashrate = EXCLUDED.min_pool_hashrate, power_cost_kwh = EXCLUDED.power_cost_kwh,
            updated_at = now()
        RETURNING {_PROFILE_COLUMNS}, (xmax = 0) AS created
        """,
        *_profile_values(p),
    )
    assert row is not None  # an upsert always returns its row
    return profile_from_row(row), bool(row["created"])


async def delete_profile(conn: asyncpg.Pool, name: str) -> bool:
    status = await conn.execute("DELETE FROM profiles WHERE name = $1", name)
    return status != "DELETE 0"


# --- read endpoints ------------------------------------------------------------------------------

_COIN_COLUMNS = """id, symbol, algorithm, name, price_usd::float8 AS price_usd, difficulty,
       block_reward::float8 AS block_reward, block_time_s, network_hashrate AS network_hashrate_hs, height,
       stale, updated_at, sources"""


async def coins(conn: asyncpg.Pool, algorithm: str | None) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {_COIN_COLUMNS} FROM coins WHERE ($1::text IS NULL OR algorithm = $1)"
            " ORDER BY algorithm, symbol",
            algorithm,
        )
    )


async def coin(conn: asyncpg.Pool, symbol: str, algorithm: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_COIN_COLUMNS} FROM coins WHERE symbol = $1 AND algorithm = $2", symbol, algorithm
    )


async def coin_history(
    conn: asyncpg.Pool, coin_id: int, source: str, start: datetime, end: datetime, step: timedelta
) -> list[asyncpg.Record]:
    """Averages per `step` bucket (aligned to the epoch, so pages and refreshes line up); the
    (coin_id, ts, source) primary key serves the range."""
    return list(
        await conn.fetch(
            """
        SELECT date_bin($4::interval, ts, TIMESTAMPTZ 'epoch') AS ts, avg(price_usd)::float8 AS price_usd,
               avg(difficulty) AS difficulty, avg(block_reward)::float8 AS block_reward,
               avg(network_hashrate) AS network_hashrate_hs, max(height) AS height, count(*) AS samples
        FROM coin_history
        WHERE coin_id = $1 AND source = $5 AND ts >= $2 AND ts < $3
        GROUP BY 1 ORDER BY 1
        """,
            coin_id,
            start,
            end,
            step,
            source,
        )
    )


_POOL_COLUMNS = """pl.id, pl.name, c.symbol AS coin, c.algorithm, pl.url, pl.endpoints,
       pl.fee_pct::float8 AS fee_pct, pl.payout_scheme, pl.hashrate AS hashrate_hs, pl.miners,
       pl.merged_coins, pl.source, pl.stale, pl.updated_at"""


async def pools(conn: asyncpg.Pool, coin: str | None, algorithm: str | None) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""
        SELECT {_POOL_COLUMNS} FROM pools pl JOIN coins c ON c.id = pl.coin_id
        WHERE ($1::text IS NULL OR c.symbol = $1) AND ($2::text IS NULL OR c.algorithm = $2)
        ORDER BY pl.name, c.symbol
        """,
            coin,
            algorithm,
        )
    )


async def pools_named(conn: asyncpg.Pool, name: str, coin: str | None) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""
        SELECT {_POOL_COLUMNS} FROM pools pl JOIN coins c ON c.id = pl.coin_id
        WHERE pl.name = $1 AND ($2::text IS NULL OR c.symbol = $2)
        ORDER BY c.symbol
        """,
            name,
            coin,
        )
    )


async def pool_history(
    conn: asyncpg.Pool, pool_id: int, start: datetime, end: datetime, step: timedelta
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """
        SELECT date_bin($4::interval, ts, TIMESTAMPTZ 'epoch') AS ts, avg(hashrate) AS hashrate_hs,
               avg(miners)::float8 AS miners, avg(fee_pct)::float8 AS fee_pct, count(*) AS samples
        FROM pool_history
        WHERE pool_id = $1 AND ts >= $2 AND ts < $3
        GROUP BY 1 ORDER BY 1
        """,
            pool_id,
            start,
            end,
            step,
        )
    )


_HARDWARE_SQL = """
SELECT h.slug, h.name, h.vendor, h.kind,
       m.algorithm, m.hashrate_hs, m.power_w, m.source, m.stale, m.updated_at
FROM hardware h
LEFT JOIN hardware_mining m ON m.hardware_id = h.id
"""


async def hardware(conn: asyncpg.Pool, algorithm: str | None, kind: str | None) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            _HARDWARE_SQL
            + """
        WHERE ($1::text IS NULL OR m.algorithm = $1) AND ($2::text IS NULL OR h.kind = $2)
        ORDER BY h.name, m.algorithm
        """,
            algorithm,
            kind,
        )
    )


async def hardware_by_slug(conn: asyncpg.Pool, slug: str) -> list[asyncpg.Record]:
    return list(await conn.fetch(_HARDWARE_SQL + " WHERE h.slug = $1 ORDER BY m.algorithm", slug))


async def workers(
    conn: asyncpg.Pool, profile: str | None, after: str | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """
        SELECT name, profile, accepted, rejected, stale, hashrate_hs, last_share_at, last_seen, created_at,
               host AS proxy_host
        FROM workers
        WHERE ($1::text IS NULL OR profile = $1) AND ($2::text IS NULL OR name > $2)
        ORDER BY name LIMIT $3
        """,
            profile,
            after,
            limit,
        )
    )


async def blocks(
    conn: asyncpg.Pool,
    coin: str | None,
    status: str | None,
    start: datetime | None,
    end: datetime | None,
    before: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """
        SELECT id, coin, height, hash, worker, upstream, reward::float8 AS reward, status, reason, found_at,
               host AS proxy_host
        FROM blocks
        WHERE ($1::text IS NULL OR coin = $1) AND ($2::text IS NULL OR status = $2)
          AND ($3::timestamptz IS NULL OR found_at >= $3) AND ($4::timestamptz IS NULL OR found_at < $4)
          AND ($5::bigint IS NULL OR id < $5)
        ORDER BY id DESC LIMIT $6
        """,
            coin,
            status,
            start,
            end,
            before,
            limit,
        )
    )


async def switch_events(
    conn: asyncpg.Pool,
    profile: str | None,
    start: datetime | None,
    end: datetime | None,
    before: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """
        SELECT id, ts, profile, worker_count, from_upstream, to_upstream, reason, expected_gain_pct,
               host AS proxy_host
        FROM switch_events
        WHERE ($1::text IS NULL OR profile = $1)
          AND ($2::timestamptz IS NULL OR ts >= $2) AND ($3::timestamptz IS NULL OR ts < $3)
          AND ($4::bigint IS NULL OR id < $4)
        ORDER BY id DESC LIMIT $5
        """,
            profile,
            start,
            end,
            before,
            limit,
        )
    )


async def hardware_figures(conn: asyncpg.Pool, slug: str, algorithm: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT m.hashrate_hs, m.power_w FROM hardware h JOIN hardware_mining m ON m.hardware_id = h.id
        WHERE h.slug = $1 AND m.algorithm = $2
        """,
        slug,
        algorithm,
    )


# --- ASICs (written by the fleet poller, registered here or in its config) ------------------------

_DEVICE_COLUMNS = """d.name, d.host, d.port, d.model, d.worker, d.rate_unit, d.source, d.created_at,
       d.updated_at, r.polled_at, r.ok, r.error, r.failures, r.read_at, r.reading, r.window_s,
       r.device_window_hs, r.proxy_hs, r.window_shares, r.disagreement"""


async def devices(conn: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        f"""SELECT {_DEVICE_COLUMNS} FROM asic_devices d LEFT JOIN asic_readings r ON r.device = d.name
            ORDER BY d.name"""))


async def device(conn: asyncpg.Pool, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT {_DEVICE_COLUMNS} FROM asic_devices d LEFT JOIN asic_readings r ON r.device = d.name
            WHERE d.name = $1""", name)


async def device_source(conn: asyncpg.Pool, name: str) -> str | None:
    return await conn.fetchval("SELECT source FROM asic_devices WHERE name = $1", name)  # type: ignore[no-any-return]


async def upsert_device(conn: asyncpg.Pool, name: str, host: str, port: int, model: str, worker: str,
                        rate_unit: str) -> bool | None:
    """Registers or replaces an API device: True created, False replaced, None when the name
    belongs to a device of the config file (which the API does not change)."""
    row = await conn.fetchrow(
        """INSERT INTO asic_devices (name, host, port, model, worker, rate_unit, source)
           VALUES ($1, $2, $3, $4, $5, $6, 'api')
           ON CONFLICT (name) DO UPDATE SET host = $2, port = $3, model = $4, worker = $5, rate_unit = $6,
               updated_at = now()
           WHERE asic_devices.source = 'api'
           RETURNING (xmax = 0) AS created""",
        name, host, port, model, worker, rate_unit)
    return None if row is None else bool(row["created"])


async def delete_device(conn: asyncpg.Pool, name: str) -> str | None:
    """Deletes an API device; the source of the device that was there ('config' is kept), or None."""
    async with conn.acquire() as c, c.transaction():
        source = await c.fetchval("SELECT source FROM asic_devices WHERE name = $1 FOR UPDATE", name)
        if source == "api":
            await c.execute("DELETE FROM asic_devices WHERE name = $1", name)
        return source  # type: ignore[no-any-return]

# --- dashboard: rollups (share_buckets, pool_buckets), accounts, bans ----------------------------
# Charts read the 5-minute rollups, never raw shares; each query is an index range.

_SERIES_COLUMNS = """
       sum(difficulty) FILTER (WHERE result = 'accepted') * 65536 / $3::float8 AS hashrate_hs,
       coalesce(sum(shares) FILTER (WHERE result = 'accepted'), 0)::bigint AS accepted,
       coalesce(sum(shares) FILTER (WHERE result = 'rejected'), 0)::bigint AS rejected,
       coalesce(sum(shares) FILTER (WHERE result = 'stale'), 0)::bigint AS stale"""


async def pool_series(
    conn: asyncpg.Pool, start: datetime, end: datetime, step_s: float
) -> list[asyncpg.Record]:
    """The pool's hashrate and share counts per step (aligned to the epoch)."""
    return list(
        await conn.fetch(
            f"""
        SELECT date_bin(make_interval(secs => $3), bucket, TIMESTAMPTZ 'epoch') AS ts,
               {_SERIES_COLUMNS}
        FROM pool_buckets WHERE bucket >= $1 AND bucket < $2
        GROUP BY 1 ORDER BY 1
        """,
            start,
            end,
            step_s,
        )
    )


# Per worker and step, rendered as JSON by PostgreSQL: a week of ten workers is thousands of
# points, which asyncpg records and Python's json module would take tens of milliseconds over.
_POINT_JSON = """json_build_object(
    'ts', ts, 'hashrate_hs', hashrate_hs,
    'accepted', accepted, 'rejected', rejected, 'stale', stale) ORDER BY ts"""


async def account_series_json(
    conn: asyncpg.Pool, account: str, start: datetime, end: datetime, step_s: float
) -> tuple[str, str]:
    """(total, workers) of `account` as JSON text: the points of all its workers together, and
    [{"worker": ..., "points": [...]}, ...] by worker name (share_buckets_account_idx, index only)."""
    row = await conn.fetchrow(
        f"""
        WITH steps AS (
            SELECT worker, date_bin(make_interval(secs => $3), bucket, TIMESTAMPTZ 'epoch') AS ts,
                   coalesce(sum(difficulty) FILTER (WHERE result = 'accepted'), 0) * 65536 / $3::float8
                       AS hashrate_hs,
                   coalesce(sum(shares) FILTER (WHERE result = 'accepted'), 0)::bigint AS accepted,
                   coalesce(sum(shares) FILTER (WHERE result = 'rejected'), 0)::bigint AS rejected,
                   coalesce(sum(shares) FILTER (WHERE result = 'stale'), 0)::bigint AS stale
            FROM share_buckets WHERE account = $4 AND bucket >= $1 AND bucket < $2
            GROUP BY 1, 2
        ), totals AS (
            SELECT ts, sum(hashrate_hs) AS hashrate_hs, sum(accepted)::bigint AS accepted,
                   sum(rejected)::bigint AS rejected, sum(stale)::bigint AS stale
            FROM steps GROUP BY ts
        ), workers AS (
            SELECT worker, json_agg({_POINT_JSON}) AS points FROM steps GROUP BY worker
        )
        SELECT (SELECT coalesce(json_agg({_POINT_JSON}), '[]') FROM totals)::text AS total,
               (SELECT coalesce(json_agg(json_build_object('worker', worker, 'points', points)
                                         ORDER BY worker), '[]') FROM workers)::text AS workers
        """,
        start,
        end,
        step_s,
        account,
    )
    assert row is not None
    return row["total"], row["workers"]


async def pool_hashrate(conn: asyncpg.Pool, since: datetime, seconds: float) -> float:
    value = await conn.fetchval(
        "SELECT coalesce(sum(difficulty), 0) * 65536 / $2::float8 FROM pool_buckets"
        " WHERE bucket >= $1 AND result = 'accepted'",
        since,
        seconds,
    )
    return float(value)


async def online(conn: asyncpg.Pool, since: datetime) -> tuple[int, int]:
    """(workers, accounts) with a share since `since`."""
    row = await conn.fetchrow(
        "SELECT count(*), count(DISTINCT split_part(name, '.', 1)) FROM workers WHERE last_share_at >= $1",
        since,
    )
    assert row is not None
    return int(row[0]), int(row[1])


async def share_counts(conn: asyncpg.Pool, since: datetime) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """
        SELECT result, reason, sum(shares)::bigint AS shares, sum(difficulty) AS difficulty
        FROM pool_buckets WHERE bucket >= $1
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
            since,
        )
    )


async def block_counts(conn: asyncpg.Pool) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM blocks GROUP BY status")
    return {r["status"]: int(r["n"]) for r in rows}


async def profiles_now(conn: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT profile, coin, pool, stratum_url, reason, decided_at FROM decisions ORDER BY profile"
        )
    )


async def upstream_states(conn: asyncpg.Pool) -> list[asyncpg.Record]:
    """Each upstream's latest event, newest per upstream (the (upstream, ts) index)."""
    return list(
        await conn.fetch(
            """
        WITH RECURSIVE names AS (  -- a skip scan of the (upstream, ts) index: one probe per upstream
            (SELECT upstream FROM upstream_events ORDER BY upstream LIMIT 1)
            UNION ALL
            SELECT (SELECT upstream FROM upstream_events WHERE upstream > n.upstream
                    ORDER BY upstream LIMIT 1)
            FROM names n WHERE n.upstream IS NOT NULL
        )
        SELECT e.* FROM names n CROSS JOIN LATERAL (
            SELECT id, ts, upstream, event, detail FROM upstream_events
            WHERE upstream = n.upstream ORDER BY ts DESC LIMIT 1
        ) e
        ORDER BY e.upstream
        """
        )
    )


async def recent_failovers(conn: asyncpg.Pool, limit: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """
        SELECT id, ts, upstream, event, detail FROM upstream_events
        WHERE event IN ('failover', 'failback') ORDER BY id DESC LIMIT $1
        """,
            limit,
        )
    )


async def account_workers(
    conn: asyncpg.Pool, account: str, since: datetime, hour_ago: datetime, after: str | None, limit: int
) -> list[asyncpg.Record]:
    """A page of the account's workers (workers_account_idx) with their last day from the rollups."""
    return list(
        await conn.fetch(
            """
        WITH page AS (
            SELECT name, profile, last_share_at FROM workers
            WHERE split_part(name, '.', 1) = $1 AND ($4::text IS NULL OR name > $4)
            ORDER BY name LIMIT $5
        ), day AS (
            SELECT worker, result, reason, sum(shares)::bigint AS shares,
                   sum(difficulty) FILTER (WHERE bucket >= $3) AS hour_difficulty
            FROM share_buckets
            WHERE account = $1 AND bucket >= $2 AND worker IN (SELECT name FROM page)
            GROUP BY 1, 2, 3
        )
        SELECT p.name, p.profile, p.last_share_at,
               coalesce(sum(d.hour_difficulty) FILTER (WHERE d.result = 'accepted'), 0) * 65536 / 3600.0
                   AS hashrate_hs,
               coalesce(sum(d.shares) FILTER (WHERE d.result = 'accepted'), 0)::bigint AS accepted,
               coalesce(sum(d.shares) FILTER (WHERE d.result = 'rejected'), 0)::bigint AS rejected,
               coalesce(sum(d.shares) FILTER (WHERE d.result = 'stale'), 0)::bigint AS stale,
               coalesce((SELECT jsonb_object_agg(reason, n) FROM (
                   SELECT reason, sum(shares)::bigint AS n FROM day
                   WHERE worker = p.name AND result <> 'accepted' GROUP BY reason) r), '{}')
                   AS rejected_by_reason
        FROM page p LEFT JOIN day d ON d.worker = p.name
        GROUP BY p.name, p.profile, p.last_share_at ORDER BY p.name
        """,
            account,
            since,
            hour_ago,
            after,
            limit,
        )
    )


_BAN_COLUMNS = "id, kind, value, reason, created_at, expires_at"


async def bans(conn: asyncpg.Pool, after: int | None, limit: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {_BAN_COLUMNS} FROM bans WHERE ($1::bigint IS NULL OR id > $1) ORDER BY id LIMIT $2",
            after,
            limit,
        )
    )


async def insert_ban(
    conn: asyncpg.Pool, kind: str, value: str, reason: str, expires_in_s: float | None
) -> asyncpg.Record:
    """The ban; banning again what is banned replaces its reason and expiry."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO bans (kind, value, reason, expires_at)
        VALUES ($1, $2, $3, now() + make_interval(secs => $4::float8))
        ON CONFLICT (kind, value) DO UPDATE SET reason = EXCLUDED.reason, expires_at = EXCLUDED.expires_at
        RETURNING {_BAN_COLUMNS}
        """,
        kind,
        value,
        reason,
        expires_in_s,
    )
    assert row is not None
    return row


async def delete_ban(conn: asyncpg.Pool, ban_id: int) -> bool:
    return await conn.execute("DELETE FROM bans WHERE id = $1", ban_id) != "DELETE 0"
