"""The `qscrypt` launcher: `miner` and `worker` start without loading every package; the rest is `cli.main`.

A Qubic client starts its idle command at every idle phase and wants it hashing at once. Importing
`cli.main` loads every subcommand's package (the proxy, the API, the aggregator and their
dependencies): ~0.65 s of CPU against ~0.25 s for the worker alone, measured here. So the two idle
commands, given first on the command line, are parsed and run from their own package only, as
`cli.main` would run them with no config file (logging from the environment); anything else, a
`-c CONFIG` included, goes through `cli.main` unchanged. Like `cli.proxy_worker`, apart from `cli.main`
for the same reason.

The client may end a phase at any moment, even while the command is still loading: a SIGINT or
SIGTERM that comes before the command installs its own handlers ends it at once with exit 0 (nothing
was hashed yet, so nothing is owed). Run as the process's entry point, a finished command leaves
without the interpreter's teardown, which on a busy machine took a few hundred ms of a stop: the
command has closed its connections and engine itself by then.
"""

import argparse
import os
import signal
import sys
from types import FrameType, ModuleType

LEAN = ("miner", "worker")


class _StoppedEarly(KeyboardInterrupt):
    """SIGINT or SIGTERM before the command took over its signals. A KeyboardInterrupt, so that an event
    loop it interrupts passes it on rather than logging it as a callback's error."""


def _stop_early(signum: int, frame: FrameType | None) -> None:
    raise _StoppedEarly


def main(argv: list[str] | None = None) -> int:
    entry_point = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if not (argv[:1] and argv[0] in LEAN):
        from cli.main import main as full

        return full(argv)
    if not entry_point:
        return _lean(argv[0], argv[1:])
    previous = {sig: signal.signal(sig, _stop_early) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = _lean(argv[0], argv[1:])
    except _StoppedEarly:
        code = 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _lean(command: str, argv: list[str]) -> int:
    import asyncio

    from cli.runner import run
    from qscrypt.config import LoggingConfig
    from qscrypt.log import configure_logging
    from qscrypt.settings import ConfigError, load_section

    module = _command(command)
    parser = argparse.ArgumentParser(prog=f"qscrypt {command}")
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        logging = load_section(LoggingConfig, {}, "logging")
    except ConfigError as exc:
        print(f"qscrypt: {exc}", file=sys.stderr)
        return 2
    configure_logging(logging.level, logging.format)
    args.database, args.section = None, None  # what cli.main hands these two without a config file
    try:
        result = module.main(args)
        if asyncio.iscoroutine(result):
            return int(run(lambda: result) or 0)
        return int(result or 0)
    except _StoppedEarly:
        return 0
    except KeyboardInterrupt:  # a second Ctrl-C while the command was already stopping
        return 130


def _command(name: str) -> ModuleType:
    """The package of a lean command, imported only when it runs (plain imports: the import
    contracts see them)."""
    if name == "miner":
        import backends.cli

        return backends.cli
    import backends.worker

    return backends.worker


if __name__ == "__main__":
    main()
