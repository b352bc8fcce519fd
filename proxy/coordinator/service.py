"""The coordinator: one upstream session's work cut into nonce-range tasks for hashing workers.

Work flows out: upstream job -> epoch (control topic) -> tasks sized per worker (tasks topic, to
the partitions each worker owns). Results flow back on the coordinator's own results partition:
every reported share is hashed again here with `mining/` before anything is credited or forwarded,
so a broken or lying worker can cost only its own credit, never a garbage submit.

The coordinator opens its own upstream session rather than sharing the proxy's: it owns that
session's extranonce2 counter outright, so no miner can ever hash the same coinbase.
"""

import asyncio
import contextlib
import hashlib
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace

from mining.hashing import POW_HASH_BYTES, hash_to_int, scrypt_many
from mining.target import (
    bits_to_target,
    hash_share_difficulty,
    share_difficulty_to_target,
    share_target_to_difficulty,
)
from proxy.accounting import Accounting
from proxy.coordinator.book import Piece, TaskBook
from proxy.coordinator.config import CoordinatorConfig
from proxy.coordinator.space import NonceSpace, Range
from proxy.coordinator.store import Cursor, CursorStore, MemoryCursorStore, StoreError
from proxy.coordinator.throttle import ShareThrottle
from proxy.upstream.base import Upstream, UpstreamWork
from qscrypt.bus.aio import backoff_s, cancel_and_wait
from qscrypt.bus.base import Bus, BusError, BusUnavailable, CommitFailed
from qscrypt.bus.messages import (
    MAX_BATCH,
    Done,
    Epoch,
    Heartbeat,
    MessageError,
    Returned,
    Share,
    Task,
    TaskId,
    coordinator_key,
    decode_all,
    encode,
    encode_batch,
)
from qscrypt.log import get_logger

_RECENT_EPOCHS = 8  # results of this many past epochs are still checked (and credited) when late
_LIVE_JOBS = 32  # jobs since the last clean one that the upstream may still accept
_BACKOFF_S = (0.5, 1, 2, 5)


@dataclass
class CoordinatorStats:
    jobs: int = 0
    tasks_issued: int = 0
    task_records: int = 0  # records carrying them (tasks issued together share one)
    shares_valid: int = 0
    shares_invalid: int = 0
    shares_duplicate: int = 0
    shares_stale: int = 0
    submitted: int = 0
    accepted: int = 0
    rejected: int = 0
    bad_messages: int = 0


@dataclass
class JobState:
    """One epoch: an upstream job in one extranonce1, and the coordinator's slice of its nonce space."""

    work: UpstreamWork
    epoch: int
    space: NonceSpace
    share_target: int
    block_target: int
    seen: set[tuple[bytes, int]] = field(default_factory=set)
    _prefixes: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def share_difficulty(self) -> float:
        return share_target_to_difficulty(self.share_target)

    def header_prefix(self, extranonce2: bytes) -> bytes:
        prefix = self._prefixes.get(extranonce2)
        if prefix is None:
            if len(self._prefixes) > 64:  # one extranonce2 spans 2^32 nonces: a handful at a time
                self._prefixes.clear()
            job = self.work.job
            root = job.merkle_root(self.work.extranonce1, extranonce2)
            prefix = self._prefixes[extranonce2] = job.header_prefix(root, job.ntime)
        return prefix


def job_key(work: UpstreamWork) -> str:
    """Names one nonce space: the job id and a digest of everything that goes into its headers."""
    job = work.job
    digest = hashlib.sha256(b"|".join([
        job.job_id.encode(), work.extranonce1, job.prevhash, job.coinb1, job.coinb2, *job.merkle_branch,
        struct.pack("<III", job.version, job.bits, job.ntime)])).hexdigest()
    return f"{job.job_id}:{digest[:16]}"


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str | None  # None: a valid share
    pow_value: int = 0
    header: bytes = b""


def check_shares(checks: list[tuple[JobState, Share]]) -> list[Verdict]:
    """Rebuild each header from the coordinator's own job and hash it: nothing from the worker is
    trusted but the extranonce2 and nonce, and those must lie in a range this coordinator issued.
    The headers are hashed in one call, side by side in SIMD lanes."""
    headers: list[bytes | None] = []
    for state, share in checks:
        position = state.space.position_of(share.extranonce2, share.nonce)
        if position is None or position >= state.space.position:
            headers.append(None)
            continue
        job = state.work.job
        headers.append(job.header(state.work.extranonce1, share.extranonce2, job.ntime, share.nonce))
    hashes = scrypt_many(b"".join(header for header in headers if header is not None))
    verdicts: list[Verdict] = []
    hashed = 0
    for (state, _), header in zip(checks, headers, strict=True):
        if header is None:
            verdicts.append(Verdict("not an issued range"))
            continue
        value = hash_to_int(hashes[hashed * POW_HASH_BYTES:(hashed + 1) * POW_HASH_BYTES])
        hashed += 1
        if value > state.share_target:
            verdicts.append(Verdict("low difficulty share", value))
        else:
            verdicts.append(Verdict(None, value, header))
    return verdicts


@dataclass(frozen=True, slots=True)
class PendingShare:
    state: JobState
    share: Share
    header: bytes


class Coordinator:
    """Coordinates one upstream session over a started `bus`."""

    def __init__(self, config: CoordinatorConfig, upstream: Upstream, bus: Bus, *,
                 accounting: Accounting | None = None, store: CursorStore | None = None) -> None:
        self.config = config
        self.upstream = upstream
        self.bus = bus
        self.accounting = accounting if accounting is not None else Accounting()
        self.store = store if store is not None else MemoryCursorStore()
        self.stats = CoordinatorStats()
        self.current: JobState | None = None
        self.throttle: ShareThrottle[PendingShare] = ShareThrottle(
            self._submit, self._is_stale, config.submit_rate, config.submit_burst, config.submit_queue)
        self._log = get_logger(component="coordinator", coordinator=config.coordinator_id,
                               upstream=upstream.name)
        self._key = coordinator_key(config.coordinator_id)
        self._states: OrderedDict[int, JobState] = OrderedDict()
        self._live_jobs: OrderedDict[str, None] = OrderedDict()
        self._jobs: asyncio.Queue[UpstreamWork | None] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._confirming: set[asyncio.Task[None]] = set()
        self._cursor: Cursor | None = None
        self._last_epoch = 0
        self._closing = False
        self._draining = False
        self._exhausted_logged = False
        topics = bus.config
        self.book = TaskBook(bus.partitions(topics.tasks_topic), config)
        self.results_partition = config.coordinator_id % bus.partitions(topics.results_topic)
        # Its own group, so a restart resumes at the last committed result; from the beginning when
        # there is none, or results that came back before the first fetch would be skipped.
        self._results = bus.assign(topics.results_topic, [self.results_partition],
                                   group=f"qscrypt-coordinator-{config.coordinator_id}", from_beginning=True)

    async def start(self) -> None:
        """Take the cursor, listen for results, then connect upstream (jobs start the work)."""
        config = self.config
        self._cursor = await self.store.open(config.coordinator_id, self.upstream.name)
        if self._cursor is not None:
            self._last_epoch = self._cursor.epoch
        await self._results.start()
        self.upstream.on_job(self._on_job)
        self.upstream.on_state(self._on_state)
        for name, coro in (("jobs", self._job_loop()), ("results", self._results_loop()),
                           ("tick", self._tick_loop()), ("submit", self.throttle.run())):
            self._tasks.append(asyncio.create_task(coro, name=f"coordinator-{name}"))
        await self.upstream.start()
        self._log.info("coordinator.started", results_partition=self.results_partition,
                       resumable_job=self._cursor.job_key if self._cursor else None)

    def drain(self) -> None:
        """Issue no new ranges; tasks already out still complete (and are re-issued if lost)."""
        self._draining = True

    @property
    def drained(self) -> bool:
        return self._draining and not self.book.outstanding and not self.book.given_back

    async def close(self) -> None:
        """Stop without announcing an inactive epoch: a restarted coordinator resumes the same one."""
        self._closing = True
        await cancel_and_wait([*self._tasks, *self._confirming])
        with contextlib.suppress(BusError):
            await self._results.close()
        await self.upstream.close()
        await self.store.close()

    def _on_job(self, upstream: Upstream, work: UpstreamWork) -> None:
        self._jobs.put_nowait(work)

    def _on_state(self, upstream: Upstream) -> None:
        if not upstream.healthy and not self._closing:
            self._jobs.put_nowait(None)

    async def _job_loop(self) -> None:
        while True:
            work = await self._jobs.get()
            failures = 0
            while True:
                try:
                    if work is None:
                        await self._deactivate()
                    else:
                        await self._switch(work)
                    break
                except StoreError as exc:
                    self._log.warning("coordinator.job_switch_failed", error=str(exc))
                    if not self._jobs.empty():
                        break  # newer work supersedes this one
                    await asyncio.sleep(backoff_s(_BACKOFF_S, failures))
                    failures += 1
            await self._fill()

    async def _switch(self, work: UpstreamWork) -> None:
        config = self.config
        job = work.job
        key = job_key(work)
        current = self.current
        if current is not None and job_key(current.work) == key:
            # The same job sent again (pools do, with a new difficulty): same epoch, work goes on.
            current.work = work
            if config.share_difficulty is None:
                current.share_target = work.target
            return
        saved = self._cursor
        # Same live job in the same extranonce1 after a restart: continue past every reserved position.
        resume = current is None and saved is not None and saved.job_key == key
        if resume:
            assert saved is not None
            epoch, position = saved.epoch, saved.reserved
        else:
            # Time-based floor: epochs keep rising across restarts even with the in-memory store.
            epoch, position = max(self._last_epoch + 1, int(time.time() * 1000)), 0
        space = NonceSpace(work.extranonce2_size, config.coordinator_id, config.id_bytes, position)
        share_target = work.target
        if config.share_difficulty is not None:
            # Never harder than the upstream's: a share the pool would take must reach the coordinator.
            share_target = max(share_target, share_difficulty_to_target(config.share_difficulty))
        cursor = Cursor(key, epoch, position + config.reserve_nonces)
        await self.store.save(cursor)
        state = JobState(work, epoch, space, share_target, bits_to_target(job.bits))
        async with self._lock:
            self._cursor, self._last_epoch = cursor, epoch
            if job.clean_jobs or current is None or current.work.extranonce1 != work.extranonce1:
                self._live_jobs.clear()
            self._live_jobs[job.job_id] = None
            while len(self._live_jobs) > _LIVE_JOBS:
                self._live_jobs.popitem(last=False)
            self.current = state
            self._states[epoch] = state
            while len(self._states) > _RECENT_EPOCHS:
                self._states.popitem(last=False)
            self.book.new_epoch(epoch)
            self._exhausted_logged = False
        self.stats.jobs += 1
        self.throttle.purge()
        await self._announce(state, active=True)
        self._log.info("coordinator.job", job=job.job_id, epoch=epoch, resumed=resume, position=position,
                       share_difficulty=state.share_difficulty)

    async def _deactivate(self) -> None:
        async with self._lock:
            state, self.current = self.current, None
            self._live_jobs.clear()
        self.throttle.purge()
        if state is not None:
            await self._announce(state, active=False)
            self._log.info("coordinator.inactive", epoch=state.epoch, reason="upstream down")

    async def _announce(self, state: JobState, active: bool) -> None:
        """Publish the epoch to every worker, retrying while the bus is down unless newer work is queued
        (its own announcement supersedes this one)."""
        epoch = Epoch(self.config.coordinator_id, state.epoch, state.work.job.job_id, self.results_partition,
                      active, time.time())
        failures = 0
        while True:
            try:
                await self.bus.publish(self.bus.config.control_topic, encode(epoch), key=self._key)
                return
            except BusUnavailable as exc:
                self._log.warning("coordinator.announce_failed", epoch=state.epoch, error=str(exc))
                if not self._jobs.empty():
                    return
                await asyncio.sleep(backoff_s(_BACKOFF_S, failures))
                failures += 1

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            await self._fill()

    async def _fill(self) -> None:
        """Issue what the book asks for: re-issues first, then new ranges from the cursor."""
        async with self._lock:
            state = self.current
            if state is None:
                return
            now = time.monotonic()
            sends = [(entry.task, partition) for entry, partition in self.book.expired(now)]
            for partition, count in self.book.wants(now):
                # Pieces stopping workers handed back go out first (also while draining: they are owed).
                taken: Range | Piece | None = self.book.take_given_back(count)
                if taken is None:
                    if self._draining:
                        break
                    taken = state.space.take(count)
                    if taken is None:
                        if not self._exhausted_logged:
                            self._log.warning("coordinator.space_exhausted", epoch=state.epoch)
                            self._exhausted_logged = True
                        break
                    if not await self._reserve(taken.end):
                        break
                task = Task(TaskId(self.config.coordinator_id, state.epoch, taken.position),
                            state.work.job.job_id, taken.extranonce2, taken.nonce_start, taken.nonce_count,
                            state.share_target, state.header_prefix(taken.extranonce2),
                            self.results_partition, time.time())
                self.book.add(task, partition, now)
                sends.append((task, partition))
            by_partition: dict[int, list[Task]] = {}
            for task, partition in sends:
                by_partition.setdefault(partition, []).append(task)
            acks: list[tuple[list[Task], Awaitable[None]]] = []
            unsent: list[Task] = []
            for partition, tasks in by_partition.items():
                for start in range(0, len(tasks), MAX_BATCH):
                    chunk = tasks[start:start + MAX_BATCH]
                    if unsent:
                        unsent += chunk
                        continue
                    try:
                        ack = await self.bus.send(self.bus.config.tasks_topic, encode_batch(chunk),
                                                  key=self._key, partition=partition)
                        acks.append((chunk, ack))
                    except BusUnavailable as exc:
                        self._log.warning("coordinator.send_failed", error=str(exc))
                        unsent += chunk
            for task in unsent:
                self.book.undelivered(task.id.seq)
            self.stats.tasks_issued += sum(len(chunk) for chunk, _ in acks)
            self.stats.task_records += len(acks)
        if acks:
            confirm = asyncio.create_task(self._confirm(acks))
            self._confirming.add(confirm)
            confirm.add_done_callback(self._confirming.discard)

    async def _reserve(self, end: int) -> bool:
        """Persist a reservation past `end` before issuing below it; False when the store is down."""
        cursor = self._cursor
        assert cursor is not None
        if end <= cursor.reserved:
            return True
        updated = replace(cursor, reserved=end + self.config.reserve_nonces)
        try:
            await self.store.save(updated)
        except StoreError as exc:
            self._log.warning("coordinator.reserve_failed", error=str(exc))
            return False
        self._cursor = updated
        return True

    async def _confirm(self, acks: list[tuple[list[Task], Awaitable[None]]]) -> None:
        for tasks, ack in acks:
            try:
                await ack
            except BusUnavailable:
                for task in tasks:
                    if task.id.epoch == self.book.epoch:
                        self.book.undelivered(task.id.seq)

    async def _results_loop(self) -> None:
        failures = 0
        while True:
            try:
                records = await self._results.getmany(0.25, 4096)
            except BusUnavailable as exc:
                self._log.warning("coordinator.results_unavailable", error=str(exc))
                await asyncio.sleep(backoff_s(_BACKOFF_S, failures))
                failures += 1
                continue
            failures = 0
            if not records:
                continue
            now = time.monotonic()
            shares: list[Share] = []
            offsets: dict[int, int] = {}
            me = self.config.coordinator_id
            for record in records:
                offsets[record.partition] = record.offset + 1
                try:
                    messages = decode_all(record.value)
                except MessageError as exc:
                    self.stats.bad_messages += 1
                    self._log.warning("coordinator.bad_record", error=str(exc))
                    continue
                for message in messages:
                    if isinstance(message, Done):
                        if message.task.coordinator == me:
                            self.book.completed(message, now)
                    elif isinstance(message, Returned):
                        if message.task.coordinator == me:
                            self.book.returned(message, now)
                    elif isinstance(message, Share):
                        if message.task.coordinator == me:
                            shares.append(message)
                    elif isinstance(message, Heartbeat) and message.coordinator == me:
                        self.book.heartbeat(message, now)
            if shares:
                await self._check_shares(shares)
            await self._fill()
            try:
                await self._results.commit(offsets)
            except (BusUnavailable, CommitFailed) as exc:
                # Not fatal: the next commit covers these offsets too.
                self._log.warning("coordinator.commit_failed", error=str(exc))

    async def _check_shares(self, shares: list[Share]) -> None:
        checks: list[tuple[JobState, Share]] = []
        upstream = self.upstream.name
        for share in shares:
            state = self._states.get(share.task.epoch)
            if state is None:
                self.stats.shares_stale += 1
                # Its epoch is forgotten, and with it the difficulty it was issued at: the oldest
                # epoch still known is the closest (the shares table needs a positive one).
                difficulty = next((s.share_difficulty for s in self._states.values()), None)
                if difficulty is not None:
                    self.accounting.rejected(share.worker, upstream, "", difficulty, "stale epoch",
                                             stale=True)
                continue
            key = (share.extranonce2, share.nonce)
            if key in state.seen:
                self.stats.shares_duplicate += 1
                continue
            state.seen.add(key)
            checks.append((state, share))
        # Hashing in a thread: scrypt releases the GIL, and the loop keeps serving results.
        verdicts = await asyncio.get_running_loop().run_in_executor(None, check_shares, checks)
        for (state, share), verdict in zip(checks, verdicts, strict=True):
            job_id = state.work.job.job_id
            if verdict.reason is not None:
                self.stats.shares_invalid += 1
                self.accounting.rejected(share.worker, upstream, job_id, state.share_difficulty,
                                         verdict.reason, stale=False)
                self._log.warning("coordinator.bad_share", worker=share.worker, reason=verdict.reason)
                continue
            self.stats.shares_valid += 1
            self.accounting.accepted(share.worker, upstream, job_id, state.share_difficulty,
                                     hash_share_difficulty(verdict.pow_value))
            if verdict.pow_value <= state.work.target:
                self.throttle.offer(PendingShare(state, share, verdict.header),
                                    urgent=verdict.pow_value <= state.block_target)

    def _is_stale(self, pending: PendingShare) -> bool:
        current = self.current
        return (current is None or pending.state.work.extranonce1 != current.work.extranonce1
                or pending.state.work.job.job_id not in self._live_jobs)

    async def _submit(self, pending: PendingShare) -> None:
        job = pending.state.work.job
        share = pending.share
        self.stats.submitted += 1
        outcome = await self.upstream.submit(job.job_id, share.extranonce2, job.ntime, share.nonce,
                                             pending.header, share.worker,
                                             extranonce1=pending.state.work.extranonce1)
        if outcome.accepted:
            self.stats.accepted += 1
        else:
            self.stats.rejected += 1
            self._log.warning("coordinator.upstream_rejected", job=job.job_id, reason=outcome.reason)
