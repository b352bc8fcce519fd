"""structlog set-up: JSON lines when stderr is not a terminal, human-readable when it is."""

import logging
import sys
from typing import Literal

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write per line: print() writes the line and its newline apart, so the supervisor and its
        # workers, sharing one stderr, interleaved their lines in a shared log file or journal.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=_LEVELS[level], stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


def get_logger(**context: object) -> structlog.stdlib.BoundLogger:
    """A logger with context bound (connection, worker, upstream): every line it writes carries it.
    Lazy until its first line, so that one made at import, before `configure_logging`, still
    writes in the configured format (binding at once fixed the default console renderer on it)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(**context)
    return logger
