"""`qscrypt api`: serve the decision API.

`qscrypt` loads the TOML file and hands this package its `[api]` table as `args.section` (it
configures the API: `api.config.ApiConfig`) and `[database]` as `args.database` (where the data is:
the embedded server when no DSN is set). The schema is migrated first, so a fresh machine needs no other step.
"""

import argparse
import asyncio
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

import structlog
from aiohttp import web

from api.config import ApiConfig
from qscrypt.signals import stop_on_signals

log = structlog.get_logger("api")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (overrides api.host)")
    parser.add_argument("--port", type=int, help="TCP port (overrides api.port)")
    parser.add_argument("--dsn", help="PostgreSQL DSN (overrides database.dsn)")


def main(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    from qscrypt.settings import load_section

    config = load_section(ApiConfig, dict(args.section), "api")
    if args.host is not None:
        config = replace(config, host=args.host)
    if args.port is not None:
        config = replace(config, port=args.port)
    return serve(config, args)


async def serve(config: ApiConfig, args: argparse.Namespace) -> int:
    from api.app import create_app
    from qscrypt.db import database_dsn
    from qscrypt.db.migrate import migrate

    dsn = args.dsn or await asyncio.to_thread(database_dsn, args.database)
    await migrate(dsn)
    runner = web.AppRunner(create_app(config, dsn), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        log.info(
            "api listening",
            url=f"http://{config.host}:{config.port}/v1/decisions",
            writes="enabled" if config.write_token() else "disabled: set api.token or QSCRYPT_API_TOKEN",
        )
        with stop_on_signals() as stop:
            await stop.wait()
    finally:
        await runner.cleanup()
    return 0
