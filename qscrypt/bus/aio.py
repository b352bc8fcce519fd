"""Helpers the bus's users share: how long to back off after failures in a row, and two asyncio
helpers about Python 3.11's cancellation edge cases."""

import asyncio
import contextlib
from collections.abc import Iterable, Sequence


def backoff_s(steps: Sequence[float], failures: int) -> float:
    """The wait after `failures` failures in a row: each step in turn, then the last one for ever."""
    return steps[min(failures, len(steps) - 1)]


async def wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Return when `event` is set or after `timeout_s`, whichever is first."""
    # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that races the event.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], rounds: int = 5) -> None:
    """Cancel `tasks` and wait until they are done.

    Cancels again if one is still running after a second: code awaiting 3.11's `wait_for` (the
    Stratum client does) can swallow a cancel that lands as its inner future completes, and a task
    that lost its cancel would otherwise keep a shutdown waiting for ever.
    """
    pending = [task for task in tasks if not task.done()]
    for _ in range(rounds):
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
        pending = [task for task in pending if not task.done()]
