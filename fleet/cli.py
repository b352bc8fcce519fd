"""`qscrypt fleet`: poll the registered ASICs over the cgminer API and serve their metrics.

`qscrypt` hands this package its `[fleet]` table as `args.section` and `[database]` as
`args.database`; the schema is migrated first. `--once` reads every device once and prints what it
read as JSON (for a first check of a device's address and firmware), without the database."""

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

import structlog

from fleet.config import DeviceConfig, FleetConfig

log = structlog.get_logger("fleet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", help="PostgreSQL DSN (overrides database.dsn)")
    parser.add_argument("--once", action="store_true",
                        help="read each configured device once, print the readings as JSON, and exit")
    parser.add_argument("--device", action="append", default=[], metavar="NAME=HOST[:PORT]",
                        help="poll this device too (repeatable); with --once, no config needed")
    parser.add_argument("--metrics-port", type=int, help="overrides fleet.metrics_port (0: none)")


def _device(text: str) -> DeviceConfig:
    name, _, address = text.partition("=")
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "4028")
    try:
        return DeviceConfig(name=name, host=host or address, port=int(port or 4028))
    except ValueError as exc:
        raise SystemExit(f"qscrypt fleet: --device {text!r}: {exc}") from None


def main(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    from qscrypt.settings import load_section

    config = load_section(FleetConfig, dict(args.section), "fleet")
    extra = tuple(_device(d) for d in args.device)
    config = replace(config, devices=(*config.devices, *extra))
    if args.metrics_port is not None:
        config = replace(config, metrics_port=args.metrics_port)
    return once(config) if args.once else serve(config, args)


async def once(config: FleetConfig) -> int:
    from fleet.metrics import FleetMetrics
    from fleet.poller import Poller

    poller = Poller(config, FleetMetrics())
    await poller.refresh_devices()
    await poller.poll_due()
    out = {name: {"ok": s.error is None, "error": s.error,
                  "reading": s.reading.to_json() if s.reading else None} for name, s in poller.states.items()}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0 if all(s.error is None for s in poller.states.values()) else 1


async def serve(config: FleetConfig, args: argparse.Namespace) -> int:
    from qscrypt.db import database_dsn
    from qscrypt.db.migrate import migrate
    from qscrypt.signals import stop_on_signals

    dsn = args.dsn or await asyncio.to_thread(database_dsn, args.database)
    await migrate(dsn)
    with stop_on_signals() as stop:
        await run_fleet(config, dsn, stop)
    return 0


async def run_fleet(config: FleetConfig, dsn: str, stop: asyncio.Event) -> None:
    """The poller on the (migrated) database at `dsn`, and its metrics, until `stop`."""
    import asyncpg
    from prometheus_client import start_http_server

    from fleet.metrics import FleetMetrics
    from fleet.poller import Poller

    metrics = FleetMetrics()
    server = None
    if config.metrics_port:
        try:
            server, _ = start_http_server(config.metrics_port, config.metrics_host, registry=metrics.registry)
            log.info("fleet.metrics", url=f"http://{config.metrics_host}:{config.metrics_port}/metrics")
        except OSError as exc:
            # Polling (and the readings the API serves) does not need the metrics port.
            log.error("fleet.metrics_unavailable", port=config.metrics_port, error=str(exc))
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=min(4, config.concurrency))
    try:
        await Poller(config, metrics, pool).run(stop)
    finally:
        await pool.close()
        if server is not None:
            server.shutdown()
