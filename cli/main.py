"""The `qscrypt` command: one entry point, a subcommand per job.

The composition root: the one place that knows every package. It loads the configuration, hands
each package its own section and starts what was asked for; nothing imports it.
"""

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

import aggregator.cli
import api.cli
import backends.cli
import backends.worker
import proxy.spill
from bench.scrypt import main as bench_main
from cli.config import Config, load_config
from cli.stack import run_stack
from proxy.app import run_proxy
from proxy.coordinator.config import CoordinatorConfig
from proxy.supervisor import CONTROL_FD_ENV, DSN_ENV, WORKER_ENV, run_supervisor, worker_command
from qscrypt.db import database_dsn
from qscrypt.db.migrate import migrate
from qscrypt.log import configure_logging, get_logger
from qscrypt.settings import ConfigError, load_section
from qscrypt.signals import stop_on_signals


def _run(coro_factory: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        import uvloop

        return uvloop.run(coro_factory())
    except ImportError:
        return asyncio.run(coro_factory())


def cmd_migrate(config: Config, args: argparse.Namespace) -> int:
    dsn = database_dsn(config.database)
    applied = asyncio.run(migrate(dsn))
    get_logger().info("migrate.done", applied=applied or "nothing to apply")
    return 0


def cmd_proxy(config: Config, args: argparse.Namespace) -> int:
    # A worker of a multi-process proxy gets its database from the supervisor (already migrated).
    dsn = database_dsn(config.database) if not args.no_database and WORKER_ENV not in os.environ else None

    coordinator = None
    if config.coordinator:
        coordinator = load_section(CoordinatorConfig, config.coordinator, "coordinator")

    async def main() -> int:
        if dsn:
            await migrate(dsn)
        with stop_on_signals() as stop:
            if config.proxy.workers > 1:
                await run_supervisor(config.proxy, worker_command(args.config, args.no_database), dsn, stop)
            else:
                await run_proxy(config.proxy, dsn, stop, coordinator)
        return 0

    async def worker(index: int, link_fd: int) -> int:
        # Ctrl-C reaches every process of the group; the supervisor stops its workers with SIGTERM,
        # in order, so a worker does not stop on its own.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # The coordinator has its own upstream session: one per proxy, in its first worker.
        with stop_on_signals((signal.SIGTERM,)) as stop:
            await run_proxy(config.proxy, os.environ.get(DSN_ENV), stop,
                            coordinator if index == 0 else None, (index, link_fd))
        return 0

    if WORKER_ENV in os.environ:
        index = int(os.environ[WORKER_ENV].split("/")[0])
        link_fd = int(os.environ[CONTROL_FD_ENV])
        return _run(lambda: worker(index, link_fd))
    return _run(main)


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    async def stack() -> int:
        with stop_on_signals() as stop:
            return await run_stack(config, args.data_dir, args.with_miner, stop)

    return _run(stack)


def cmd_bench(config: Config, args: argparse.Namespace) -> int:
    return bench_main([])


class Subcommand(Protocol):
    """A subcommand a package owns: it adds its own arguments, and `main(args)` runs it (sync or
    async) with `args.database` (the `[database]` section) and `args.section` (its own section)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def main(self, args: argparse.Namespace) -> int | Coroutine[Any, Any, int]: ...


Command = Callable[[Config, argparse.Namespace], int]


def _delegate(module: Subcommand, section: Callable[[Config], object]) -> Command:
    def run(config: Config, args: argparse.Namespace) -> int:
        args.database = config.database
        args.section = section(config)
        result = module.main(args)
        if asyncio.iscoroutine(result):
            return int(_run(lambda: result) or 0)
        return int(result or 0)

    return run


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
    _add_delegated(sub, "spill", proxy.spill, lambda c: c.proxy,
                   "show (status) or write into PostgreSQL (replay) the shares and blocks waiting on disk")
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

