"""A worker told to stop mid-task hands the unhashed rest back; the next worker hashes exactly that."""

from __future__ import annotations

import asyncio

from qscrypt.bus.messages import Returned, Task
from tests.kafka.conftest import StackFactory
from tests.kafka.harness import assert_hashed_once, wait_for


async def test_a_stopped_worker_hands_its_range_back_and_nothing_is_hashed_twice(stack: StackFactory) -> None:
    s = await stack()
    # Ranges of ~2-4 s at one CPU thread of SIMD scrypt (~40 kH/s here): a stop lands mid-task.
    coordinator = await s.add_coordinator(initial_nonces=100_000, min_nonces=100_000, max_nonces=100_000)
    first = await s.add_worker("w-first")
    await wait_for(lambda: first._running is not None, 20, "the first worker hashing")
    await asyncio.sleep(0.5)
    running = next(r for r in s.workers if r.worker is first)
    running.stop.set()
    await asyncio.wait_for(running.task, 5)
    assert s.results is not None and s.tasks is not None
    await wait_for(lambda: bool(s.results.of(Returned)), 10, "the hand-back")
    [back] = s.results.of(Returned)
    assert back.worker == "w-first" and 0 < back.hashes_done < back.nonce_count and back.unhashed
    assert first.stats.tasks_returned >= 1
    await s.add_worker("w-second")
    await s.drain(60)
    await asyncio.sleep(0.5)  # the observers read the last results
    assert coordinator.current is not None and coordinator.book.stats.returned >= 1
    epoch = coordinator.current.epoch
    tasks = [t for t in s.tasks.of(Task) if t.id.epoch == epoch]
    reissued = [t for t in tasks if (t.extranonce2, t.nonce_start) == (back.extranonce2, back.unhashed[0][0])]
    assert reissued, "the handed-back piece was never issued again"
    assert_hashed_once(tasks, s.dones(coordinator, epoch), s.results.of(Returned))
