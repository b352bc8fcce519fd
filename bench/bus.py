"""Task bus throughput and latency: coordinator -> tasks -> workers -> results -> coordinator.

    python -m bench.bus [--seconds S] [--workers N] [--bus kafka|memory|both]

The real coordinator and the real worker, with the empty engine (it reports each range done without
hashing), so the figure is the bus and the code around it: task sizing and encoding, producing,
consuming, result handling and offset commits. Kafka is a fresh single-node broker from the pinned
jars (qscrypt.devnet.kafka) with workers as separate processes (`python -m backends.worker`); the
in-process bus runs everything in this process. The upstream is a fixed job (no pool), since no
share is ever found.

Four runs per bus. One worker with 2000, 200 and 20 tasks queued: the first saturates (tasks/s), the
shallower ones show the end-to-end latency of a result (issue to the coordinator reading it,
p50/p99) at the throughput each window allows (Little's law: window = rate x latency). Then 16
workers with two tasks queued each, as real workers run: every record carries one task, which is
what a large fleet costs per task; and 32 workers idle against none, which is what a connected
worker costs by just being there. Each run prints the CPU time per task (idle: per worker-second) of the
coordinator, the workers and the broker: the figures a capacity model scales.
Target: 20,000 tasks/s through Kafka on a 2-core machine.
"""

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import structlog

from backends.worker import EmptyEngine, Worker, WorkerConfig
from mining.job import Job
from mining.target import share_difficulty_to_target
from proxy.coordinator import Coordinator, CoordinatorConfig
from proxy.upstream.base import SubmitOutcome, Upstream, UpstreamState, UpstreamWork
from qscrypt.bus import Bus, BusConfig, create_bus
from qscrypt.devnet.kafka import KafkaBroker

TARGET_TASKS_S = 20_000
# (workers, tasks queued per worker): one worker saturated, then shallower queues for latency, then a
# small fleet the way real workers run (two tasks ahead each: one record per task, no batching).
SCENARIOS = ((1, 2000), (1, 200), (1, 20), (16, 2), (0, 0), (32, 0))  # ahead 0: connected, idle
IDLE_FLEET = 32
REPO = Path(__file__).resolve().parents[1]


class FixedJobUpstream(Upstream):
    """One job that never changes and takes every submit: the bench measures the bus, not a pool."""

    def __init__(self) -> None:
        super().__init__("bench", "LTC", 0)
        job = Job("bench", bytes(32), b"\x01" * 42, b"\x02" * 40, (bytes(32),), 0x20000000, 0x1A01CD2D,
                  int(time.time()), True)
        self._work = UpstreamWork(job, b"\x00\x00\x00\x01", 4, share_difficulty_to_target(1.0))

    async def start(self) -> None:
        self._set_state(UpstreamState.READY)
        self._publish_job(self._work)

    async def close(self) -> None:
        self._set_state(UpstreamState.DOWN)

    async def submit(self, job_id: str, extranonce2: bytes, ntime: int, nonce: int, header: bytes,
                     worker: str) -> SubmitOutcome:
        return SubmitOutcome(True, None, 0.0)


@dataclass
class Figures:
    bus: str
    workers: int
    window: int
    tasks_s: float
    p50_ms: float
    p99_ms: float
    tasks_per_record: float
    cpu_us: dict[str, float]  # CPU microseconds per task by process (idle fleet: ms per second)

    def line(self) -> str:
        cpu = "  ".join(f"{name} {us:5.1f}" for name, us in self.cpu_us.items())
        if not self.window:
            return f"{self.bus:<6} workers={self.workers:<2} idle       CPU ms/s: {cpu}"
        return (f"{self.bus:<6} workers={self.workers:<2} ahead={self.window:<4} "
                f"{self.tasks_s:>8,.0f} tasks/s  p50 {self.p50_ms:6.1f} ms  p99 {self.p99_ms:6.1f} ms  "
                f"{self.tasks_per_record:5.1f} tasks/record  CPU us/task: {cpu}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Workers(Protocol):
    @property
    def pids(self) -> list[int]: ...

    async def start(self, bus: Bus, count: int) -> None: ...

    async def stop(self) -> None: ...


class InProcessWorkers:
    def __init__(self) -> None:
        self.pids: list[int] = []  # they run in this process
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, bus: Bus, count: int) -> None:
        config = WorkerConfig("bench", prefetch=2000)
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(Worker(bus, EmptyEngine(), replace(config, worker_id=f"bench-{i}"))
                                           .run(self._stop)) for i in range(count)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


class ProcessWorkers:
    """`python -m backends.worker --engine empty`, as a deployment runs workers."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._processes: list[asyncio.subprocess.Process] = []

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    async def start(self, bus: Bus, count: int) -> None:
        config = bus.config
        for i in range(count):
            with (self._log_dir / f"{config.topic_prefix}worker-{i}.log").open("wb") as log:
                self._processes.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "backends.worker", "--bootstrap", config.bootstrap,
                    "--engine", "empty", "--prefetch", "2000", "--worker-id", f"bench-{i}",
                    "--topic-prefix", config.topic_prefix, "--group", config.worker_group,
                    cwd=REPO, stdout=log, stderr=subprocess.STDOUT))

    async def stop(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            await process.wait()
        self._processes = []


async def measure(bus: Bus, count: int, window: int, seconds: float, warmup: float, workers: Workers,
                  broker_pid: int | None) -> Figures:
    config = CoordinatorConfig(upstream="bench", bus=bus.config, store="memory", initial_nonces=1024,
                               min_nonces=1024, max_nonces=1024, tasks_ahead=max(window, 1),
                               task_timeout_s=3600, worker_timeout_s=3600, tick_s=0.05)
    coordinator = Coordinator(config, FixedJobUpstream(), bus)
    if not window:
        coordinator.drain()  # the idle fleet: connected, polling, heartbeating, but given no task
    await coordinator.start()
    await workers.start(bus, count)
    processes = {"coordinator": os.getpid()} | ({"broker": broker_pid} if broker_pid else {})
    try:
        await asyncio.sleep(warmup)
        stats = coordinator.book.stats
        stats.latencies.clear()
        cpu = {name: cpu_seconds(pid) for name, pid in processes.items()}
        cpu["workers"] = sum(cpu_seconds(pid) for pid in workers.pids)
        before, records, began = stats.completed, coordinator.stats.task_records, time.perf_counter()
        await asyncio.sleep(seconds)
        done, elapsed = stats.completed - before, time.perf_counter() - began
        records = coordinator.stats.task_records - records
        cpu = {name: cpu_seconds(pid) - cpu[name] for name, pid in processes.items()} | {
            "workers": sum(cpu_seconds(pid) for pid in workers.pids) - cpu["workers"]}
        latencies = sorted(stats.latencies) or [0.0]
        in_process = not workers.pids
    finally:
        await workers.stop()
        await coordinator.close()
    if in_process:
        cpu.pop("workers")  # counted in the coordinator's process
    if window and not done:
        raise SystemExit("no task came back: see the worker logs")
    # Per task; for an idle fleet, CPU ms per second of all of it (thousandths of a core).
    per = 1e6 / done if window else 1e3 / elapsed
    return Figures(bus.config.kind, count, window, done / elapsed, 1000 * statistics.median(latencies),
                   1000 * latencies[int(0.99 * (len(latencies) - 1))], done / max(records, 1),
                   {name: per * seconds for name, seconds in cpu.items()})


async def run(broker: KafkaBroker | None, seconds: float, log_dir: Path) -> list[Figures]:
    figures = []
    for count, window in SCENARIOS:
        prefix = f"bench{uuid.uuid4().hex[:8]}."
        config = BusConfig(kind="kafka" if broker else "memory", bootstrap=broker.bootstrap if broker else "",
                           topic_prefix=prefix, worker_group=f"{prefix}workers", task_partitions=16,
                           result_partitions=1)
        bus = create_bus(config)
        await bus.start()
        workers: Workers = ProcessWorkers(log_dir) if broker else InProcessWorkers()
        broker_pid = broker.process.pid if broker is not None and broker.process is not None else None
        try:
            warmup = 6.0 + 0.6 * count if broker else 1.0  # processes start and join first
            figures.append(await measure(bus, count, window, seconds, warmup, workers,
                                         broker_pid))
        finally:
            await bus.close()
        print(figures[-1].line(), flush=True)
    idle = {f.workers: f.cpu_us for f in figures if not f.window}
    if IDLE_FLEET in idle and 0 in idle:
        slope = {name: (ms - idle[0].get(name, 0.0)) / IDLE_FLEET for name, ms in idle[IDLE_FLEET].items()}
        print(f"{config.kind:<6} one idle worker costs CPU ms/s: "
              + "  ".join(f"{name} {ms:5.2f}" for name, ms in slope.items()), flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bus", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (default 10)")
    parser.add_argument("--bus", choices=("kafka", "memory", "both"), default="both")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory(prefix="qscrypt-bench-bus-") as tmp:
        figures: list[Figures] = []
        if args.bus in ("memory", "both"):
            figures += asyncio.run(run(None, args.seconds, Path(tmp)))
        if args.bus in ("kafka", "both"):
            with KafkaBroker(Path(tmp) / "kafka", heap="1g") as broker:
                figures += asyncio.run(run(broker, args.seconds, Path(tmp)))
    kafka = [f.tasks_s for f in figures if f.bus == "kafka"]
    if kafka:
        verdict = "meets" if max(kafka) >= TARGET_TASKS_S else "misses"
        print(f"kafka peak {max(kafka):,.0f} tasks/s {verdict} the {TARGET_TASKS_S:,} tasks/s target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
