"""`qscrypt aggregator run-once` and `qscrypt aggregator --every SECONDS`.

`qscrypt` loads the TOML file (`-c`) and hands this package its `[aggregator]` table as
`args.section` (it configures the collectors) and `[database]` as `args.database` (where to write:
the embedded server when no DSN is set). The schema is migrated first: it is idempotent, and a fresh machine
then needs no separate step.
"""

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from typing import Any

import asyncpg

from aggregator.config import AggregatorConfig
from aggregator.run import run_every, run_once


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", nargs="?", choices=["run-once"],
        help="run-once: one run; exit 0 when every source answered, else 1 with a per-source summary",
    )  # fmt: skip
    parser.add_argument(
        "--every", type=float, metavar="SECONDS",
        help="run forever, one run every SECONDS (default: aggregator.interval_s from the config)",
    )  # fmt: skip
    parser.add_argument("--dsn", help="PostgreSQL DSN (overrides database.dsn)")


def load_aggregator_config(
    section: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> AggregatorConfig:
    """The `[aggregator]` TOML table as an AggregatorConfig; ConfigError names a bad key."""
    from qscrypt.settings import load_section

    env = os.environ if environ is None else environ
    return load_section(AggregatorConfig, dict(section), "aggregator", env)


async def main(args: argparse.Namespace) -> int:
    from qscrypt.db import database_dsn
    from qscrypt.db.migrate import migrate

    aggregator_config = load_aggregator_config(args.section)
    dsn = args.dsn or await asyncio.to_thread(database_dsn, args.database)
    await migrate(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        if args.action == "run-once":
            report = await run_once(aggregator_config, pool)
            print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
            return 0 if report.ok else 1
        await run_every(aggregator_config, pool, args.every or aggregator_config.interval_s)
        return 0
    finally:
        await pool.close()
