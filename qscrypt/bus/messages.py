"""What coordinators and workers say to each other on the bus, and its binary encoding.

Binary with `struct`, not JSON: a task is ~150 bytes and encodes in a couple of microseconds, and
the bus carries tens of thousands of them a second. The first byte names the message kind. A record
may hold a batch of messages for the same destination (`encode_batch`): the Kafka client's cost is
per record, so tasks issued together, and the results of one poll, travel as one record.

A task id is (coordinator, epoch, seq) where seq is the position of the task's first nonce in the
coordinator's nonce space for that epoch: unique for ever, because a coordinator never reuses an
epoch (it persists them) and never issues a position twice. A task delivered twice is the same range
twice, and the coordinator counts it once.
"""

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from qscrypt.bus.base import BusError


class Kind(IntEnum):
    TASK = 1
    SHARE = 2
    DONE = 3
    HEARTBEAT = 4
    EPOCH = 5
    BATCH = 6
    RETURNED = 7


class Status(IntEnum):
    DONE = 0  # the whole range was hashed
    CANCELLED = 1  # the job changed while hashing: part of the range was hashed
    STALE = 2  # skipped without hashing: its epoch was already over


class MessageError(BusError):
    """A record that does not decode: logged and skipped, never fatal."""


@dataclass(frozen=True, slots=True)
class TaskId:
    coordinator: int
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class Task:
    id: TaskId
    job_id: str
    extranonce2: bytes
    nonce_start: int
    nonce_count: int
    target: int  # a found nonce must hash at or below this
    header_prefix: bytes  # 76 bytes: version, prevhash, merkle root for this extranonce2, ntime, nbits
    reply_partition: int  # results partition the coordinator reads
    issued_at: float  # unix time, for end-to-end latency
    attempt: int = 0  # >0 when re-issued after a timeout


@dataclass(frozen=True, slots=True)
class Share:
    task: TaskId
    worker: str
    extranonce2: bytes
    nonce: int


@dataclass(frozen=True, slots=True)
class Done:
    task: TaskId
    worker: str
    status: Status
    extranonce2: bytes
    nonce_start: int
    nonce_count: int
    hashes_done: int
    elapsed_s: float
    found: int
    issued_at: float


@dataclass(frozen=True, slots=True)
class Returned:
    """A task handed back by a worker that is stopping (Qubic's idle phase ending, SIGINT, SIGTERM):
    it hashed all of the task's range but the `unhashed` pieces, which the coordinator issues again.

    A plain `Done` cannot say this: a cancelled multi-threaded search leaves one unhashed tail per
    thread, and leaving the task uncommitted instead makes its next owner hash the done part again."""

    task: TaskId
    worker: str
    extranonce2: bytes
    nonce_start: int
    nonce_count: int
    hashes_done: int
    elapsed_s: float
    found: int
    unhashed: tuple[tuple[int, int], ...]  # (nonce_start, count), ascending, inside the task's range


@dataclass(frozen=True, slots=True)
class Heartbeat:
    coordinator: int  # which coordinator's results partition this went to
    worker: str
    rate: float  # H/s over the worker's recent searches
    partitions: frozenset[int]  # task partitions it owns now
    sent_at: float


@dataclass(frozen=True, slots=True)
class Epoch:
    """A coordinator's current epoch: tasks of older epochs are stale; inactive means stop it too."""

    coordinator: int
    epoch: int
    job_id: str
    results_partition: int
    active: bool
    sent_at: float


Message = Task | Share | Done | Returned | Heartbeat | Epoch

_TASK = struct.Struct(">BHQQHBdIQ32s76s")
_SHARE = struct.Struct(">BHQQI")
_DONE = struct.Struct(">BHQQBIQQdId")
_HEARTBEAT = struct.Struct(">BHdd")
_EPOCH = struct.Struct(">BHQHBd")
_RETURNED = struct.Struct(">BHQQIQQdIH")
_PIECE = struct.Struct(">IQ")
_BATCH = struct.Struct(">BH")
_LENGTH = struct.Struct(">H")
MAX_BATCH = 500  # messages per record: ~80 kB of tasks, well inside Kafka's 1 MB default


def coordinator_key(coordinator: int) -> bytes:
    """The record key of everything a coordinator sends or receives: its messages keep their order."""
    return coordinator.to_bytes(2, "big")


def encode(message: Message) -> bytes:
    if isinstance(message, Task):
        t = message.id
        fixed = _TASK.pack(Kind.TASK, t.coordinator, t.epoch, t.seq, message.reply_partition, message.attempt,
                           message.issued_at, message.nonce_start, message.nonce_count,
                           message.target.to_bytes(32, "big"), message.header_prefix)
        return fixed + _blob(message.extranonce2) + _blob(message.job_id.encode())
    if isinstance(message, Share):
        t = message.task
        return (_SHARE.pack(Kind.SHARE, t.coordinator, t.epoch, t.seq, message.nonce)
                + _blob(message.extranonce2) + _blob(message.worker.encode()))
    if isinstance(message, Done):
        t = message.task
        return (_DONE.pack(Kind.DONE, t.coordinator, t.epoch, t.seq, message.status, message.nonce_start,
                           message.nonce_count, message.hashes_done, message.elapsed_s, message.found,
                           message.issued_at)
                + _blob(message.extranonce2) + _blob(message.worker.encode()))
    if isinstance(message, Returned):
        t = message.task
        return (_RETURNED.pack(Kind.RETURNED, t.coordinator, t.epoch, t.seq, message.nonce_start,
                               message.nonce_count, message.hashes_done, message.elapsed_s, message.found,
                               len(message.unhashed))
                + b"".join(_PIECE.pack(start, count) for start, count in message.unhashed)
                + _blob(message.extranonce2) + _blob(message.worker.encode()))
    if isinstance(message, Heartbeat):
        parts = sorted(message.partitions)
        return (_HEARTBEAT.pack(Kind.HEARTBEAT, message.coordinator, message.rate, message.sent_at)
                + _blob(message.worker.encode()) + struct.pack(f">H{len(parts)}H", len(parts), *parts))
    return (_EPOCH.pack(Kind.EPOCH, message.coordinator, message.epoch, message.results_partition,
                        message.active, message.sent_at) + _blob(message.job_id.encode()))


def encode_batch(messages: Sequence[Message]) -> bytes:
    """One record for up to MAX_BATCH messages (a single message is encoded as itself)."""
    if len(messages) == 1:
        return encode(messages[0])
    if not 0 < len(messages) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} messages, not {len(messages)}")
    parts = [_BATCH.pack(Kind.BATCH, len(messages))]
    for message in messages:
        body = encode(message)
        parts += (_LENGTH.pack(len(body)), body)
    return b"".join(parts)


def decode(data: bytes) -> Message:
    try:
        return _decode(data)
    except (struct.error, IndexError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise MessageError(f"undecodable record ({len(data)} bytes): {exc}") from None


def decode_all(data: bytes) -> list[Message]:
    """The messages of a record: one, or a batch."""
    if not data or data[0] != Kind.BATCH:
        return [decode(data)]
    try:
        _, count = _BATCH.unpack_from(data)
        messages, at = [], _BATCH.size
        for _ in range(count):
            (length,) = _LENGTH.unpack_from(data, at)
            at += _LENGTH.size
            messages.append(_decode(data[at:at + length]))
            at += length
    except (struct.error, IndexError, ValueError) as exc:
        raise MessageError(f"undecodable batch ({len(data)} bytes): {exc}") from None
    return messages


def batches(messages: Sequence[Message]) -> list[bytes]:
    """`messages` as few records as the batch limit allows, in order."""
    return [encode_batch(messages[i:i + MAX_BATCH]) for i in range(0, len(messages), MAX_BATCH)]


def _decode(data: bytes) -> Message:
    kind = data[0]
    if kind == Kind.TASK:
        (_, coordinator, epoch, seq, reply, attempt, issued_at, start, count, target,
         prefix) = _TASK.unpack_from(data)
        extranonce2, at = _read_blob(data, _TASK.size)
        job_id, _ = _read_blob(data, at)
        return Task(TaskId(coordinator, epoch, seq), job_id.decode(), extranonce2, start, count,
                    int.from_bytes(target, "big"), prefix, reply, issued_at, attempt)
    if kind == Kind.SHARE:
        _, coordinator, epoch, seq, nonce = _SHARE.unpack_from(data)
        extranonce2, at = _read_blob(data, _SHARE.size)
        worker, _ = _read_blob(data, at)
        return Share(TaskId(coordinator, epoch, seq), worker.decode(), extranonce2, nonce)
    if kind == Kind.DONE:
        (_, coordinator, epoch, seq, status, start, count, hashes, elapsed, found,
         issued_at) = _DONE.unpack_from(data)
        extranonce2, at = _read_blob(data, _DONE.size)
        worker, _ = _read_blob(data, at)
        return Done(TaskId(coordinator, epoch, seq), worker.decode(), Status(status), extranonce2, start,
                    count, hashes, elapsed, found, issued_at)
    if kind == Kind.RETURNED:
        (_, coordinator, epoch, seq, start, count, hashes, elapsed, found,
         pieces) = _RETURNED.unpack_from(data)
        at = _RETURNED.size
        unhashed = []
        for _ in range(pieces):
            unhashed.append(_PIECE.unpack_from(data, at))
            at += _PIECE.size
        extranonce2, at = _read_blob(data, at)
        worker, _ = _read_blob(data, at)
        return Returned(TaskId(coordinator, epoch, seq), worker.decode(), extranonce2, start, count, hashes,
                        elapsed, found, tuple(unhashed))
    if kind == Kind.HEARTBEAT:
        _, coordinator, rate, sent_at = _HEARTBEAT.unpack_from(data)
        worker, at = _read_blob(data, _HEARTBEAT.size)
        (count,) = struct.unpack_from(">H", data, at)
        partitions = struct.unpack_from(f">{count}H", data, at + 2)
        return Heartbeat(coordinator, worker.decode(), rate, frozenset(partitions), sent_at)
    if kind == Kind.EPOCH:
        _, coordinator, epoch, results_partition, active, sent_at = _EPOCH.unpack_from(data)
        job_id, _ = _read_blob(data, _EPOCH.size)
        return Epoch(coordinator, epoch, job_id.decode(), results_partition, bool(active), sent_at)
    raise ValueError(f"unknown message kind {kind}")


def _blob(data: bytes) -> bytes:
    if len(data) > 255:
        raise ValueError("field longer than 255 bytes")
    return bytes((len(data),)) + data


def _read_blob(data: bytes, at: int) -> tuple[bytes, int]:
    length = data[at]
    end = at + 1 + length
    if end > len(data):
        raise ValueError("truncated field")
    return data[at + 1:end], end
