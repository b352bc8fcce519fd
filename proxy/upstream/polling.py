"""The poll loop of a source behind a coin daemon's RPC (the solo upstream, each aux chain): poll,
back off after failures, wake early when asked. The sources say what a failure means to them."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

FIRST_RETRY_S = 0.25
"""The first wait after a failure; calls to a daemon are cheap and a solo miner loses blocks while
the source waits, so retries start fast and double."""


def backoff_s(failures: int, ceiling_s: float) -> float:
    """The wait after `failures` failed polls in a row: FIRST_RETRY_S doubled each time, to a ceiling."""
    return min(FIRST_RETRY_S * 2.0 ** min(failures - 1, 16), ceiling_s)


async def poll_forever(
    poll: Callable[[], Awaitable[None]],
    wake: asyncio.Event,
    *,
    interval_s: float,
    expected: tuple[type[Exception], ...],
    failed: Callable[[Exception, int], float],
    recovered: Callable[[int], None],
    log: structlog.stdlib.BoundLogger,
    event: str,
) -> None:
    """Call `poll` every `interval_s`, or at once when `wake` is set. A failure calls
    `failed(exc, failures in a row)`, which says how long to wait; the first success after failures
    calls `recovered(failures)`. An unexpected exception is a bug: logged with its traceback as
    `{event}.unexpected_error` and retried like a failure, never ending the task silently."""
    failures = 0
    while True:
        wake.clear()
        try:
            await poll()
        except expected as exc:
            failures += 1
            delay = failed(exc, failures)
        except Exception as exc:
            log.exception(f"{event}.unexpected_error")
            failures += 1
            delay = failed(exc, failures)
        else:
            if failures:
                recovered(failures)
            failures = 0
            delay = interval_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)
