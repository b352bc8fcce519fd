"""The in-process task bus: Kafka's semantics (partitions, offsets, groups, rebalances) on asyncio.

The default when coordinator and workers share one process: no broker to run, and code above the
bus cannot tell the difference, because groups rebalance, uncommitted records are delivered again
and a compacted topic keeps the latest record per key exactly as with Kafka. Memory stays bounded:
a partition drops what every group reading it has committed, and never holds more than
`memory_max_records` (Kafka's retention, counted in records).
"""

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Generator, Iterable, Mapping

from qscrypt.bus.base import Bus, BusError, CommitFailed, RebalanceListener, Record, Subscription
from qscrypt.bus.config import BusConfig


class _Acked:
    """An acknowledgement that is already complete: in-process sends land synchronously."""

    def __await__(self) -> Generator[None, None, None]:
        return
        yield  # makes this a generator function: awaiting it returns at once


_ACKED = _Acked()


class _Wakeup:
    """Wakes every waiter on the next `notify`; cheap when nobody waits (the common case at load)."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def notify(self) -> None:
        if self._future is not None:
            if not self._future.done():
                self._future.set_result(None)
            self._future = None

    async def wait(self, timeout_s: float) -> None:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        # asyncio.wait, not wait_for: the future is shared and a timeout must not cancel it for others.
        await asyncio.wait({self._future}, timeout=timeout_s)


class _Partition:
    def __init__(self, topic: str, index: int, compacted: bool, max_records: int) -> None:
        self.topic = topic
        self.index = index
        self.compacted = compacted
        self.max_records = max_records
        self.records: deque[Record] = deque()
        self.next_offset = 0

    @property
    def first_offset(self) -> int:
        return self.records[0].offset if self.records else self.next_offset

    def append(self, key: bytes | None, value: bytes) -> None:
        if self.compacted and key is not None:
            # Compaction, done eagerly: compacted topics here are tiny (one record per coordinator).
            self.records = deque(r for r in self.records if r.key != key)
        self.records.append(Record(self.topic, self.index, self.next_offset, key, value))
        self.next_offset += 1
        if len(self.records) > self.max_records:
            self.records.popleft()

    def read(self, offset: int, limit: int) -> list[Record]:
        if not self.records or offset >= self.next_offset:
            return []
        if self.compacted:  # offsets have gaps: filter
            return [r for r in self.records if r.offset >= offset][:limit]
        start = max(0, offset - self.first_offset)
        return list(itertools.islice(self.records, start, start + limit))

    def trim(self, below: int) -> None:
        while self.records and self.records[0].offset < below:
            self.records.popleft()


class _Topic:
    def __init__(self, name: str, partitions: int, compacted: bool, max_records: int) -> None:
        self.name = name
        self.partitions = [_Partition(name, i, compacted, max_records) for i in range(partitions)]
        self.wakeup = _Wakeup()
        self.groups: set[str] = set()  # groups whose commits hold back trimming


class InProcessBus(Bus):
    def __init__(self, config: BusConfig) -> None:
        super().__init__(config)
        self._topics: dict[str, _Topic] = {}
        self._committed: dict[tuple[str, str], dict[int, int]] = {}  # (group, topic) -> partition -> offset
        self._groups: dict[tuple[str, str], _Group] = {}

    async def start(self) -> None:
        config = self.config
        for name, partitions, compacted in (
            (config.tasks_topic, config.task_partitions, False),
            (config.results_topic, config.result_partitions, False),
            (config.control_topic, config.control_partitions, True),
        ):
            self._topics.setdefault(name, _Topic(name, partitions, compacted, config.memory_max_records))

    async def close(self) -> None:
        for group in list(self._groups.values()):
            for member in list(group.members):
                await member.close()

    def topic(self, name: str) -> _Topic:
        try:
            return self._topics[name]
        except KeyError:
            raise BusError(f"no topic {name!r} (is the bus started?)") from None

    def partitions(self, topic: str) -> int:
        return len(self.topic(topic).partitions)

    async def send(self, topic: str, value: bytes, *, key: bytes | None = None,
                   partition: int | None = None) -> Awaitable[None]:
        target = self.topic(topic)
        if partition is None:
            # Kafka hashes keys with murmur2; any stable hash gives the property that matters here.
            partition = hash(key) % len(target.partitions) if key is not None else 0
        target.partitions[partition].append(key, value)
        target.wakeup.notify()
        return _ACKED

    def subscribe(self, topic: str, group: str, listener: RebalanceListener | None = None) -> Subscription:
        state = self._groups.get((group, topic))
        if state is None:
            state = self._groups[(group, topic)] = _Group(self, group, self.topic(topic))
        return _GroupMember(state, listener)

    def assign(self, topic: str, partitions: Iterable[int], *, group: str | None = None,
               from_beginning: bool = False) -> Subscription:
        return _Assigned(self, self.topic(topic), frozenset(partitions), group, from_beginning)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return self._committed.setdefault((group, topic), {})

    def record_commit(self, group: str, topic: _Topic, offsets: Mapping[int, int]) -> None:
        committed = self.committed(group, topic.name)
        committed.update(offsets)
        for index in offsets:
            floor = min(self.committed(g, topic.name).get(index, 0) for g in topic.groups)
            topic.partitions[index].trim(floor)


class _Reader(Subscription):
    """Reads assigned partitions from per-partition positions; fair across partitions."""

    def __init__(self, bus: InProcessBus, topic: _Topic) -> None:
        self._bus = bus
        self._topic = topic
        self._positions: dict[int, int] = {}
        self._closed = False
        self._turn = 0

    @property
    def assignment(self) -> frozenset[int]:
        return frozenset(self._positions)

    async def lag(self) -> int | None:
        partitions = self._topic.partitions
        return sum(max(0, partitions[i].next_offset - max(position, partitions[i].first_offset))
                   for i, position in self._positions.items())

    async def getmany(self, timeout_s: float, max_records: int) -> list[Record]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self._closed:
            records = self._read(max_records)
            if records:
                return records
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            await self._topic.wakeup.wait(remaining)
        return []

    def _read(self, limit: int) -> list[Record]:
        out: list[Record] = []
        order = sorted(self._positions)
        if not order:
            return out
        self._turn = (self._turn + 1) % len(order)
        for index in order[self._turn:] + order[: self._turn]:
            partition = self._topic.partitions[index]
            position = max(self._positions[index], partition.first_offset)
            records = partition.read(position, limit - len(out))
            if records:
                self._positions[index] = records[-1].offset + 1
                out += records
            if len(out) >= limit:
                break
        return out

    def _start_positions(self, partitions: Iterable[int], group: str | None, from_beginning: bool) -> None:
        committed = self._bus.committed(group, self._topic.name) if group is not None else {}
        for index in partitions:
            partition = self._topic.partitions[index]
            default = partition.first_offset if from_beginning else partition.next_offset
            self._positions[index] = committed.get(index, default)


class _Group:
    def __init__(self, bus: InProcessBus, name: str, topic: _Topic) -> None:
        self.bus = bus
        self.name = name
        self.topic = topic
        self.members: list[_GroupMember] = []
        self.lock = asyncio.Lock()
        topic.groups.add(name)

    async def join(self, member: "_GroupMember") -> None:
        async with self.lock:
            await self._revoke_all()
            self.members.append(member)
            await self._assign_all()

    async def leave(self, member: "_GroupMember") -> None:
        async with self.lock:
            if member not in self.members:
                return
            self.members.remove(member)
            member.drop_assignment()
            await self._revoke_all()
            await self._assign_all()

    async def _revoke_all(self) -> None:
        for member in self.members:
            await member.revoke()

    async def _assign_all(self) -> None:
        # Kafka's round-robin assignor: partition i to member i mod n, members in join order.
        count = len(self.topic.partitions)
        for position, member in enumerate(self.members):
            await member.assign(frozenset(range(position, count, len(self.members))))
        self.topic.wakeup.notify()


class _GroupMember(_Reader):
    def __init__(self, group: _Group, listener: RebalanceListener | None) -> None:
        super().__init__(group.bus, group.topic)
        self._group = group
        self._listener = listener

    async def start(self) -> None:
        await self._group.join(self)

    async def revoke(self) -> None:
        if self._listener is not None and self._positions:
            await self._listener.on_revoked(self.assignment)
        self.drop_assignment()

    def drop_assignment(self) -> None:
        self._positions = {}

    async def assign(self, partitions: frozenset[int]) -> None:
        # Uncommitted records of a partition are read again by its next owner: at-least-once.
        self._start_positions(partitions, self._group.name, from_beginning=True)
        if self._listener is not None:
            await self._listener.on_assigned(partitions)

    async def commit(self, offsets: Mapping[int, int]) -> None:
        lost = set(offsets) - set(self._positions)
        if lost:
            raise CommitFailed(f"partitions {sorted(lost)} were reassigned before the commit")
        self._group.bus.record_commit(self._group.name, self._topic, offsets)

    async def close(self) -> None:
        self._closed = True
        await self._group.leave(self)


class _Assigned(_Reader):
    def __init__(self, bus: InProcessBus, topic: _Topic, partitions: frozenset[int], group: str | None,
                 from_beginning: bool) -> None:
        super().__init__(bus, topic)
        self._partitions = partitions
        self._group = group
        self._from_beginning = from_beginning
        if group is not None:
            topic.groups.add(group)

    async def start(self) -> None:
        self._start_positions(self._partitions, self._group, self._from_beginning)

    async def commit(self, offsets: Mapping[int, int]) -> None:
        if self._group is None:
            raise BusError("commit needs a group")
        self._bus.record_commit(self._group, self._topic, offsets)

    async def close(self) -> None:
        self._closed = True
        self._topic.wakeup.notify()
