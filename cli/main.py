"""The `qscrypt` command: one entry point, a subcommand per job.

The composition root: the one place that knows every package. It loads the configuration, hands
each package its own section and starts what was asked for; nothing imports it.
"""

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

import aggregator.cli
import api.cli
import backends.cli
import backends.qubic
import backends.worker
import fleet.cli
import payouts.cli
import proxy.spill
from bench.scrypt import main as bench_main
from cli.config import Config, load_config
from cli.proxy_worker import worker_command
from cli.runner import run
from cli.stack import run_stack
from proxy.app import run_proxy
from proxy.coordinator.config import CoordinatorConfig
from proxy.supervisor import run_supervisor
from qscrypt.db import database_dsn
from qscrypt.db.migrate import migrate
from qscrypt.log import configure_logging, get_logger
from qscrypt.settings import ConfigError, load_section
from qscrypt.signals import stop_on_signals


def cmd_migrate(config: Config, args: argparse.Namespace) -> int:
    dsn = database_dsn(config.database)
    applied = asyncio.run(migrate(dsn))
    get_logger().info("migrate.done", applied=applied or "nothing to apply")
    return 0


def cmd_proxy(config: Config, args: argparse.Namespace) -> int:
    dsn = None if args.no_database else database_dsn(config.database)

    coordinator = None
    if config.coordinator:
        coordinator = load_section(CoordinatorConfig, config.coordinator, "coordinator")

    async def main() -> int:
        if dsn:
            await migrate(dsn)
        with stop_on_signals() as stop:
            if config.proxy.workers > 1:
                await run_supervisor(config.proxy, worker_command(args.config), dsn, stop)
            else:
                await run_proxy(config.proxy, dsn, stop, coordinator)
        return 0

    return run(main)


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    async def stack() -> int:
        with stop_on_signals() as stop:
            return await run_stack(config, args.data_dir, args.with_miner, stop)

    return run(stack)


def cmd_bench(config: Config, args: argparse.Namespace) -> int:
    return bench_main([])


class Subcommand(Protocol):
    """A subcommand a package owns: it adds its own arguments, and `main(args)` runs it (sync or
    async) with `args.database` (the `[database]` section) and `args.section` (its own section)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def main(self, args: argparse.Namespace) -> int | Coroutine[Any, Any, int]: ...


Command = Callable[[Config, argparse.Namespace], int]


def _delegate(module: Subcommand, section: Callable[[Config], object]) -> Command:
    def command(config: Config, args: argparse.Namespace) -> int:
        args.database = config.database
        args.section = section(config)
        result = module.main(args)
        if asyncio.iscoroutine(result):
            return int(run(lambda: result) or 0)
        return int(result or 0)

    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qscrypt",
                                     description="Profit-switching Stratum proxy for scrypt coins")
    parser.add_argument("-c", "--config", type=Path, help="TOML config file (see qscrypt.example.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("proxy", help="run the Stratum proxy")
    p.add_argument("--no-database", action="store_true", help="keep share accounting in memory only")
    p.set_defaults(func=cmd_proxy)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("run", help="start the whole local stack on embedded defaults")
    p.add_argument("--data-dir", type=Path, default=Path("var"), help="where the local stack keeps its data")
    p.add_argument("--no-miner", dest="with_miner", action="store_false",
                   help="do not attach the built-in miner")
    p.set_defaults(func=cmd_run)

    _add_delegated(sub, "miner", backends.cli, lambda c: None, "run the built-in miner (a Stratum client)")
    _add_delegated(sub, "aggregator", aggregator.cli, lambda c: c.aggregator,
                   "collect market and network data")

    p = sub.add_parser("bench", help="benchmark the hashing engines (checks the vectors first)")
    p.set_defaults(func=cmd_bench)

    _add_delegated(sub, "api", api.cli, lambda c: c.api, "run the decision API")
    _add_delegated(sub, "worker", backends.worker, lambda c: None, "run a Kafka hashing worker")
    _add_delegated(sub, "qubic", backends.qubic, lambda c: None,
                   "run the miner or worker in a Qubic client's idle phases (setup, check)")
    _add_delegated(sub, "spill", proxy.spill, lambda c: c.proxy,
                   "show (status) or write into PostgreSQL (replay) the shares and blocks waiting on disk")
    _add_delegated(sub, "fleet", fleet.cli, lambda c: c.fleet,
                   "poll the registered ASICs over the cgminer API and export their metrics")
    _add_delegated(sub, "payouts", payouts.cli, lambda c: c.payouts,
                   "pay miners: settle earnings and send payouts (run), record pool payments")
    return parser


def _add_delegated(sub: Any, name: str, module: Subcommand, section: Callable[[Config], object],
                   help_text: str) -> None:
    p = sub.add_parser(name, help=help_text)
    module.add_arguments(p)
    p.set_defaults(func=_delegate(module, section))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"qscrypt: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.logging.level, config.logging.format)
    try:
        return int(args.func(config, args) or 0)
    except ConfigError as exc:
        print(f"qscrypt: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

