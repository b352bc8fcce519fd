"""The dashboard's API calls on a month of rollups: latency of every call behind the pool and
account pages.

    python -m bench.dashboard [--days 30] [--workers 10000] [--accounts 1000] [--requests 300] [--dsn DSN]

A fresh embedded PostgreSQL (non-durable: the reads do not depend on it) is migrated and filled
with --days of 5-minute buckets (`share_buckets`, as the rollup trigger writes them) for
--workers workers (`acctNNNN.rigN`) spread over --accounts accounts, every worker active in every
bucket (the worst case), 2 % of worker-buckets with rejected and 1 % with stale shares; the
pool-wide buckets are aggregated from those; plus 2,000 blocks, 5,000 upstream events and 5,000
switches. The indexes are built after the fill and the tables vacuumed, as they would be after a
month of autovacuum. The API runs in this process; each call is made --requests times one after
another (a random account each time) after a warm-up, and the client-side latency is recorded.
Reference, same run: GET /healthz (no database): what HTTP and aiohttp cost on this machine.
Target (issue 17): p99 <= 50 ms for every call behind the pool and account pages.
"""

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from api.app import create_app
from api.config import ApiConfig
from qscrypt.db.embedded import EmbeddedPostgres
from qscrypt.db.migrate import migrate

TARGET_P99_MS = 50.0
BUCKET_S = 300

# Written in one statement per day: every worker in every bucket, accepted; a few rejected and stale.
_FILL_DAY = """
INSERT INTO share_buckets (bucket, worker, account, result, reason, shares, difficulty, last_share_at)
SELECT b, 'acct' || lpad((w % $4)::text, 4, '0') || '.rig' || (w / $4)::text,
       'acct' || lpad((w % $4)::text, 4, '0'), r.result, r.reason,
       r.shares, r.shares * 64.0, b + interval '4 minutes'
FROM generate_series($1::timestamptz, $2::timestamptz - interval '5 minutes', interval '5 minutes') AS b,
     generate_series(0, $3 - 1) AS w,
     LATERAL (VALUES ('accepted', '', 5 + (w + extract(epoch FROM b)::bigint / 300) % 4),
                     ('rejected', 'low difficulty', 1),
                     ('stale', 'stale job', 1)) AS r (result, reason, shares)
WHERE r.result = 'accepted'
   OR (r.result = 'rejected' AND (w * 7 + extract(epoch FROM b)::bigint / 300) % 50 = 0)
   OR (r.result = 'stale' AND (w * 13 + extract(epoch FROM b)::bigint / 300) % 100 = 0)
"""

_INDEXES = ("share_buckets_pkey", "share_buckets_account_idx")


async def fill(dsn: str, days: int, workers: int, accounts: int) -> dict[str, float]:
    took: dict[str, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        definitions = {
            r["indexname"]: r["indexdef"]
            for r in await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'share_buckets'"
            )
        }
        assert set(definitions) == set(_INDEXES), definitions
        await conn.execute("ALTER TABLE share_buckets DROP CONSTRAINT share_buckets_pkey")
        await conn.execute("DROP INDEX share_buckets_account_idx")
        now = await conn.fetchval(
            "SELECT date_bin('5 minutes', now(), TIMESTAMPTZ 'epoch') + interval '5 minutes'"
        )
        began = time.perf_counter()
        for day in range(days, 0, -1):
            start = await conn.fetchval("SELECT $1::timestamptz - make_interval(days => $2)", now, day)
            end = await conn.fetchval("SELECT $1::timestamptz + interval '1 day'", start)
            await conn.execute(_FILL_DAY, start, end, workers, accounts)
            print(
                f"  filled day {days - day + 1}/{days} ({time.perf_counter() - began:.0f} s)", file=sys.stderr
            )
        took["fill share_buckets"] = time.perf_counter() - began
        began = time.perf_counter()
        await conn.execute("""
            INSERT INTO pool_buckets (bucket, upstream, result, reason, shares, difficulty)
            SELECT bucket, CASE WHEN account < 'acct0500' THEN 'pool-a' ELSE 'pool-b' END, result, reason,
                   sum(shares), sum(difficulty)
            FROM share_buckets GROUP BY 1, 2, 3, 4""")
        took["aggregate pool_buckets"] = time.perf_counter() - began
        began = time.perf_counter()
        await conn.execute("ALTER TABLE share_buckets ADD PRIMARY KEY (worker, bucket, result, reason)")
        await conn.execute(definitions["share_buckets_account_idx"])
        took["build indexes"] = time.perf_counter() - began
        await conn.execute(
            """
            INSERT INTO workers (name, accepted, last_share_at, last_seen)
            SELECT 'acct' || lpad((w % $2)::text, 4, '0') || '.rig' || (w / $2)::text, 1000,
                   now() - make_interval(secs => w % 900), now()
            FROM generate_series(0, $1 - 1) AS w""",
            workers,
            accounts,
        )
        await conn.execute("""
            INSERT INTO blocks (coin, height, hash, worker, status, found_at)
            SELECT 'LTC', h, lpad(to_hex(h), 64, '0'), 'acct0001.rig0',
                   (ARRAY['pending', 'accepted', 'accepted', 'orphaned'])[1 + h % 4],
                   now() - make_interval(mins => h)
            FROM generate_series(1, 2000) AS h""")
        await conn.execute("""
            INSERT INTO upstream_events (ts, upstream, event, detail)
            SELECT now() - make_interval(mins => i), 'pool-' || (i % 4)::text,
                   (ARRAY['up', 'down', 'failover', 'failback'])[1 + i % 4], '{}'
            FROM generate_series(1, 5000) AS i""")
        await conn.execute("""
            INSERT INTO switch_events (ts, profile, worker_count, from_upstream, to_upstream, reason)
            SELECT now() - make_interval(mins => i), 'default', 100, 'pool-a', 'pool-b', 'more profitable'
            FROM generate_series(1, 5000) AS i""")
        began = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        took["vacuum analyze"] = time.perf_counter() - began
        rows = await conn.fetchval("SELECT count(*) FROM share_buckets")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('share_buckets'))")
        print(f"  share_buckets: {rows:,} rows, {size} with indexes", file=sys.stderr)
        took["share_buckets rows"] = float(rows)
    finally:
        await conn.close()
    return took


async def measure(dsn: str, accounts: int, requests: int) -> dict[str, list[float]]:
    app = create_app(ApiConfig(rate_limit_per_s=0), dsn)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    rng = random.Random(17)

    def account() -> str:
        return f"acct{rng.randrange(accounts):04d}"

    calls = {
        "reference: GET /healthz": lambda: "/healthz",
        "pool: GET /v1/overview": lambda: "/v1/overview",
        "pool: GET /v1/hashrate?window=24h": lambda: "/v1/hashrate?window=24h",
        "pool: GET /v1/hashrate?window=7d": lambda: "/v1/hashrate?window=7d",
        "pool: GET /v1/blocks?limit=10": lambda: "/v1/blocks?limit=10",
        "account: GET /v1/accounts/{a}/workers": lambda: f"/v1/accounts/{account()}/workers?limit=200",
        "account: GET /v1/accounts/{a}/hashrate?window=24h": lambda: (
            f"/v1/accounts/{account()}/hashrate?window=24h"
        ),
        "account: GET /v1/accounts/{a}/hashrate?window=7d": lambda: (
            f"/v1/accounts/{account()}/hashrate?window=7d"
        ),
    }
    results: dict[str, list[float]] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for name, path in calls.items():
                for _ in range(max(5, requests // 10)):  # warm-up
                    async with session.get(base + path()) as r:
                        assert r.status == 200, (path(), r.status, await r.text())
                        await r.read()
                times = []
                for _ in range(requests):
                    began = time.perf_counter()
                    async with session.get(base + path()) as r:
                        await r.read()
                    times.append((time.perf_counter() - began) * 1000)
                    assert r.status == 200
                results[name] = times
    finally:
        await runner.cleanup()
    return results


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(results: dict[str, list[float]], took: dict[str, float], args: argparse.Namespace) -> bool:
    print(
        f"dashboard API, {args.days} days of 5-minute buckets, {args.workers:,} workers in "
        f"{args.accounts:,} accounts ({took.get('share_buckets rows', 0):,.0f} share_buckets rows), "
        f"{args.requests} sequential requests per call:"
    )
    for step in ("fill share_buckets", "aggregate pool_buckets", "build indexes", "vacuum analyze"):
        if step in took:
            print(f"  setup, {step}: {took[step]:.0f} s")
    print(f"  {'call':<52} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    met = True
    for name, times in results.items():
        p99 = p(times, 0.99)
        if not name.startswith("reference"):
            met = met and p99 <= TARGET_P99_MS
        print(f"  {name:<52} {statistics.median(times):8.2f} {p99:8.2f} {max(times):8.2f}")
    print(
        f"target p99 <= {TARGET_P99_MS:.0f} ms per call behind the pool and account pages: "
        + ("met" if met else "NOT met")
    )
    return met


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--dsn", help="an empty PostgreSQL database; default: a fresh embedded server")
    args = parser.parse_args()
    if args.accounts > 10_000 or args.workers < args.accounts:
        parser.error("--accounts must be at most 10,000 (names are acct0000-acct9999) and at most --workers")

    async def run(dsn: str) -> bool:
        await migrate(dsn)
        took = await fill(dsn, args.days, args.workers, args.accounts)
        return report(await measure(dsn, args.accounts, args.requests), took, args)

    if args.dsn:
        return 0 if asyncio.run(run(args.dsn)) else 1
    with tempfile.TemporaryDirectory(prefix="qscrypt-bench-dashboard-") as name:
        server = EmbeddedPostgres(Path(name) / "pg", durable=False)
        server.start()
        try:
            return 0 if asyncio.run(run(server.create_database("bench"))) else 1
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
