"""One worker process of a multi-process proxy, as its supervisor starts it
(`python -m cli.proxy_worker -c CONFIG`: `worker_command`).

Apart from `cli.main` so that each worker loads the proxy alone, not every package's subcommand
(about 22 MiB less per worker process). The supervisor passes the worker's index, its control
socket and the database DSN (already migrated) in the environment.
"""

import argparse
import os
import signal
import sys
from pathlib import Path

from cli.config import load_config
from cli.runner import run
from proxy.app import run_proxy
from proxy.coordinator.config import CoordinatorConfig
from proxy.supervisor import CONTROL_FD_ENV, DSN_ENV, WORKER_ENV
from qscrypt.log import configure_logging
from qscrypt.settings import ConfigError, load_section
from qscrypt.signals import stop_on_signals


def worker_command(config_path: Path | None) -> list[str]:
    """How the supervisor starts a worker: this program (the proxy alone, not every subcommand),
    told which worker it is by its environment."""
    command = [sys.executable, "-m", "cli.proxy_worker"]
    if config_path is not None:
        command += ["-c", str(config_path)]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qscrypt proxy worker")
    parser.add_argument("-c", "--config", type=Path)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        coordinator = load_section(CoordinatorConfig, config.coordinator, "coordinator") \
            if config.coordinator else None
    except ConfigError as exc:
        print(f"qscrypt: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.logging.level, config.logging.format)
    index = int(os.environ[WORKER_ENV].split("/")[0])
    link_fd = int(os.environ[CONTROL_FD_ENV])

    async def worker() -> int:
        # The supervisor stops its workers with SIGTERM, in order, so a worker does not stop on
        # Ctrl-C of its own (it runs in its own session; this covers one started by hand).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # The coordinator has its own upstream session: one per proxy, in its first worker.
        with stop_on_signals((signal.SIGTERM,)) as stop:
            await run_proxy(config.proxy, os.environ.get(DSN_ENV), stop,
                            coordinator if index == 0 else None, (index, link_fd))
        return 0

    return run(worker)


if __name__ == "__main__":
    sys.exit(main())
