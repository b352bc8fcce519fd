"""The pieces without I/O: message encoding, the nonce space, the task book, the token bucket, the
in-process bus's Kafka semantics, certificate identities and configuration checks."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
from pathlib import Path

import pytest

from mining.hashing import hash_to_int
from mining.job import Job
from proxy.coordinator.book import TaskBook
from proxy.coordinator.config import CoordinatorConfig
from proxy.coordinator.service import JobState, check_shares
from proxy.coordinator.space import NONCES_PER_EXTRANONCE2, NonceSpace
from proxy.coordinator.throttle import ShareThrottle
from proxy.token_bucket import TokenBucket
from proxy.upstream.base import UpstreamWork
from qscrypt.bus import BusConfig, CommitFailed
from qscrypt.bus.memory import InProcessBus
from qscrypt.bus.messages import (
    Done,
    Epoch,
    Heartbeat,
    MessageError,
    Returned,
    Share,
    Status,
    Task,
    TaskId,
    decode,
    encode,
)
from qscrypt.bus.security import certificate_common_name
from qscrypt.devnet.kafka import CertificateAuthority
from qscrypt.settings import ConfigError, load_section

TASK = Task(TaskId(3, 1_795_000_000_123, 5 << 32 | 77), "job-9", bytes([3, 0, 0, 5]), 77, (1 << 32) - 77,
            (1 << 240) + 12345, bytes(range(76)), 1, 1_700_000_000.25, 2)


@pytest.mark.parametrize("message", [
    TASK,
    Share(TASK.id, "rig-1", TASK.extranonce2, 0xFFFFFFFF),
    Done(TASK.id, "rig-1", Status.CANCELLED, TASK.extranonce2, 77, 1000, 420, 0.125, 2, 1_700_000_000.5),
    Heartbeat(3, "rig-1", 2817.5, frozenset({0, 5, 11}), 1_700_000_001.0),
    Returned(TASK.id, "rig-1", TASK.extranonce2, 77, (1 << 32) - 77, 900, 0.25, 1,
             ((400, 100), (1 << 31, (1 << 32) - (1 << 31)))),
    Returned(TASK.id, "rig-1", TASK.extranonce2, 77, 1000, 0, 0.0, 0, ((77, 1000),)),
    Epoch(3, 1_795_000_000_123, "job-9", 1, False, 1_700_000_002.0),
])
def test_messages_round_trip(message: object) -> None:
    assert decode(encode(message)) == message  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [b"", b"\x07", encode(TASK)[:40], encode(TASK)[:-3], b"\x02" + b"\xff" * 30])
def test_undecodable_records_raise_message_error(data: bytes) -> None:
    with pytest.raises(MessageError):
        decode(data)


def test_nonce_space_ranges_tile_without_overlap() -> None:
    space = NonceSpace(4, coordinator_id=7, id_bytes=1)
    ranges = [space.take(3_000_000_000) for _ in range(5)]
    assert all(r is not None for r in ranges)
    positions = [(r.position, r.end) for r in ranges if r is not None]
    assert positions == sorted(positions)
    assert all(a_end == b_start for (_, a_end), (b_start, _) in itertools.pairwise(positions))
    # A range never spans two extranonce2 values, so it is one header prefix.
    first, second = ranges[0], ranges[1]
    assert first is not None and second is not None
    assert second.extranonce2 == first.extranonce2
    assert second.nonce_count == NONCES_PER_EXTRANONCE2 - 3_000_000_000
    assert all(r is not None and r.extranonce2[0] == 7 for r in ranges)
    third = ranges[2]
    assert third is not None and third.extranonce2 == bytes([7, 0, 0, 1]) and third.nonce_start == 0
    assert space.position_of(third.extranonce2, 5) == NONCES_PER_EXTRANONCE2 + 5
    assert space.position_of(bytes([8, 0, 0, 1]), 5) is None  # another coordinator's prefix


def test_coordinators_own_disjoint_prefixes_and_the_space_ends() -> None:
    one, two = NonceSpace(4, 1, 1), NonceSpace(4, 2, 1)
    a, b = one.take(10), two.take(10)
    assert a is not None and b is not None and a.extranonce2 != b.extranonce2
    tiny = NonceSpace(2, 1, 1, position=(1 << 40) - 10)
    assert tiny.take(100) is not None and tiny.take(1) is None
    with pytest.raises(ValueError, match="no counter"):
        NonceSpace(1, 1, 1)


def _config(**changes: object) -> CoordinatorConfig:
    return dataclasses.replace(CoordinatorConfig(upstream="pool", store="memory", initial_nonces=1000,
                                                 min_nonces=100, max_nonces=1_000_000, tasks_ahead=2,
                                                 task_seconds=2.0, task_timeout_s=10.0), **changes)  # type: ignore[arg-type]


def _task(seq: int) -> Task:
    return dataclasses.replace(TASK, id=TaskId(3, 1, seq))


def _done(seq: int, worker: str, hashes: int, elapsed: float) -> Done:
    # A worker's result names its task's range (the book checks it: a handed-back piece may share a seq).
    return Done(TaskId(3, 1, seq), worker, Status.DONE, TASK.extranonce2, TASK.nonce_start, TASK.nonce_count,
                hashes, elapsed, 0, 0.0)


def test_book_sizes_tasks_by_each_workers_rate_and_fills_its_partitions() -> None:
    book = TaskBook(4, _config())
    book.new_epoch(1)
    # Nobody known yet: one bootstrap task per partition, at the initial size.
    assert book.wants(0.0) == [(p, 1000) for p in range(4)]
    book.heartbeat(Heartbeat(3, "fast", 50_000.0, frozenset({0, 1}), 0.0), 0.0)
    book.heartbeat(Heartbeat(3, "slow", 0.0, frozenset({2, 3}), 0.0), 0.0)
    plan = book.wants(0.0)
    assert sorted(plan) == [(0, 100_000), (1, 100_000), (2, 1000), (3, 1000)]
    for seq, (partition, _) in enumerate(plan):
        book.add(_task(seq), partition, 0.0)
    assert book.wants(0.1) == []  # two queued per worker already
    assert book.completed(_done(2, "slow", 3000, 1.0), 1.0)  # 3 kH/s measured
    assert not book.completed(_done(2, "slow", 3000, 1.0), 1.0)  # a redelivery counts once
    assert book.stats.duplicates == 1
    assert book.wants(1.0) == [(2, 6000)] or book.wants(1.0) == [(3, 6000)]


def test_book_issues_handed_back_pieces_before_new_ranges() -> None:
    book = TaskBook(2, _config())
    book.new_epoch(1)
    task = dataclasses.replace(TASK, id=TaskId(3, 1, 5000), extranonce2=b"\x03\x00", nonce_start=5000,
                               nonce_count=1000)
    book.add(task, 0, 0.0)
    # Two threads stopped part-way: 5300..5499 and 5800..5999 left.
    back = Returned(task.id, "rig", task.extranonce2, 5000, 1000, 600, 0.5, 0, ((5300, 200), (5800, 200)))
    assert book.returned(back, 1.0)
    assert not book.returned(back, 1.0) and book.stats.duplicates == 1  # a redelivery counts once
    assert book.outstanding == {} and book.stats.returned == 1 and book.stats.hashes == 600
    first = book.take_given_back(150)
    assert first is not None and (first.position, first.nonce_start, first.nonce_count) == (5300, 5300, 150)
    rest = [book.take_given_back(1000) for _ in range(3)]
    assert [(p.position, p.nonce_start, p.nonce_count) for p in rest if p] == [(5450, 5450, 50),
                                                                                 (5800, 5800, 200)]
    assert rest[2] is None
    # A piece that starts at the task's first nonce has the task's seq: only the range tells them apart,
    # so a late result for the original task does not complete the piece.
    book.add(dataclasses.replace(task, nonce_count=10), 1, 2.0)
    late = Done(task.id, "other", Status.DONE, task.extranonce2, 5000, 1000, 1000, 0.5, 0, 0.0)
    assert not book.completed(late, 2.0) and 5000 in book.outstanding


@pytest.mark.parametrize("unhashed", [((4000, 10),), ((5990, 20),), ((5500, 10), (5400, 10)), ((5100, 0),)])
def test_book_takes_the_whole_range_back_from_a_worker_whose_pieces_do_not_fit(
        unhashed: tuple[tuple[int, int], ...]) -> None:
    book = TaskBook(1, _config())
    book.new_epoch(1)
    task = dataclasses.replace(TASK, id=TaskId(3, 1, 5000), nonce_start=5000, nonce_count=1000)
    book.add(task, 0, 0.0)
    assert book.returned(Returned(task.id, "liar", task.extranonce2, 5000, 1000, 990, 0.5, 0, unhashed), 1.0)
    assert [(p.position, p.nonce_start, p.nonce_count) for p in book.given_back] == [(5000, 5000, 1000)]


def test_book_moves_tasks_of_a_stuck_worker_and_forgets_the_dead() -> None:
    book = TaskBook(2, _config(worker_timeout_s=5.0))
    book.new_epoch(1)
    book.heartbeat(Heartbeat(3, "a", 1000.0, frozenset({0}), 0.0), 0.0)
    book.heartbeat(Heartbeat(3, "b", 1000.0, frozenset({1}), 0.0), 0.0)
    book.add(dataclasses.replace(_task(1), attempt=0), 0, 0.0)
    assert book.expired(5.0) == []
    book.heartbeat(Heartbeat(3, "b", 1000.0, frozenset({1}), 11.0), 11.0)
    moves = book.expired(11.0)  # past the 10 s timeout; "a" is silent but "b" is alive
    assert [(entry.task.id.seq, partition, entry.task.attempt) for entry, partition in moves] == [(1, 1, 1)]
    book.undelivered(1)  # the bus refused it: sent again at once, even to the same partition
    assert [partition for _, partition in book.expired(11.1)] == [1]
    assert [w.id for w in book.alive(11.0)] == ["b"]


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    for _ in range(3):
        assert bucket.wait_s(0.0) == 0
        bucket.take(0.0)
    assert bucket.wait_s(0.0) == pytest.approx(0.5)
    assert bucket.wait_s(10.0) == 0 and bucket.tokens == 3  # never more than the burst


async def test_throttle_spaces_shares_and_lets_blocks_through() -> None:
    sent: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()

    async def send(item: str) -> None:
        sent.append((item, loop.time()))

    stale = {"s2"}
    throttle: ShareThrottle[str] = ShareThrottle(send, lambda item: item in stale, rate=20.0, burst=1,
                                                 max_queue=3)
    runner = asyncio.create_task(throttle.run())
    for item in ["s1", "s2", "s3", "s4", "s5"]:
        throttle.offer(item)
    throttle.offer("block", urgent=True)
    await asyncio.sleep(0.4)
    runner.cancel()
    items = [item for item, _ in sent]
    assert items[0] == "block"  # ahead of every queued share
    assert "s2" not in items and throttle.stats.dropped_stale == 1  # stale: dropped, not sent
    assert throttle.stats.dropped_overflow == 1  # the queue holds 3: the oldest fresh one went
    times = [at for item, at in sent if item != "block"]
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(times))


async def test_in_process_bus_redelivers_uncommitted_records_after_a_rebalance() -> None:
    bus = InProcessBus(BusConfig(task_partitions=2, result_partitions=1))
    await bus.start()
    topic = bus.config.tasks_topic
    for i in range(6):
        await bus.publish(topic, bytes([i]), partition=i % 2)
    first = bus.subscribe(topic, "g")
    await first.start()
    assert first.assignment == {0, 1}
    got = await first.getmany(0.1, 10)
    assert len(got) == 6
    await first.commit({0: 2})  # partition 0: offsets 0 and 1 done, offset 2 not
    second = bus.subscribe(topic, "g")
    await second.start()  # rebalance: partition 1 moves to the newcomer
    assert first.assignment == {0} and second.assignment == {1}
    with pytest.raises(CommitFailed):
        await first.commit({1: 3})
    again = await second.getmany(0.1, 10)
    assert [r.value for r in again] == [bytes([1]), bytes([3]), bytes([5])]  # nothing was committed there
    await second.close()  # both partitions back to the first member, each from its last commit
    assert sorted(r.value for r in await first.getmany(0.1, 10)) == [bytes([i]) for i in (1, 3, 4, 5)]
    await bus.close()


async def test_in_process_control_topic_is_compacted() -> None:
    bus = InProcessBus(BusConfig())
    await bus.start()
    topic = bus.config.control_topic
    for value, key in [(b"a1", b"a"), (b"b1", b"b"), (b"a2", b"a")]:
        await bus.publish(topic, value, key=key)
    reader = bus.assign(topic, [0], from_beginning=True)
    await reader.start()
    assert [r.value for r in await reader.getmany(0.1, 10)] == [b"b1", b"a2"]
    await bus.close()


def test_certificate_common_name(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca", name="unit-ca")
    assert certificate_common_name(ca.client_cert("rig-42").cert) == "rig-42"
    assert certificate_common_name(ca.pem) == "unit-ca"


@pytest.mark.parametrize(("changes", "key"), [
    ({"kind": "kafka"}, "bus.bootstrap"),
    ({"security_protocol": "SASL_SSL"}, "bus.sasl_username"),
    ({"ssl_certfile": Path("c.pem")}, "bus.ssl_certfile"),
    ({"task_partitions": 0}, "bus.task_partitions"),
])
def test_bus_config_rejects(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        BusConfig(**changes)  # type: ignore[arg-type]
    assert error.value.key == key


@pytest.mark.parametrize(("changes", "key"), [
    ({"coordinator_id": 256}, "coordinator.coordinator_id"),
    ({"id_bytes": 3}, "coordinator.id_bytes"),
    ({"min_nonces": 5000, "initial_nonces": 4000}, "coordinator"),
    ({"submit_rate": 0}, "coordinator.submit_rate"),
])
def test_coordinator_config_rejects(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        CoordinatorConfig(upstream="pool", **changes)  # type: ignore[arg-type]
    assert error.value.key == key


def test_coordinator_section_loads_from_toml_tables() -> None:
    data = {"upstream": "ltc-pool", "coordinator_id": 4, "task_seconds": 2.5, "store": "memory",
            "bus": {"kind": "kafka", "bootstrap": "kafka1:9093,kafka2:9093", "security_protocol": "SSL",
                    "ssl_cafile": "/etc/qscrypt/ca.pem", "task_partitions": 48}}
    config = load_section(CoordinatorConfig, data, "coordinator")
    assert config.bus.task_partitions == 48 and config.bus.ssl_cafile == Path("/etc/qscrypt/ca.pem")
    with pytest.raises(ConfigError) as error:
        load_section(CoordinatorConfig, {"upstream": "p", "bus": {"partitions": 3}}, "coordinator")
    assert error.value.key == "coordinator.bus.partitions"


def test_coordinator_checks_a_batch_of_shares_against_hashlib() -> None:
    # One scrypt_many call for the batch: each verdict must still be its own header's.
    job = Job("j1", bytes(range(32)), b"\x01" * 40, b"\x02" * 40, (b"\x03" * 32,) * 3, 0x20000000,
              0x1E0FFFF0, 1_700_000_000, True)
    work = UpstreamWork(job, b"\xaa\xbb\xcc\xdd", 4, 1 << 255)
    space = NonceSpace(4, coordinator_id=7, id_bytes=1)
    taken = space.take(1000)
    assert taken is not None
    state = JobState(work, 1, space, share_target=1 << 255, block_target=1 << 200)

    def pow_value(nonce: int) -> int:
        header = job.header(work.extranonce1, taken.extranonce2, job.ntime, nonce)
        return hash_to_int(hashlib.scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32))

    nonces = list(range(taken.nonce_start, taken.nonce_start + 13))
    shares = [Share(TaskId(7, 1, 0), "w", taken.extranonce2, nonce) for nonce in nonces]
    foreign = Share(TaskId(7, 1, 0), "w", bytes([8, 0, 0, 0]), 5)  # another coordinator's prefix
    unissued = Share(TaskId(7, 1, 0), "w", taken.extranonce2, taken.nonce_start + 5000)
    checks = [(state, share) for share in [shares[0], foreign, *shares[1:7], unissued, *shares[7:]]]
    verdicts = check_shares(checks)
    assert [v.reason for v in verdicts].count("not an issued range") == 2
    assert verdicts[1].reason == verdicts[8].reason == "not an issued range"
    judged = [v for i, v in enumerate(verdicts) if i not in (1, 8)]
    for nonce, verdict in zip(nonces, judged, strict=True):
        value = pow_value(nonce)
        assert verdict.pow_value == value
        expected = None if value <= state.share_target else "low difficulty share"
        assert verdict.reason == expected
        assert (verdict.header != b"") == (expected is None)
    assert any(v.reason is None for v in judged) and any(v.reason is not None for v in judged)
    assert check_shares([]) == []
