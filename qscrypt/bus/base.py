"""The task bus interface: topics of partitioned, ordered records; consumer groups; offset commits.

Its semantics are Kafka's, so code written against it behaves the same on either implementation:
- a record goes to one partition (given, or chosen by key) and keeps its order there;
- a consumer group spreads a topic's partitions over its members; when members come and go the
  partitions move (`on_revoked` then `on_assigned`) and the new owner starts at the last
  committed offset, so whatever was read but not committed is delivered again (at-least-once);
- a plain assignment (no group) reads chosen partitions, e.g. every partition of a broadcast topic.
"""

import abc
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from qscrypt.bus.config import BusConfig


class BusError(Exception):
    """The bus could not do what was asked."""


class BusUnavailable(BusError):
    """The broker is unreachable for now (restarting, network): retry after a backoff."""


class CommitFailed(BusError):
    """The partitions moved to another group member first: it gets those records again."""


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class RebalanceListener(Protocol):
    async def on_revoked(self, partitions: frozenset[int]) -> None:
        """Called before partitions move away; commit what was finished before returning."""

    async def on_assigned(self, partitions: frozenset[int]) -> None: ...


class Subscription(abc.ABC):
    """One consumer: a group member of one topic, or a fixed set of partitions."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def getmany(self, timeout_s: float, max_records: int) -> list[Record]:
        """Up to `max_records` records, in partition order within each partition; [] after the timeout."""

    @abc.abstractmethod
    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Record `partition -> next offset to read` for the group; raises CommitFailed or BusUnavailable."""

    @property
    @abc.abstractmethod
    def assignment(self) -> frozenset[int]: ...

    async def lag(self) -> int | None:
        """Records between this consumer's positions and the ends of its partitions now; None where the
        bus cannot say. Lets a reader catch up with a topic without waiting for an empty poll."""
        return None

    @abc.abstractmethod
    async def close(self) -> None:
        """Leave the group; uncommitted records go to whoever owns their partitions next."""


class Bus(abc.ABC):
    def __init__(self, config: BusConfig) -> None:
        self.config = config

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and create the three topics if they are missing."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def partitions(self, topic: str) -> int:
        """How many partitions `topic` has (known after `start`)."""

    @abc.abstractmethod
    async def send(self, topic: str, value: bytes, *, key: bytes | None = None,
                   partition: int | None = None) -> Awaitable[None]:
        """Queue a record; the returned awaitable completes once the bus has it (raises BusUnavailable)."""

    async def publish(self, topic: str, value: bytes, *, key: bytes | None = None,
                      partition: int | None = None) -> None:
        """Send and wait for the acknowledgement."""
        await (await self.send(topic, value, key=key, partition=partition))

    @abc.abstractmethod
    def subscribe(self, topic: str, group: str, listener: RebalanceListener | None = None) -> Subscription:
        """A member of consumer group `group` on `topic` (call `start` on it)."""

    @abc.abstractmethod
    def assign(self, topic: str, partitions: Iterable[int], *, group: str | None = None,
               from_beginning: bool = False) -> Subscription:
        """A consumer of exactly `partitions`; with `group`, resumes at (and commits) that group's offsets.

        Without a committed offset it starts at the beginning or, by default, at the end.
        """

