"""The poll loop shared by the solo upstream and the aux chains, driven by a scripted poll."""

import asyncio

import pytest
import structlog

from proxy.upstream.polling import FIRST_RETRY_S, backoff_s, poll_forever


class _Boom(Exception):
    pass


def test_backoff_doubles_from_the_first_retry_to_the_ceiling() -> None:
    assert [backoff_s(n, 10.0) for n in (1, 2, 3, 4)] == [FIRST_RETRY_S * 2**k for k in range(4)]
    assert backoff_s(10, 10.0) == 10.0
    assert backoff_s(10_000, 10.0) == 10.0  # no overflow however long the daemon stays down


async def test_failures_back_off_then_recovery_is_reported_once() -> None:
    outcomes: list[Exception | None] = [_Boom("a"), KeyError("bug"), _Boom("b"), None, None]
    calls: list[str] = []
    done = asyncio.Event()

    async def poll() -> None:
        outcome = outcomes.pop(0)
        if not outcomes:
            done.set()
        if outcome is not None:
            raise outcome

    def failed(exc: Exception, failures: int) -> float:
        calls.append(f"failed {type(exc).__name__} {failures}")
        return 0.0

    def recovered(failures: int) -> None:
        calls.append(f"recovered {failures}")

    task = asyncio.create_task(poll_forever(
        poll, asyncio.Event(), interval_s=0.0, expected=(_Boom,), failed=failed, recovered=recovered,
        log=structlog.get_logger(), event="test"))
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The unexpected KeyError counts as a failure like the expected ones and does not end the loop.
    assert calls == ["failed _Boom 1", "failed KeyError 2", "failed _Boom 3", "recovered 3"]


async def test_wake_cuts_the_wait_short() -> None:
    wake = asyncio.Event()
    polled = asyncio.Queue[float]()
    loop = asyncio.get_running_loop()

    async def poll() -> None:
        polled.put_nowait(loop.time())

    task = asyncio.create_task(poll_forever(
        poll, wake, interval_s=3600.0, expected=(), failed=lambda e, n: 0.0, recovered=lambda n: None,
        log=structlog.get_logger(), event="test"))
    first = await asyncio.wait_for(polled.get(), 5)
    wake.set()
    second = await asyncio.wait_for(polled.get(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert second - first < 1.0
