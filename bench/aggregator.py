"""Time one full aggregator run: every source over HTTP, reconciliation, profitability, writes.

    python -m bench.aggregator [--runs N] [--dsn DSN]

The sources are the recorded fixtures of tests/fixtures, served by a local aiohttp server (the
same one the tests use), so the figure is the aggregator's own cost: concurrent fetches through
the real client path, parsing, reconciliation and one PostgreSQL transaction. The database is
a fresh embedded server (durable, as in production) unless --dsn names one; the schema is
migrated first. Target: under 2 s per run. Prints the median of N runs after one warm-up.
"""

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import structlog

from aggregator import run_once
from qscrypt.db.embedded import EmbeddedPostgres
from qscrypt.db.migrate import migrate
from tests.aggregator.fixture_server import ENVIRON, FixtureServer, fixture_config

TARGET_S = 2.0


async def bench(dsn: str, runs: int) -> list[float]:
    await migrate(dsn)
    server = FixtureServer()
    await server.start()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        config = fixture_config(server)
        await pool.execute("TRUNCATE coins, pools, hardware, source_observations, source_status CASCADE")
        report = await run_once(config, pool, environ=ENVIRON)  # warm-up: connections, statements
        if not report.ok:
            raise SystemExit(f"the warm-up run failed:\n{report.summary()}")
        timings = []
        for _ in range(runs):
            began = time.perf_counter()
            report = await run_once(config, pool, environ=ENVIRON)
            timings.append(time.perf_counter() - began)
        print(report.summary())
        return timings
    finally:
        await pool.close()
        await server.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aggregator", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs after one warm-up (default 9)")
    parser.add_argument("--dsn", help="PostgreSQL DSN; default: a fresh embedded server in a temp dir")
    args = parser.parse_args()
    # The runs log each outlier and warning of the fixtures; the figure is what matters here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory(prefix="qscrypt-bench-") as tmp:
        server = None
        dsn = args.dsn
        if dsn is None:
            server = EmbeddedPostgres(Path(tmp) / "pg")
            server.start()
            dsn = server.create_database("bench")
        try:
            timings = asyncio.run(bench(dsn, args.runs))
        finally:
            if server is not None:
                server.stop()
    median = statistics.median(timings)
    database = "given DSN" if args.dsn else "embedded PostgreSQL"
    print(
        f"aggregator full run (9 sources over local HTTP, {database}): "
        f"median {median * 1000:.1f} ms over {len(timings)} runs "
        f"(min {min(timings) * 1000:.1f}, max {max(timings) * 1000:.1f}); target < {TARGET_S:.0f} s: "
        f"{'met' if median < TARGET_S else 'MISSED'}"
    )
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
