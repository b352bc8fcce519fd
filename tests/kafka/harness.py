"""A whole work pipeline for tests: a real Stratum pool, coordinators with their own upstream
sessions, a task bus (in-process or the real broker), hashing workers (in-process or subprocesses),
and observers that read the tasks and results topics independently of everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from backends.cpu import CpuEngine
from backends.engine import Engine
from backends.worker import Worker, WorkerConfig
from mining import stratum
from mining.job import Job
from proxy.config import FailoverConfig, UpstreamConfig
from proxy.coordinator import Coordinator, CoordinatorConfig, CursorStore
from proxy.upstream.pool import PoolUpstream
from qscrypt.bus import Bus, BusConfig, Subscription, create_bus
from qscrypt.bus.aio import cancel_and_wait
from qscrypt.bus.messages import (
    Done,
    Heartbeat,
    MessageError,
    Returned,
    Share,
    Status,
    Task,
    TaskId,
    decode_all,
)
from qscrypt.devnet.kafka import KafkaBroker
from tests.stratum_peers import PoolServer

REPO = Path(__file__).resolve().parents[2]


def bus_config(kind: str, broker: KafkaBroker | None, **overrides: Any) -> BusConfig:
    """Topics and groups of their own for each test: a shared broker never mixes two tests' records."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    values: dict[str, Any] = {"topic_prefix": prefix, "worker_group": f"{prefix}workers",
                              "task_partitions": 4, "result_partitions": 2, "session_timeout_ms": 3000,
                              "heartbeat_interval_ms": 500, "request_timeout_ms": 10_000}
    if kind == "kafka":
        assert broker is not None
        values |= {"kind": "kafka", "bootstrap": broker.bootstrap}
    return BusConfig(**(values | overrides))


def coordinator_config(bus: BusConfig, coordinator_id: int = 1, **overrides: Any) -> CoordinatorConfig:
    # Tiny ranges and an easy share target: CPU hashing finishes tasks in a fraction of a second.
    values: dict[str, Any] = {"upstream": "pool", "coordinator_id": coordinator_id, "bus": bus,
                              "store": "memory", "task_seconds": 0.3, "initial_nonces": 200, "min_nonces": 50,
                              "max_nonces": 2000, "task_timeout_s": 30.0, "worker_timeout_s": 6.0,
                              "submit_rate": 100.0, "submit_burst": 20, "tick_s": 0.1}
    return CoordinatorConfig(**(values | overrides))


@dataclass
class Observer:
    """Reads a topic from the beginning, apart from every group under test, and decodes all of it."""

    subscription: Subscription
    messages: list[Any] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.subscription.start()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                for record in await self.subscription.getmany(0.2, 10_000):
                    with contextlib.suppress(MessageError):
                        self.messages += decode_all(record.value)

    async def close(self) -> None:
        if self.task is not None:
            await cancel_and_wait([self.task])
        await self.subscription.close()

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]


@dataclass
class RunningWorker:
    worker: Worker
    task: asyncio.Task[None]
    stop: asyncio.Event


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    kind: str
    bus_config: BusConfig
    broker: KafkaBroker | None
    tmp: Path
    pool: PoolServer = field(default_factory=lambda: PoolServer(difficulty=0.01, job_interval_s=None))
    bus: Bus | None = None
    coordinators: list[Coordinator] = field(default_factory=list)
    workers: list[RunningWorker] = field(default_factory=list)
    processes: list[WorkerProcess] = field(default_factory=list)
    tasks: Observer | None = None
    results: Observer | None = None

    async def start(self) -> Stack:
        await self.pool.start()
        self.bus = create_bus(self.bus_config)
        await self.bus.start()
        topics = self.bus_config
        # A group of their own holds back the in-process bus's trimming until the observers read.
        self.tasks, self.results = (
            Observer(self.bus.assign(topic, range(self.bus.partitions(topic)), group="observer",
                                     from_beginning=True))
            for topic in (topics.tasks_topic, topics.results_topic))
        await self.tasks.start()
        await self.results.start()
        return self

    def upstream(self, name: str = "pool") -> PoolUpstream:
        config = UpstreamConfig(name=name, url=f"stratum+tcp://127.0.0.1:{self.pool.port}", user="acct.kafka")
        return PoolUpstream(config, FailoverConfig(retry_backoff_s=0.2, retry_backoff_max_s=1.0))

    async def add_coordinator(self, coordinator_id: int = 1, store: CursorStore | None = None,
                              **overrides: Any) -> Coordinator:
        assert self.bus is not None
        config = coordinator_config(self.bus_config, coordinator_id, **overrides)
        coordinator = Coordinator(config, self.upstream(), self.bus, store=store)
        await coordinator.start()
        self.coordinators.append(coordinator)
        await wait_for(lambda: coordinator.current is not None, 10, "the coordinator's first job")
        return coordinator

    async def add_worker(self, name: str, engine: Engine | None = None, bus: Bus | None = None,
                         **overrides: Any) -> Worker:
        assert self.bus is not None
        worker = Worker(bus or self.bus, engine or CpuEngine(threads=1), WorkerConfig(name, **overrides))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name=f"worker-{name}")
        self.workers.append(RunningWorker(worker, task, stop))
        await wait_for(lambda: bool(worker.assignment) or task.done(), 15, f"worker {name} to join")
        if task.done():
            task.result()
        return worker

    async def crash_worker(self, worker: Worker) -> None:
        """Kill an in-process worker mid-task: its uncommitted tasks go to the next owner."""
        running = next(r for r in self.workers if r.worker is worker)
        await cancel_and_wait([running.task])
        self.workers.remove(running)

    def spawn_worker(self, name: str, *extra: str, bootstrap: str | None = None) -> WorkerProcess:
        """A worker as its own process, exactly as `qscrypt worker` runs one (SIGKILL-able)."""
        assert self.broker is not None
        topics = self.bus_config
        log = self.tmp / f"{name}.log"
        command = [sys.executable, "-m", "backends.worker", "--bootstrap", bootstrap or self.broker.bootstrap,
                   "--engine", "cpu", "--threads", "1", "--topic-prefix", topics.topic_prefix,
                   "--group", topics.worker_group, "--session-timeout-ms", str(topics.session_timeout_ms),
                   "--heartbeat-interval-ms", str(topics.heartbeat_interval_ms), *extra]
        if "--worker-id" not in extra and "--cert" not in extra:
            command += ["--worker-id", name]
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        spawned = WorkerProcess(name, process, log)
        self.processes.append(spawned)
        return spawned

    def dones(self, coordinator: Coordinator | None = None, epoch: int | None = None) -> list[Done]:
        assert self.results is not None
        return [d for d in self.results.of(Done) if _matches(d.task, coordinator, epoch)]

    def shares(self) -> list[Share]:
        assert self.results is not None
        return self.results.of(Share)

    def heartbeats(self) -> list[Heartbeat]:
        assert self.results is not None
        return self.results.of(Heartbeat)

    def issued(self, coordinator: Coordinator | None = None, epoch: int | None = None) -> dict[TaskId, Task]:
        assert self.tasks is not None
        return {t.id: t for t in self.tasks.of(Task) if _matches(t.id, coordinator, epoch)}

    async def drain(self, timeout: float = 30) -> None:
        """Stop issuing and wait until every issued task has been completed."""
        for coordinator in self.coordinators:
            coordinator.drain()
        await wait_for(lambda: all(c.drained for c in self.coordinators), timeout,
                       "outstanding tasks to finish")

    async def close(self) -> None:
        for running in self.workers:
            running.stop.set()
        for running in self.workers:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(running.task, 10)
        for spawned in self.processes:
            if spawned.process.poll() is None:
                spawned.process.terminate()
        for spawned in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(spawned.process.wait, 10)
            if spawned.process.poll() is None:
                spawned.process.kill()
        for coordinator in self.coordinators:
            await coordinator.close()
        for observer in (self.tasks, self.results):
            if observer is not None:
                with contextlib.suppress(Exception):
                    await observer.close()
        if self.bus is not None:
            await self.bus.close()
        await self.pool.stop()


def announce_hard_job(pool: PoolServer, clean: bool) -> Job:
    """A new job whose network target is mainnet-hard, so shares are pool shares, not blocks (every
    share of a regtest job is a block, and blocks bypass the submit throttle)."""
    assert pool.current is not None
    job = replace(pool.current, job_id=f"hard{len(pool.jobs)}", ntime=pool.current.ntime + 1,
                  bits=0x1A01CD2D, clean_jobs=clean)
    if clean:
        pool.stale.update(pool.jobs)
    pool.jobs[job.job_id] = job
    pool.current = job
    pool.broadcast(stratum.notify("mining.notify", job.notify_params()))
    return job


def _matches(task: TaskId, coordinator: Coordinator | None, epoch: int | None) -> bool:
    if coordinator is not None and task.coordinator != coordinator.config.coordinator_id:
        return False
    return epoch is None or task.epoch == epoch


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def assert_exact_cover(issued: dict[TaskId, Task], dones: list[Done]) -> dict[TaskId, int]:
    """Issued ranges never overlap, and the completed ones are exactly the issued ones.

    Returns how many completions each task had (more than one: a redelivery, counted once by the
    coordinator)."""
    ranges = sorted((t.extranonce2, t.nonce_start, t.nonce_start + t.nonce_count) for t in issued.values())
    for (en2_a, _, end_a), (en2_b, start_b, _) in itertools.pairwise(ranges):
        assert en2_a != en2_b or start_b >= end_a, "two issued ranges overlap"
    completions: dict[TaskId, int] = {}
    for done in dones:
        if done.status is not Status.DONE:
            continue
        task = issued.get(done.task)
        assert task is not None, f"a completion for a task never issued: {done.task}"
        assert (done.extranonce2, done.nonce_start, done.nonce_count) == (
            task.extranonce2, task.nonce_start, task.nonce_count), "a completion reports another range"
        assert done.hashes_done == task.nonce_count, "a completed task hashed fewer nonces than its range"
        completions[done.task] = completions.get(done.task, 0) + 1
    missing = set(issued) - set(completions)
    first = sorted(missing, key=lambda t: t.seq)[:5]
    assert not missing, f"{len(missing)} issued ranges were never hashed, e.g. {first}"
    return completions



Span = tuple[bytes, int, int]  # (extranonce2, first nonce, end)


def _merged(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for en2, start, end in sorted(spans):
        if out and out[-1][0] == en2 and out[-1][2] >= start:
            out[-1] = (en2, out[-1][1], max(out[-1][2], end))
        else:
            out.append((en2, start, end))
    return out


def hashed_spans(dones: list[Done], returns: list[Returned]) -> list[Span]:
    """Every span of nonces a worker reports it hashed: whole completed tasks, and the part of each
    handed-back task outside its unhashed pieces (checked against the hashes it counts)."""
    spans = [(d.extranonce2, d.nonce_start, d.nonce_start + d.nonce_count) for d in dones
             if d.status is Status.DONE]
    for back in returns:
        at, done = back.nonce_start, 0
        for start, count in (*back.unhashed, (back.nonce_start + back.nonce_count, 0)):
            if start > at:
                spans.append((back.extranonce2, at, start))
                done += start - at
            at = start + count
        assert done == back.hashes_done, f"a hand-back counts {back.hashes_done} hashes but spans {done}"
    return spans


def assert_hashed_once(tasks: list[Task], dones: list[Done], returns: list[Returned]) -> int:
    """Across every hand-back and re-issue: no nonce hashed twice, and every nonce ever issued hashed.
    Returns how many nonces that is."""
    spans = sorted(hashed_spans(dones, returns))
    for (en2_a, start_a, end_a), (en2_b, start_b, end_b) in itertools.pairwise(spans):
        assert en2_a != en2_b or start_b >= end_a, \
            f"hashed twice: {en2_a.hex()} nonces {start_a}..{end_a} and {start_b}..{end_b}"
    issued = _merged([(t.extranonce2, t.nonce_start, t.nonce_start + t.nonce_count) for t in tasks])
    hashed = _merged(spans)
    if hashed != issued:
        missing = [span for span in issued if span not in hashed][:3]
        raise AssertionError(f"issued and hashed differ: {len(issued)} issued spans, {len(hashed)} hashed; "
                             f"e.g. issued {[(e.hex(), a, b) for e, a, b in missing]}")
    return sum(end - start for _, start, end in hashed)
