"""`qscrypt worker`: hash nonce-range tasks from the task bus and report what was found and done.

A worker is one member of the workers' consumer group: it owns some task partitions, hashes their
tasks in order, and sends, per task, the shares it found and a completion with the hashes done.
Offsets are committed only after those results are acknowledged, so a worker killed at any moment
loses nothing: its uncommitted tasks go to the next owner of its partitions (at-least-once; the
coordinator counts a repeated task once). When partitions move in a rebalance the worker first
finishes and commits the task in hand, so a rebalance does not make anyone hash a range again.

Every worker also reads the control topic in full (not as a group): a coordinator's new epoch makes
its older tasks stale, so the running one is cancelled (the CPU engine stops within one hash) and
queued ones are skipped without hashing.

Told to stop (SIGINT or SIGTERM: a Qubic client ending its idle phase), a worker stops hashing at
once, sends the shares it found, hands the unhashed pieces of the task in hand and of the rest of its
record back to their coordinator (`Returned`, which issues them again), commits, and leaves the group:
within a second, losing nothing and making no one hash a nonce twice. Killed instead, it loses only
the record in hand, which its partitions' next owner hashes again.
"""

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

from backends.engine import CancelToken, Engine, RateMeter, SearchResult, SearchWork, search_async
from qscrypt.bus.aio import backoff_s, cancel_and_wait, wait_event
from qscrypt.bus.base import Bus, BusUnavailable, CommitFailed, Record, Subscription
from qscrypt.bus.config import BusConfig
from qscrypt.bus.messages import (
    MAX_BATCH,
    Done,
    Epoch,
    Heartbeat,
    Message,
    MessageError,
    Returned,
    Share,
    Status,
    Task,
    TaskId,
    coordinator_key,
    decode,
    decode_all,
    encode,
    encode_batch,
)
from qscrypt.bus.security import authenticated_identity
from qscrypt.log import get_logger
from qscrypt.settings import ConfigError
from qscrypt.signals import stop_on_signals

_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
Pieces = tuple[tuple[int, int], ...]
"""(nonce_start, count) pieces of a range."""


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str
    heartbeat_s: float = 2.0
    """Rate and partition ownership go to every active coordinator this often (and on each rebalance)."""
    prefetch: int = 1
    """Tasks taken per poll; they are committed together once all their results are acknowledged."""
    slice_s: float = 1.0
    """A long task is searched in slices of about this long, so its shares go out as they are found."""
    rebalance_wait_s: float = 30.0
    """How long a rebalance waits for the task in hand to finish and commit."""
    stop_grace_s: float = 0.5
    """On stop, how long the hand-back and the commit may take: Qubic wants its idle command gone in a
    second. Past it the record stays uncommitted (nothing is lost; its next owner hashes it again)."""


class EmptyEngine:
    """No hashing: reports every range done at once. Measures the bus, not scrypt."""

    name = "empty"
    device = "none (bus benchmark)"
    hashrate = 0.0

    def search(self, work: SearchWork, cancel: CancelToken) -> SearchResult:
        return SearchResult([], work.nonce_count, False, 0.0)

    def close(self) -> None:
        pass


@dataclass
class WorkerStats:
    tasks_done: int = 0
    tasks_cancelled: int = 0
    tasks_stale: int = 0
    tasks_returned: int = 0  # handed back (whole or in part) on stop
    shares: int = 0
    hashes: int = 0
    commit_failures: int = 0
    cancel_latencies: list[float] = field(default_factory=list)  # job change announced -> search stopped


class Worker:
    def __init__(self, bus: Bus, engine: Engine, config: WorkerConfig) -> None:
        self.bus = bus
        self.engine = engine
        self.config = config
        self.stats = WorkerStats()
        self.meter = RateMeter()
        self.assignment: frozenset[int] = frozenset()
        self._log = get_logger(component="worker", worker=config.worker_id)
        self._epochs: dict[int, tuple[int, bool]] = {}  # coordinator -> (epoch, active)
        self._coordinators: dict[int, int] = {}  # coordinator -> its results partition
        self._announced_at: dict[int, float] = {}  # coordinator -> when its current epoch was sent
        self._running: tuple[TaskId, CancelToken] | None = None
        self._revoked: set[int] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._beat_now = asyncio.Event()
        self._hashing_logged = False
        # The empty engine never blocks: calling it inline spares a thread hop per task.
        self._inline = isinstance(engine, EmptyEngine)

    async def run(self, stop: asyncio.Event) -> None:
        topics = self.bus.config
        control = self.bus.assign(topics.control_topic, range(self.bus.partitions(topics.control_topic)),
                                  from_beginning=True)
        tasks = self.bus.subscribe(topics.tasks_topic, topics.worker_group, listener=self)
        helpers: list[asyncio.Task[None]] = []
        try:
            await control.start()
            # Epochs first: tasks already stale when this worker starts are then skipped, not hashed.
            await self._catch_up(control)
            helpers = [asyncio.create_task(self._control_loop(control), name="worker-control"),
                       asyncio.create_task(self._heartbeat_loop(), name="worker-heartbeat"),
                       asyncio.create_task(self._stop_watch(stop), name="worker-stop")]
            await tasks.start()
            self._log.info("worker.started", engine=self.engine.name, device=self.engine.device)
            await self._task_loop(tasks, stop)
        finally:
            await cancel_and_wait(helpers)
            for subscription in (tasks, control):
                with contextlib.suppress(Exception):
                    await subscription.close()

    # -- rebalance listener ------------------------------------------------------------------

    async def on_revoked(self, partitions: frozenset[int]) -> None:
        self._revoked |= partitions
        try:
            async with asyncio.timeout(self.config.rebalance_wait_s):
                await self._idle.wait()
        except TimeoutError:
            self._log.warning("worker.rebalance_while_busy", partitions=sorted(partitions))

    async def on_assigned(self, partitions: frozenset[int]) -> None:
        self._revoked -= partitions
        self.assignment = partitions
        self._log.info("worker.assigned", partitions=sorted(partitions))
        self._beat_now.set()

    # -- epochs ------------------------------------------------------------------------------

    def _is_stale(self, task_id: TaskId) -> bool:
        known = self._epochs.get(task_id.coordinator)
        if known is None:
            return False
        epoch, active = known
        return task_id.epoch < epoch or (task_id.epoch == epoch and not active)

    def _learn(self, message: Epoch) -> None:
        known = self._epochs.get(message.coordinator)
        if known is not None and (message.epoch < known[0] or (message.epoch == known[0] and not known[1])):
            return  # an older announcement, read late
        self._epochs[message.coordinator] = (message.epoch, message.active)
        if self._coordinators.get(message.coordinator) != message.results_partition:
            self._coordinators[message.coordinator] = message.results_partition
            self._beat_now.set()  # a coordinator new to this worker learns its rate and partitions now
        self._announced_at[message.coordinator] = message.sent_at
        running = self._running
        if running is not None and self._is_stale(running[0]):
            running[1].cancel()

    async def _read_control(self, control: Subscription, timeout_s: float) -> bool:
        try:
            records = await control.getmany(timeout_s, 1000)
        except BusUnavailable as exc:
            self._log.warning("worker.control_unavailable", error=str(exc))
            await asyncio.sleep(_BACKOFF_S[-1])
            return False
        for record in records:
            try:
                message = decode(record.value)
            except MessageError as exc:
                self._log.warning("worker.bad_control_record", error=str(exc))
                continue
            if isinstance(message, Epoch):
                self._learn(message)
        return bool(records)

    async def _catch_up(self, control: Subscription) -> None:
        """Read the control topic to the end it has now. Asking for the end, not waiting for a poll to
        come back empty, saves half a second on every start: a Qubic idle phase starts many times."""
        for _ in range(50):
            lag = await control.lag()
            if lag == 0:
                return
            if lag is None:
                break
            await self._read_control(control, 0.2)
        while await self._read_control(control, 0.5):  # the bus cannot say where the end is
            pass

    async def _control_loop(self, control: Subscription) -> None:
        while True:
            await self._read_control(control, 1.0)

    async def _heartbeat_loop(self) -> None:
        while True:
            await wait_event(self._beat_now, self.config.heartbeat_s)
            self._beat_now.clear()
            now = time.time()
            for coordinator, partition in list(self._coordinators.items()):
                if not self._epochs[coordinator][1]:
                    continue
                beat = Heartbeat(coordinator, self.config.worker_id, self.meter.rate or self.engine.hashrate,
                                 self.assignment, now)
                try:
                    await self.bus.publish(self.bus.config.results_topic, encode(beat),
                                           key=coordinator_key(coordinator), partition=partition)
                except BusUnavailable as exc:
                    self._log.warning("worker.heartbeat_failed", error=str(exc))

    # -- tasks -------------------------------------------------------------------------------

    async def _task_loop(self, tasks: Subscription, stop: asyncio.Event) -> None:
        failures = 0
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                # Waiting for tasks must not hold up a stop: a poll can take half a second.
                polling = asyncio.ensure_future(tasks.getmany(0.5, self.config.prefetch))
                await asyncio.wait({polling, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not polling.done():
                    await cancel_and_wait([polling])
                    return  # what it would have read stays uncommitted, for the partitions' next owner
                try:
                    records = polling.result()
                except BusUnavailable as exc:
                    self._log.warning("worker.tasks_unavailable", error=str(exc))
                    await wait_event(stop, backoff_s(_BACKOFF_S, failures))
                    failures += 1
                    continue
                failures = 0
                if records:
                    self._idle.clear()
                    try:
                        await self._process(tasks, records, stop)
                    finally:
                        self._idle.set()
        finally:
            stopped.cancel()

    async def _process(self, tasks: Subscription, records: list[Record], stop: asyncio.Event) -> None:
        offsets: dict[int, int] = {}
        outbox = _Outbox(self.bus)
        for record in records:
            if record.partition in self._revoked:
                continue  # its new owner reads it again from the last commit
            if stop.is_set():
                break  # not started: left uncommitted, whole, for the partitions' next owner
            try:
                messages = decode_all(record.value)
            except MessageError as exc:
                self._log.warning("worker.bad_task_record", error=str(exc))
                messages = []
            for message in messages:
                if isinstance(message, Task):
                    # Every task gets a result, even when stopping (then a hand-back): the record can
                    # then be committed without anyone hashing its done part again.
                    await self._work(message, outbox, stop)
            offsets[record.partition] = record.offset + 1
        if not stop.is_set() and await self._settle(outbox, stop):
            try:
                await self._commit(tasks, offsets)
            except CommitFailed as exc:
                self.stats.commit_failures += 1
                self._log.info("worker.commit_lost", error=str(exc))
            return
        await self._finish_stopping(tasks, outbox, offsets)

    async def _finish_stopping(self, tasks: Subscription, outbox: "_Outbox", offsets: dict[int, int]) -> None:
        """Results and hand-backs acknowledged, then the commit, all within `stop_grace_s`. A record is
        committed only once every result of it is acknowledged: else its next owner hashes it again."""
        try:
            async with asyncio.timeout(self.config.stop_grace_s):
                if not await outbox.settled():
                    self._log.warning("worker.stop_results_unsent", pending=outbox.pending)
                    return
                await tasks.commit(offsets)
        except TimeoutError:
            self._log.warning("worker.stop_grace_exceeded", grace_s=self.config.stop_grace_s)
        except (BusUnavailable, CommitFailed) as exc:
            self.stats.commit_failures += 1
            self._log.warning("worker.stop_commit_failed", error=str(exc))

    async def _settle(self, outbox: "_Outbox", stop: asyncio.Event) -> bool:
        """Send results until the bus acknowledges every one (a broker restart only delays them);
        False if told to stop first."""
        failures = 0
        while not await outbox.settled():
            if stop.is_set():
                return False
            self._log.warning("worker.results_unavailable", pending=outbox.pending)
            await asyncio.sleep(backoff_s(_BACKOFF_S, failures))
            failures += 1
        return True

    async def _commit(self, tasks: Subscription, offsets: dict[int, int]) -> None:
        for delay in (*_BACKOFF_S, None):
            try:
                await tasks.commit(offsets)
                return
            except BusUnavailable as exc:
                if delay is None:
                    # Not fatal: the next commit on these partitions covers these offsets too.
                    self._log.warning("worker.commit_failed", error=str(exc))
                    return
                await asyncio.sleep(delay)

    async def _work(self, task: Task, outbox: "_Outbox", stop: asyncio.Event) -> None:
        """Hash one task and queue its result: done, cancelled (its job is over), or, when stopping,
        handed back with the pieces left unhashed."""
        if self._is_stale(task.id):
            self.stats.tasks_stale += 1
            return
        if stop.is_set():
            self._hand_back(task, 0, 0.0, 0, ((task.nonce_start, task.nonce_count),), outbox)
            return
        coordinator = task.id.coordinator
        if task.id.epoch > self._epochs.get(coordinator, (-1, True))[0]:
            self._epochs[coordinator] = (task.id.epoch, True)
        if coordinator not in self._coordinators:
            self._coordinators[coordinator] = task.reply_partition
            self._beat_now.set()
        started = time.perf_counter()
        if self._inline:
            # Nothing to cancel in a search that returns at once: no token, no thread.
            result = self.engine.search(SearchWork(task.header_prefix, task.nonce_start, task.nonce_count,
                                                   task.target), _NEVER_CANCELLED)
            hashes, found, unhashed, cancelled = result.hashes_done, len(result.found), (), False
        else:
            hashes, found, unhashed, cancelled = await self._search(task, outbox)
        elapsed = time.perf_counter() - started
        self.stats.hashes += hashes
        self.stats.shares += found
        status = Status.DONE
        if cancelled and unhashed:
            if not self._is_stale(task.id):
                # Cancelled by stop while the job is live: the coordinator issues the rest again.
                self._hand_back(task, hashes, elapsed, found, unhashed, outbox)
                return
            status = Status.CANCELLED
            self.stats.tasks_cancelled += 1
            announced = self._announced_at.get(coordinator)
            if announced is not None:
                self.stats.cancel_latencies.append(time.time() - announced)
        else:
            self.stats.tasks_done += 1
        outbox.add(Done(task.id, self.config.worker_id, status, task.extranonce2, task.nonce_start,
                        task.nonce_count, hashes, elapsed, found, task.issued_at), task.reply_partition)

    def _hand_back(self, task: Task, hashes: int, elapsed: float, found: int,
                   unhashed: Pieces, outbox: "_Outbox") -> None:
        self.stats.tasks_returned += 1
        outbox.add(Returned(task.id, self.config.worker_id, task.extranonce2, task.nonce_start,
                            task.nonce_count, hashes, elapsed, found, unhashed), task.reply_partition)

    async def _search(self, task: Task, outbox: "_Outbox") -> tuple[int, int, Pieces, bool]:
        """Search in slices of about `slice_s`, sending each slice's shares at once.

        Returns (hashes done, shares found, (start, count) pieces left unhashed, cancelled)."""
        cancel = CancelToken()
        self._running = (task.id, cancel)
        hashes, found, start, remaining = 0, 0, task.nonce_start, task.nonce_count
        try:
            while remaining:
                rate = self.meter.rate or self.engine.hashrate
                size = remaining if rate <= 0 else max(1, min(remaining, int(rate * self.config.slice_s)))
                work = SearchWork(task.header_prefix, start, size, task.target)
                if not self._hashing_logged:
                    # What an operator (or a Qubic phase test) reads for "hashing N s after start".
                    self._hashing_logged = True
                    self._log.info("worker.hashing", engine=self.engine.name)
                result = await search_async(self.engine, work, cancel)
                self.meter.add(result)
                hashes += result.hashes_done
                found += len(result.found)
                for nonce in result.found:
                    share = Share(task.id, self.config.worker_id, task.extranonce2, nonce)
                    outbox.add(share, task.reply_partition)
                if result.found:
                    await outbox.send()
                if result.cancelled:
                    rest = ((start + size, remaining - size),) if remaining > size else ()
                    return hashes, found, result.unhashed + rest, True
                start += size
                remaining -= size
        finally:
            self._running = None
        return hashes, found, (), False

    async def _stop_watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        running = self._running
        if running is not None:
            running[1].cancel()


class _Outbox:
    """Results on their way to coordinators: batched per destination, re-sent until acknowledged."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._queued: dict[tuple[int, int], list[Message]] = {}  # (partition, coordinator) -> unsent
        self._acks: list[tuple[Awaitable[None], tuple[int, int], list[Message]]] = []

    @property
    def pending(self) -> int:
        return sum(map(len, self._queued.values())) + sum(len(m) for _, _, m in self._acks)

    def add(self, message: Share | Done, partition: int) -> None:
        self._queued.setdefault((partition, message.task.coordinator), []).append(message)

    async def send(self) -> None:
        queued, self._queued = self._queued, {}
        for destination, messages in queued.items():
            partition, coordinator = destination
            for start in range(0, len(messages), MAX_BATCH):
                chunk = messages[start:start + MAX_BATCH]
                try:
                    ack = await self._bus.send(self._bus.config.results_topic, encode_batch(chunk),
                                               key=coordinator_key(coordinator), partition=partition)
                except BusUnavailable:
                    self._queued.setdefault(destination, []).extend(chunk)
                else:
                    self._acks.append((ack, destination, chunk))

    async def settled(self) -> bool:
        """Send what is queued and wait for every acknowledgement; False if some must be sent again."""
        await self.send()
        acks, self._acks = self._acks, []
        for ack, destination, chunk in acks:
            try:
                await ack
            except BusUnavailable:
                self._queued.setdefault(destination, []).extend(chunk)
        return not self._queued


_NEVER_CANCELLED = CancelToken()


def resolve_worker_id(config: BusConfig, requested: str | None) -> str:
    """The authenticated principal when mTLS or SASL is on (a different --worker-id is refused);
    else the requested id, or host-pid."""
    identity = authenticated_identity(config)
    if identity is not None:
        if requested and requested != identity:
            raise ConfigError("worker-id",
                              f"{requested!r} differs from the authenticated identity {identity!r}")
        return identity
    return requested or f"{socket.gethostname()}-{os.getpid()}"


# -- command line ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT]")
    parser.add_argument("--engine", choices=("cpu", "opencl", "empty"), default="cpu",
                        help="hashing engine (empty: no hashing, for bus benchmarks)")
    parser.add_argument("--worker-id",
                        help="worker name (default: the certificate CN or SASL user, else host-pid)")
    parser.add_argument("--threads", type=int, help="CPU engine threads (default: one per core)")
    parser.add_argument("--device", type=int, help="OpenCL device index (see qscrypt miner --list-devices)")
    parser.add_argument("--prefetch", type=int, default=1, help="tasks taken per poll (default 1)")
    parser.add_argument("--topic-prefix", default=BusConfig.topic_prefix)
    parser.add_argument("--group", default=BusConfig.worker_group, help="consumer group of the workers")
    parser.add_argument("--security-protocol", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
                        default="PLAINTEXT")
    parser.add_argument("--ca", type=Path, help="CA bundle the broker certificate must chain to")
    parser.add_argument("--cert", type=Path, help="client certificate (PEM) for mTLS, its CN the worker id")
    parser.add_argument("--key", type=Path, help="client private key (PEM)")
    parser.add_argument("--sasl-user", default="", help="SCRAM user (the worker id)")
    parser.add_argument("--sasl-mechanism", choices=("SCRAM-SHA-256", "SCRAM-SHA-512"),
                        default="SCRAM-SHA-256")
    parser.add_argument("--session-timeout-ms", type=int, default=BusConfig.session_timeout_ms,
                        help="a worker silent this long loses its partitions")
    parser.add_argument("--heartbeat-interval-ms", type=int, default=BusConfig.heartbeat_interval_ms,
                        help="group heartbeats to the broker")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=BusConfig.fetch_max_wait_ms,
                        help="idle fetch long-poll (large fleets raise it to cut idle requests)")
    parser.add_argument("--heartbeat-s", type=float, default=WorkerConfig.heartbeat_s,
                        help="rate and partition reports to coordinators")


def bus_config(args: argparse.Namespace) -> BusConfig:
    return BusConfig(
        kind="kafka", bootstrap=args.bootstrap, topic_prefix=args.topic_prefix, worker_group=args.group,
        security_protocol=args.security_protocol, ssl_cafile=args.ca, ssl_certfile=args.cert,
        ssl_keyfile=args.key,
        sasl_mechanism=args.sasl_mechanism, sasl_username=args.sasl_user,
        # From the environment, never the command line: argv is visible to every local user.
        sasl_password=os.environ.get("QSCRYPT_SASL_PASSWORD", ""),
        session_timeout_ms=args.session_timeout_ms, heartbeat_interval_ms=args.heartbeat_interval_ms,
        fetch_max_wait_ms=args.fetch_max_wait_ms,
    )


def _create_engine(args: argparse.Namespace) -> Engine:
    if args.engine == "empty":
        return EmptyEngine()
    if args.engine == "cpu":
        # Straight to the CPU engine: backends.devices loads OpenCL (numpy, pyopencl), 0.1 s of a start.
        from backends.cpu import CpuEngine

        return CpuEngine(args.threads)
    from backends.devices import EngineOptions, create_engine
    from backends.tuning import default_path

    return create_engine(EngineOptions(engine=args.engine, threads=args.threads, opencl_device=args.device,
                                       tuning_cache=default_path()))


async def main(args: argparse.Namespace) -> int:
    try:
        config = bus_config(args)
        worker_id = resolve_worker_id(config, args.worker_id)
    except (ConfigError, ValueError) as exc:
        print(f"qscrypt worker: {exc}", file=sys.stderr)
        return 2
    with stop_on_signals() as stop:
        return await _serve(config, worker_id, args, stop)


async def _serve(config: BusConfig, worker_id: str, args: argparse.Namespace, stop: asyncio.Event) -> int:
    from qscrypt.bus.kafka import KafkaBus

    log = get_logger(component="worker", worker=worker_id)
    engine = await asyncio.to_thread(_create_engine, args)
    bus = KafkaBus(config)
    worker = Worker(bus, engine,
                    WorkerConfig(worker_id, heartbeat_s=args.heartbeat_s, prefetch=args.prefetch))
    failures = 0
    try:
        while not stop.is_set():
            try:
                await bus.start()
                await worker.run(stop)
            except BusUnavailable as exc:  # not reachable yet, or gone while joining: try again
                log.warning("worker.broker_unavailable", error=str(exc))
                await wait_event(stop, backoff_s(_BACKOFF_S, failures))
                failures += 1
        log.info("worker.stopped", tasks=worker.stats.tasks_done, hashes=worker.stats.hashes)
    finally:
        await bus.close()
        engine.close()
    return 0


if __name__ == "__main__":
    # Runnable on its own (`python -m backends.worker`) as well as through `qscrypt worker`.
    from qscrypt.log import configure_logging

    _parser = argparse.ArgumentParser(prog="qscrypt-worker", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    configure_logging()
    sys.exit(asyncio.run(main(_parser.parse_args())))
