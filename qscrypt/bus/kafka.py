"""The task bus on Apache Kafka, through aiokafka.

aiokafka already reconnects with backoff when a broker goes away; what it surfaces (a send or commit
that timed out, a broker not reachable at start) becomes BusUnavailable, and callers retry. Offsets
are committed only by hand: nothing here commits behind the caller's back, which is what makes
"commit after the result is produced" at-least-once.
"""

import asyncio
import ssl
from collections.abc import Awaitable, Generator, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, for_code

from qscrypt.bus.base import (
    Bus,
    BusError,
    BusUnavailable,
    CommitFailed,
    RebalanceListener,
    Record,
    Subscription,
)
from qscrypt.bus.config import BusConfig
from qscrypt.log import get_logger

_TOPIC_ALREADY_EXISTS = 36


def ssl_context(config: BusConfig) -> ssl.SSLContext | None:
    """Verify the broker against `ssl_cafile` (or the system CAs) and its hostname; mTLS with a cert."""
    if config.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=str(config.ssl_cafile) if config.ssl_cafile else None)
    if config.ssl_certfile is not None and config.ssl_keyfile is not None:
        context.load_cert_chain(str(config.ssl_certfile), str(config.ssl_keyfile))
    return context


def client_options(config: BusConfig) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in config.bootstrap.split(",") if s.strip()],
        "security_protocol": config.security_protocol,
        "ssl_context": ssl_context(config),
        "request_timeout_ms": config.request_timeout_ms,
        "retry_backoff_ms": config.retry_backoff_ms,
    }
    if config.security_protocol.startswith("SASL"):
        options |= {"sasl_mechanism": config.sasl_mechanism, "sasl_plain_username": config.sasl_username,
                    "sasl_plain_password": config.sasl_password}
    return options


class KafkaBus(Bus):
    def __init__(self, config: BusConfig) -> None:
        super().__init__(config)
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, int] = {}
        self._log = get_logger(component="bus", bootstrap=config.bootstrap)

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(**client_options(self.config), acks="all",
                                    linger_ms=self.config.linger_ms, max_batch_size=256 * 1024)
        try:
            await producer.start()
            await self._ensure_topics()
            for topic in (self.config.tasks_topic, self.config.results_topic, self.config.control_topic):
                self._partitions[topic] = len(await producer.partitions_for(topic))
        except (KafkaError, OSError) as exc:
            await producer.stop()
            raise BusUnavailable(f"Kafka at {self.config.bootstrap}: {exc}") from exc
        self._producer = producer

    async def _ensure_topics(self) -> None:
        config = self.config
        delete = {"cleanup.policy": "delete"}
        topics = [
            NewTopic(config.tasks_topic, config.task_partitions, config.replication_factor,
                     topic_configs=delete | {"retention.ms": str(config.task_retention_ms)}),
            NewTopic(config.results_topic, config.result_partitions, config.replication_factor,
                     topic_configs=delete | {"retention.ms": str(config.result_retention_ms)}),
            # Compacted: a worker reads it from the start and finds each coordinator's latest epoch.
            NewTopic(config.control_topic, config.control_partitions, config.replication_factor,
                     topic_configs={"cleanup.policy": "compact", "segment.ms": str(config.control_segment_ms),
                                    "min.cleanable.dirty.ratio": "0.1"}),
        ]
        admin = AIOKafkaAdminClient(**client_options(config))
        await admin.start()
        try:
            response = await admin.create_topics(topics)
        finally:
            await admin.close()
        for topic, code, *message in response.topic_errors:
            if code and code != _TOPIC_ALREADY_EXISTS:
                raise for_code(code)(f"creating topic {topic}: {message[0] if message else ''}")
            if not code:
                self._log.info("bus.topic_created", topic=topic)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def partitions(self, topic: str) -> int:
        try:
            return self._partitions[topic]
        except KeyError:
            raise BusError(f"no topic {topic!r} (is the bus started?)") from None

    async def send(self, topic: str, value: bytes, *, key: bytes | None = None,
                   partition: int | None = None) -> Awaitable[None]:
        if self._producer is None:
            raise BusError("bus not started")
        try:
            future = await self._producer.send(topic, value, key=key, partition=partition)
        except KafkaError as exc:
            raise BusUnavailable(f"send to {topic}: {exc}") from exc
        return _Ack(future, topic)

    def subscribe(self, topic: str, group: str, listener: RebalanceListener | None = None) -> Subscription:
        consumer = AIOKafkaConsumer(
            **client_options(self.config), group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
            max_poll_interval_ms=self.config.max_poll_interval_ms,
            fetch_max_wait_ms=self.config.fetch_max_wait_ms,
        )
        return _KafkaSubscription(consumer, topic, listener=listener)

    def assign(self, topic: str, partitions: Iterable[int], *, group: str | None = None,
               from_beginning: bool = False) -> Subscription:
        consumer = AIOKafkaConsumer(
            **client_options(self.config), group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            fetch_max_wait_ms=self.config.fetch_max_wait_ms,
        )
        return _KafkaSubscription(consumer, topic, fixed=frozenset(partitions))


class _Ack:
    """aiokafka's delivery future with its errors as BusUnavailable; an object, not a coroutine, so
    one left unawaited (its sender gave up) raises no warning."""

    __slots__ = ("_future", "_topic")

    def __init__(self, future: "asyncio.Future[Any]", topic: str) -> None:
        self._future = future
        self._topic = topic

    def __await__(self) -> Generator[Any, None, None]:
        try:
            yield from self._future.__await__()
        except KafkaError as exc:
            raise BusUnavailable(f"send to {self._topic}: {exc}") from exc


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no types
    def __init__(self, listener: RebalanceListener) -> None:
        self._listener = listener

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._listener.on_revoked(frozenset(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._listener.on_assigned(frozenset(tp.partition for tp in assigned))


class _KafkaSubscription(Subscription):
    def __init__(self, consumer: AIOKafkaConsumer, topic: str, *, listener: RebalanceListener | None = None,
                 fixed: frozenset[int] | None = None) -> None:
        self._consumer = consumer
        self._topic = topic
        self._listener = listener
        self._fixed = fixed

    async def start(self) -> None:
        try:
            await self._consumer.start()
        except (KafkaError, OSError) as exc:
            await self._consumer.stop()
            raise BusUnavailable(f"consumer of {self._topic}: {exc}") from exc
        if self._fixed is None:
            listener = _Listener(self._listener) if self._listener is not None else None
            self._consumer.subscribe([self._topic], listener=listener)
        else:
            self._consumer.assign([TopicPartition(self._topic, p) for p in sorted(self._fixed)])

    @property
    def assignment(self) -> frozenset[int]:
        return frozenset(tp.partition for tp in self._consumer.assignment())

    async def lag(self) -> int | None:
        partitions = list(self._consumer.assignment())
        if not partitions:
            return None
        try:
            ends = await self._consumer.end_offsets(partitions)
            positions = [await self._consumer.position(tp) for tp in partitions]
        except KafkaError:
            return None  # unknown for now; the caller falls back to reading until a poll is empty
        return sum(max(0, int(ends[tp]) - int(position))
                   for tp, position in zip(partitions, positions, strict=True))

    async def getmany(self, timeout_s: float, max_records: int) -> list[Record]:
        try:
            batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise BusUnavailable(f"fetch from {self._topic}: {exc}") from exc
        return [Record(tp.topic, tp.partition, message.offset, message.key, message.value)
                for tp, messages in batches.items() for message in messages]

    async def commit(self, offsets: Mapping[int, int]) -> None:
        if not offsets:
            return
        try:
            await self._consumer.commit({TopicPartition(self._topic, p): o for p, o in offsets.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            raise CommitFailed(str(exc)) from exc
        except KafkaError as exc:
            raise BusUnavailable(f"commit on {self._topic}: {exc}") from exc

    async def close(self) -> None:
        await self._consumer.stop()
