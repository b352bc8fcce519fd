"""Which tasks are out, who is working, and what to issue next (sans-I/O: the clock is passed in).

Workers own task partitions (Kafka's consumer group decides; each worker reports its assignment in
heartbeats). The coordinator keeps `tasks_ahead` tasks queued for each live worker, each sized so it
takes `task_seconds` at that worker's measured rate, by writing to that worker's partitions. A
partition with no known live owner gets one task at the initial size, so a new worker always finds
work and so reveals its rate and assignment.

A worker that stops mid-task (its Qubic idle phase ends) hands the unhashed pieces of its tasks back
(`Returned`); they wait in `given_back` and are issued again before any new range is cut, so a range
is neither lost nor hashed twice however often workers come and go.
"""

import time
from collections import deque
from dataclasses import dataclass, field, replace

from proxy.coordinator.config import CoordinatorConfig
from qscrypt.bus.messages import Done, Heartbeat, Returned, Status, Task

_RATE_WEIGHT = 0.3  # EWMA weight of a new rate sample: follows a worker within a few tasks
_MIN_SAMPLE_S = 0.05  # shorter searches are dominated by overheads, not hashing


@dataclass
class WorkerView:
    id: str
    last_seen: float
    rate: float = 0.0
    partitions: frozenset[int] = frozenset()
    tasks_done: int = 0
    hashes_done: int = 0


@dataclass
class Outstanding:
    task: Task
    partition: int
    sent_at: float
    delivered: bool = True


@dataclass(frozen=True, slots=True)
class Piece:
    """An unhashed piece of a handed-back task: its own position in the nonce space, so it is a task."""

    position: int
    extranonce2: bytes
    nonce_start: int
    nonce_count: int


def _same_range(task: Task, result: Done | Returned) -> bool:
    # A piece handed back from a task's first nonce has the task's seq: only the range tells them apart.
    return (task.extranonce2, task.nonce_start, task.nonce_count) == (
        result.extranonce2, result.nonce_start, result.nonce_count)


def unhashed_pieces(task: Task, unhashed: tuple[tuple[int, int], ...]) -> list[Piece]:
    """The pieces a worker says it left, checked to lie inside the task, ascending and apart; if they do
    not (a broken or lying worker), the whole range: hashing part of it twice beats losing any."""
    end = task.nonce_start + task.nonce_count
    pieces: list[Piece] = []
    at = task.nonce_start
    for start, count in unhashed:
        if count < 1 or start < at or start + count > end:
            return [Piece(task.id.seq, task.extranonce2, task.nonce_start, task.nonce_count)]
        pieces.append(Piece(task.id.seq + start - task.nonce_start, task.extranonce2, start, count))
        at = start + count
    return pieces


@dataclass
class BookStats:
    completed: int = 0
    duplicates: int = 0  # results for tasks already complete: redeliveries, re-issues
    cancelled: int = 0
    reissued: int = 0
    returned: int = 0  # tasks handed back, whole or in part, by stopping workers
    hashes: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=1 << 16))  # issue -> result, s


class TaskBook:
    def __init__(self, partitions: int, config: CoordinatorConfig) -> None:
        self.partitions = partitions
        self.config = config
        self.workers: dict[str, WorkerView] = {}
        self.owner: dict[int, str] = {}
        self.outstanding: dict[int, Outstanding] = {}  # by task seq (its position), current epoch only
        self.queued = [0] * partitions
        self.given_back: deque[Piece] = deque()  # current epoch only, issued again before new ranges
        self.epoch: int | None = None
        self.stats = BookStats()

    def new_epoch(self, epoch: int) -> None:
        """Tasks of older epochs are stale: workers skip them, so they no longer count as queued."""
        self.epoch = epoch
        self.outstanding.clear()
        self.given_back.clear()
        self.queued = [0] * self.partitions

    def _worker(self, worker_id: str, now: float) -> WorkerView:
        view = self.workers.get(worker_id)
        if view is None:
            view = self.workers[worker_id] = WorkerView(worker_id, now)
        view.last_seen = now
        return view

    def heartbeat(self, beat: Heartbeat, now: float) -> None:
        view = self._worker(beat.worker, now)
        if beat.rate > 0:
            view.rate = beat.rate
        for partition in view.partitions - beat.partitions:
            if self.owner.get(partition) == beat.worker:
                del self.owner[partition]
        view.partitions = frozenset(p for p in beat.partitions if p < self.partitions)
        for partition in view.partitions:
            self.owner[partition] = beat.worker

    def completed(self, done: Done, now: float) -> bool:
        """Record a result; False when it repeats one already counted (a redelivery)."""
        view = self._worker(done.worker, now)
        if done.status is not Status.STALE:
            self._sample(view, done.hashes_done, done.elapsed_s)
        if done.task.epoch != self.epoch:
            return False
        entry = self.outstanding.get(done.task.seq)
        if entry is None or not _same_range(entry.task, done):
            self.stats.duplicates += 1
            return False
        del self.outstanding[done.task.seq]
        self.queued[entry.partition] -= 1
        view.tasks_done += 1
        view.hashes_done += done.hashes_done
        self.stats.hashes += done.hashes_done
        if done.status is Status.CANCELLED:
            self.stats.cancelled += 1
        else:
            self.stats.completed += 1
        self.stats.latencies.append(max(0.0, time.time() - done.issued_at))
        return True

    def returned(self, back: Returned, now: float) -> bool:
        """A stopping worker's hand-back: what it hashed counts, its unhashed pieces wait in `given_back`.
        False when it repeats a result already counted, or its epoch is over (nothing to issue again)."""
        view = self._worker(back.worker, now)
        self._sample(view, back.hashes_done, back.elapsed_s)
        if back.task.epoch != self.epoch:
            return False
        entry = self.outstanding.get(back.task.seq)
        if entry is None or not _same_range(entry.task, back):
            self.stats.duplicates += 1
            return False
        del self.outstanding[back.task.seq]
        self.queued[entry.partition] -= 1
        self.given_back.extend(unhashed_pieces(entry.task, back.unhashed))
        view.hashes_done += back.hashes_done
        self.stats.hashes += back.hashes_done
        self.stats.returned += 1
        return True

    def take_given_back(self, count: int) -> Piece | None:
        """Up to `count` nonces of the oldest handed-back piece (the rest stays, itself a piece)."""
        if not self.given_back:
            return None
        piece = self.given_back[0]
        if piece.nonce_count <= count:
            return self.given_back.popleft()
        self.given_back[0] = Piece(piece.position + count, piece.extranonce2, piece.nonce_start + count,
                                   piece.nonce_count - count)
        return Piece(piece.position, piece.extranonce2, piece.nonce_start, count)

    @staticmethod
    def _sample(view: WorkerView, hashes: int, elapsed_s: float) -> None:
        if elapsed_s >= _MIN_SAMPLE_S and hashes:
            sample = hashes / elapsed_s
            view.rate = sample if not view.rate else (1 - _RATE_WEIGHT) * view.rate + _RATE_WEIGHT * sample

    def alive(self, now: float) -> list[WorkerView]:
        return [w for w in self.workers.values() if now - w.last_seen <= self.config.worker_timeout_s]

    def size_for(self, view: WorkerView) -> int:
        config = self.config
        if view.rate <= 0:
            return config.initial_nonces
        return int(min(config.max_nonces, max(config.min_nonces, view.rate * config.task_seconds)))

    def wants(self, now: float) -> list[tuple[int, int]]:
        """(partition, nonce count) for each task to issue now."""
        plan: list[tuple[int, int]] = []
        owned: set[int] = set()
        queued = self.queued
        # With several coordinators on one worker group, each keeps its own tasks_ahead per worker.
        for view in self.alive(now):
            mine = [p for p in view.partitions if self.owner.get(p) == view.id]
            if not mine:
                continue
            owned.update(mine)
            size = self.size_for(view)
            need = self.config.tasks_ahead - sum(queued[p] for p in mine)
            order = sorted(mine, key=queued.__getitem__)  # the emptiest partitions first
            plan += [(order[i % len(order)], size) for i in range(need)]
        for partition in range(self.partitions):
            if partition not in owned and queued[partition] == 0:
                plan.append((partition, self.config.initial_nonces))
        return plan

    def add(self, task: Task, partition: int, now: float) -> None:
        self.outstanding[task.id.seq] = Outstanding(task, partition, now)
        self.queued[partition] += 1

    def undelivered(self, seq: int) -> None:
        """The bus refused the task: issue it again at the next chance, to any partition."""
        entry = self.outstanding.get(seq)
        if entry is not None:
            entry.delivered = False

    def expired(self, now: float) -> list[tuple[Outstanding, int]]:
        """Tasks to send again and the partition for each: undelivered ones, and ones past the timeout
        for which a live worker other than the partition's owner exists."""
        moves: list[tuple[Outstanding, int, bool]] = []
        alive = self.alive(now)
        for entry in self.outstanding.values():
            late = now - entry.sent_at > self.config.task_timeout_s
            if entry.delivered and not (late and entry.task.attempt + 1 < self.config.max_attempts):
                continue
            stuck_owner = self.owner.get(entry.partition) if entry.delivered else None
            choices = [p for w in alive if w.id != stuck_owner
                       for p in w.partitions if self.owner.get(p) == w.id]
            if not choices:
                if entry.delivered:
                    continue
                choices = [entry.partition]
            moves.append((entry, min(choices, key=lambda p: self.queued[p]), entry.delivered))
        for entry, partition, late in moves:
            if late:
                entry.task = replace(entry.task, attempt=entry.task.attempt + 1)
                self.stats.reissued += 1
            self.queued[entry.partition] -= 1
            self.queued[partition] += 1
            entry.partition = partition
            entry.sent_at = now
            entry.delivered = True
        return [(entry, partition) for entry, partition, _ in moves]
