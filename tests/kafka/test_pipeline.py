"""The work pipeline end to end, on the in-process bus and on the real broker alike:
PoolServer -> coordinator -> bus -> CPU workers -> results -> coordinator -> shares the pool accepts."""

from __future__ import annotations

import asyncio
import struct
import time
from collections import Counter

import pytest

from mining.hashing import hash_to_int, scrypt_pow
from proxy.config import ProxyConfig
from proxy.coordinator import PostgresCursorStore, run_coordinator
from proxy.coordinator.store import StoreError
from qscrypt.bus.messages import Share, TaskId, coordinator_key, encode
from tests.kafka.conftest import StackFactory
from tests.kafka.harness import announce_hard_job, assert_exact_cover, coordinator_config, wait_for
from tests.stratum_peers import Submission


def _accepted(submissions: list[Submission]) -> int:
    return sum(s.accepted for s in submissions)


async def test_shares_reach_the_pool_and_workers_are_credited(stack: StackFactory) -> None:
    s = await stack()
    coordinator = await s.add_coordinator(coordinator_id=5)
    await s.add_worker("w-a")
    await s.add_worker("w-b")
    await wait_for(lambda: _accepted(s.pool.submissions) >= 6, 30, "six accepted shares at the pool")

    submissions = s.pool.submissions
    assert all(sub.accepted for sub in submissions), "the pool refused a share the coordinator forwarded"
    assert len({(sub.extranonce2, sub.nonce) for sub in submissions}) == len(submissions)
    assert {sub.extranonce2[0] for sub in submissions} == {5}, "extranonce2 starts with the coordinator id"
    credited = coordinator.accounting.workers
    assert set(credited) <= {"w-a", "w-b"} and sum(w.accepted for w in credited.values()) >= 6
    assert coordinator.stats.shares_invalid == 0
    # Each worker's rate is measured (task ranges are sized from it).
    await wait_for(lambda: len([w for w in coordinator.book.workers.values() if w.rate > 100]) == 2, 10,
                   "both workers' rates")


async def test_every_issued_range_is_hashed_once_across_rebalances(stack: StackFactory) -> None:
    """Two coordinators, workers joining and one crashing mid-task: ranges never overlap, none is lost."""
    s = await stack()
    first = await s.add_coordinator(coordinator_id=1)
    second = await s.add_coordinator(coordinator_id=2)
    a = await s.add_worker("w-a")
    await s.add_worker("w-b")
    await wait_for(lambda: len(s.dones()) >= 8, 30, "first results")
    await s.add_worker("w-c")  # rebalance: partitions move while tasks are in flight
    await wait_for(lambda: len(s.dones()) >= 20, 30, "results after the join")
    await s.crash_worker(a)  # leaves without committing what it had in hand
    await wait_for(lambda: len(s.dones()) >= 30, 30, "results after the crash")
    await s.drain()
    await asyncio.sleep(0.5)  # let the observer read the last completions

    for coordinator in (first, second):
        assert coordinator.current is not None
        issued = s.issued(coordinator, coordinator.current.epoch)
        completions = assert_exact_cover(issued, s.dones(coordinator, coordinator.current.epoch))
        assert coordinator.book.stats.completed == len(issued), "a redelivered task was counted twice"
        assert len(issued) >= 5
        assert sum(completions.values()) - len(completions) == coordinator.book.stats.duplicates
    prefixes = {t.extranonce2[0] for t in s.issued().values()}
    assert prefixes == {1, 2}, "coordinators must own disjoint extranonce2 prefixes"
    assert len({(sub.extranonce2, sub.nonce) for sub in s.pool.submissions}) == len(s.pool.submissions)


async def test_new_job_cancels_running_and_queued_tasks(stack: StackFactory) -> None:
    s = await stack()
    # Workers join first: a rebalance waits for the task in hand, and these take ~7 s each.
    workers = [await s.add_worker("w-a"), await s.add_worker("w-b")]
    coordinator = await s.add_coordinator(initial_nonces=20_000, min_nonces=20_000, max_nonces=20_000)
    await wait_for(lambda: all(w._running is not None for w in workers), 20, "both workers hashing")
    await asyncio.sleep(0.3)
    old_epoch = coordinator.current.epoch if coordinator.current else None
    s.pool.new_job(clean=True)
    await wait_for(lambda: all(w.stats.cancel_latencies for w in workers), 10, "both searches cancelled")
    latencies = [x for w in workers for x in w.stats.cancel_latencies]
    assert max(latencies) < 1.0, f"cancel took {max(latencies):.3f} s"
    # The task queued behind the running one is skipped unhashed; the new epoch's tasks get hashed.
    await wait_for(lambda: sum(w.stats.tasks_stale for w in workers) >= 1, 20, "a stale task skipped")
    assert coordinator.current is not None and coordinator.current.epoch != old_epoch
    new_epoch = coordinator.current.epoch
    await wait_for(lambda: any(w._running is not None and w._running[0].epoch == new_epoch
                               for w in workers), 20, "work on the new job")
    assert sum(w.stats.tasks_done for w in workers) == 0, "no stale task may run to completion"


async def test_throttle_holds_a_burst_and_drops_stale_shares(stack: StackFactory) -> None:
    s = await stack()
    s.pool.set_difficulty(0.0005)  # a share every ~33 hashes: far more than 2 a second
    announce_hard_job(s.pool, clean=True)
    coordinator = await s.add_coordinator(submit_rate=2.0, submit_burst=1, submit_queue=5)
    await s.add_worker("w-a")
    await s.add_worker("w-b")
    await wait_for(lambda: len(s.pool.submissions) >= 1, 20, "a first submission")
    began = time.monotonic()
    await asyncio.sleep(3.0)
    elapsed = time.monotonic() - began
    sent = len(s.pool.submissions)
    assert sent <= 1 + 1 + 2.0 * elapsed + 1, f"{sent} submissions in {elapsed:.1f} s at 2/s"
    assert coordinator.throttle.stats.dropped_overflow > 0
    assert len(coordinator.throttle.queue) <= 5
    old_job = s.pool.current.job_id if s.pool.current else None
    announce_hard_job(s.pool, clean=True)
    await wait_for(lambda: coordinator.throttle.stats.dropped_stale > 0, 10,
                   "queued shares of the old job dropped")
    switched = len(s.pool.submissions)
    await asyncio.sleep(1.5)
    late = [sub for sub in s.pool.submissions[switched:] if sub.job_id == old_job]
    assert len(late) <= 1, "shares of a cleaned job kept going upstream"  # one may be in flight
    assert all(sub.accepted for sub in s.pool.submissions if sub not in late)


async def test_redelivered_and_forged_shares_are_never_submitted(stack: StackFactory) -> None:
    s = await stack()
    coordinator = await s.add_coordinator(coordinator_id=3)
    await s.add_worker("w-a")
    await wait_for(lambda: _accepted(s.pool.submissions) >= 2, 30, "accepted shares")
    state = coordinator.current
    assert state is not None
    real = s.shares()[0]
    # A bad worker: a nonce in an issued range that does not meet the target, and one in a space the
    # coordinator never issued (another coordinator's extranonce2 prefix).
    en2 = real.extranonce2
    prefix = state.header_prefix(en2)
    bad_nonce = next(n for n in range(1000)
                     if hash_to_int(scrypt_pow(prefix + struct.pack("<I", n))) > state.share_target)
    forged = [
        Share(real.task, "w-evil", en2, bad_nonce),
        Share(real.task, "w-evil", bytes([9]) + en2[1:], real.nonce),
        Share(TaskId(3, state.epoch + 99, 0), "w-evil", en2, real.nonce),
    ]
    before = len(s.pool.submissions)
    topics = s.bus_config
    partition = coordinator.results_partition
    assert s.bus is not None
    for message in [real, real, *forged]:  # the real one twice more: redeliveries
        await s.bus.publish(topics.results_topic, encode(message), key=coordinator_key(3),
                            partition=partition)
    await wait_for(lambda: coordinator.stats.shares_invalid >= 2 and coordinator.stats.shares_stale >= 1, 10,
                   "the forged shares checked")
    await wait_for(lambda: coordinator.stats.shares_duplicate >= 2, 10, "the duplicates noticed")
    await asyncio.sleep(0.5)
    pairs = Counter((sub.extranonce2, sub.nonce) for sub in s.pool.submissions)
    assert max(pairs.values()) == 1, "a share went upstream twice"
    assert all(sub.accepted for sub in s.pool.submissions[before:])
    evil = coordinator.accounting.workers["w-evil"]
    assert evil.accepted == 0 and sum(evil.rejected.values()) == 2 and evil.stale == 1


async def test_coordinator_restart_resumes_without_reissuing(stack: StackFactory, pg_dsn: str) -> None:
    s = await stack()
    first = await s.add_coordinator(coordinator_id=7, store=PostgresCursorStore(pg_dsn), reserve_nonces=5000)
    await s.add_worker("w-a")
    await s.add_worker("w-b")
    await wait_for(lambda: len(s.dones(first)) >= 10, 30, "work before the restart")
    done_before = len(s.dones(first))
    with pytest.raises(StoreError, match="running elsewhere"):
        await PostgresCursorStore(pg_dsn).open(7, first.upstream.name)
    assert first.current is not None
    epoch, extranonce1 = first.current.epoch, first.current.work.extranonce1
    issued_before = max(t.nonce_start + t.nonce_count for t in s.issued(first, epoch).values())
    s.coordinators.remove(first)
    await first.close()

    # The pool hands the new session the same extranonce1 (as pools that resume sessions do), and the
    # job is still live: the new coordinator must carry on past every range the first one issued.
    s.pool._next_extranonce1 = int.from_bytes(extranonce1, "big") - 1
    second = await s.add_coordinator(coordinator_id=7, store=PostgresCursorStore(pg_dsn), reserve_nonces=5000)
    assert second.current is not None and second.current.epoch == epoch, "the live job's epoch must be kept"
    assert second.current.space.position >= issued_before
    await wait_for(lambda: len(s.dones(second)) >= done_before + 10, 30, "work after the restart")
    await s.drain()
    await asyncio.sleep(0.5)
    issued = s.issued(second, epoch)  # both incarnations' tasks: same coordinator id, same epoch
    assert_exact_cover(issued, s.dones(second, epoch))
    assert all(sub.accepted for sub in s.pool.submissions)


async def test_run_coordinator_from_configuration_with_local_workers(memory_stack: StackFactory) -> None:
    """How one machine runs it: the proxy's upstream list, the coordinator section, a shared bus."""
    s = await memory_stack()
    proxy = ProxyConfig(upstreams=[s.upstream("ltc-pool").config], metrics_port=None)
    config = coordinator_config(s.bus_config, coordinator_id=9, upstream="ltc-pool")
    assert s.bus is not None
    stop = asyncio.Event()
    running = asyncio.create_task(run_coordinator(config, proxy, None, stop, bus=s.bus))
    await s.add_worker("local-1")
    await wait_for(lambda: _accepted(s.pool.submissions) >= 2, 30, "shares from the configured coordinator")
    stop.set()
    await running
    assert {sub.extranonce2[0] for sub in s.pool.submissions} == {9}
