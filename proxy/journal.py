"""Durable local journals: what the proxy must not lose while PostgreSQL is away or when it dies.

Each proxy process owns one directory under `proxy.spill_dir` (`JournalDir`), locked for as long
as the process lives, so two processes never write the same files and `qscrypt spill replay`
touches only directories no live process holds. Two shapes of journal live in it:

- `SegmentLog`, for rows that come by the thousand a second (shares). Every row is appended to the
  open segment file with one os.write before the caller goes on (the share writer calls it before
  the miner's "accepted" is sent): what the kernel holds outlives a killed process. A segment is
  sealed after `segment_rows` rows or when the writer takes it. Sealed segments wait for the
  database with their rows in memory, up to `memory_rows` in all; past that the oldest keep their
  rows on disk only (the "spill") and are read back when PostgreSQL returns. The writer records a
  segment in one transaction that also inserts the segment's key into `recorded_segments`, and
  deletes the file after the commit: replaying a file whose rows were committed just before a
  crash is a no-op, never a second copy.
- `RecordJournal`, for rare records whose loss costs money: found blocks now, payouts later. One
  small JSON file per record, named by the record's idempotency key (a block's hash, a payout's
  id), written under a temporary name, fsync'd, renamed into place and the directory fsync'd before
  the caller goes on (a block is journaled before it is submitted). A consumer replays a record
  into PostgreSQL with a statement idempotent on the key and then removes it, but only the version
  it wrote: a newer version put meanwhile (the block's final status) stays for the next replay.
  A payout would journal "about to send transaction T for payout P" under P's key the same way
  before sending, and record it from the journal.

Lines and records are JSON with every non-ASCII character escaped, so any Python string, a lone
surrogate included, can be journaled and read back unchanged: the database may refuse a row, the
journal never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from qscrypt.log import get_logger

Row = TypeVar("Row")

LOCK_NAME = ".lock"
SEGMENT_SUFFIX = ".jsonl"
RECORD_SUFFIX = ".json"
QUARANTINE_NAME = "quarantine.jsonl"
_MAX_CLAIMS = 64
_SEGMENT_NAME = re.compile(r"(?P<seq>\d{12})-(?P<key>[0-9a-f]{32})\.jsonl")
_KEY = re.compile(r"[0-9A-Za-z_.-]{1,128}")
_LEGACY_SPILLS = ("shares.replay", "shares.jsonl")
"""Spill files of proxies before the journal, in `spill_dir` itself: adopted as segments."""


class JournalError(RuntimeError):
    """A journal directory cannot be claimed or a record cannot be made durable."""


# -- the directory ------------------------------------------------------------------------------


class JournalDir:
    """`root/<name>/`, held with an exclusive flock on `.lock` while this object is claimed."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd = lock_fd

    @classmethod
    def claim(cls, root: Path, name: str) -> JournalDir:
        """The directory `name` under `root`, or `name-2`, `name-3`… when a live process holds it."""
        root.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _MAX_CLAIMS + 1):
            path = root / (name if attempt == 1 else f"{name}-{attempt}")
            fd = try_lock(path)
            if fd is not None:
                claimed = cls(path, fd)
                claimed._adopt_legacy(root)
                return claimed
        raise JournalError(f"{root}: {_MAX_CLAIMS} journal directories named {name}* are all held "
                           "by live processes")

    @property
    def shares(self) -> Path:
        return self.path / "shares"

    @property
    def blocks(self) -> Path:
        return self.path / "blocks"

    @property
    def quarantine(self) -> Path:
        return self.path / QUARANTINE_NAME

    def release(self) -> None:
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = -1

    def _adopt_legacy(self, root: Path) -> None:
        """Rows spilled by a proxy from before the journal become segments here (rename: atomic;
        a process that lost the race to one finds it gone and moves on)."""
        for legacy in _LEGACY_SPILLS:
            source = root / legacy
            if not source.exists():
                continue
            self.shares.mkdir(parents=True, exist_ok=True)
            seq = next_seq(self.shares)
            with contextlib.suppress(FileNotFoundError):
                source.rename(self.shares / segment_name(seq, uuid.uuid4().hex))
                get_logger(component="journal").warning("journal.legacy_spill_adopted", file=str(source))


def try_lock(path: Path) -> int | None:
    """An fd holding the exclusive flock of journal directory `path` (made if missing), or None
    when another process holds it."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def journal_dirs(root: Path) -> list[Path]:
    """Every journal directory under `root`, held or not."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / LOCK_NAME).exists())


def segment_name(seq: int, key: str) -> str:
    return f"{seq:012d}-{key}{SEGMENT_SUFFIX}"


def next_seq(directory: Path) -> int:
    names = (_SEGMENT_NAME.fullmatch(p.name) for p in directory.glob(f"*{SEGMENT_SUFFIX}"))
    seqs = [int(m["seq"]) for m in names if m]
    return max(seqs, default=0) + 1


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- segments of rows ---------------------------------------------------------------------------


@dataclass(eq=False)
class Segment(Generic[Row]):
    seq: int
    key: str
    """uuid4 hex: the segment's id in `recorded_segments`."""
    path: Path
    count: int = 0
    rows: list[Row] | None = field(default_factory=list)
    """The rows while they are held in memory; None once they are on disk only."""
    durable: bool = True
    """Every row reached the file. False after a failed write: then the memory copy is the only
    one, and it is never dropped."""
    synced: bool = False


@dataclass(frozen=True)
class Unreadable:
    """A line of a segment file that does not decode (a torn write, a hand edit)."""

    line_no: int
    text: str
    error: str


class SegmentLog(Generic[Row]):
    """An append-only, segmented log of rows in `directory` (see the module docstring)."""

    def __init__(self, directory: Path, encode: Callable[[Row], bytes], decode: Callable[[Any], Row],
                 segment_rows: int = 5000, memory_rows: int = 100_000) -> None:
        if segment_rows <= 0 or memory_rows < 0:
            raise ValueError("segment_rows must be positive and memory_rows not negative")
        self.directory = directory
        self.encode = encode
        self.decode = decode
        self.segment_rows = segment_rows
        self.memory_rows = memory_rows
        directory.mkdir(parents=True, exist_ok=True)
        self.pending: deque[Segment[Row]] = deque(self._found())
        """Sealed segments waiting for the database, oldest first."""
        self.rows_in_memory = 0
        self.rows_on_disk_only = sum(s.count for s in self.pending)
        self.appended = 0
        self.write_errors = 0
        self._open: Segment[Row] | None = None
        self._fd = -1
        self._seq = max((s.seq for s in self.pending), default=0) + 1
        self._log = get_logger(component="journal", directory=str(directory))
        self._last_error = ""

    def _found(self) -> Iterator[Segment[Row]]:
        """Segments an earlier process left: their rows are on disk only."""
        for path in sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}")):
            match = _SEGMENT_NAME.fullmatch(path.name)
            if match is None:
                continue
            yield Segment(int(match["seq"]), match["key"], path, count_lines(path), rows=None, synced=True)

    @property
    def waiting_rows(self) -> int:
        """Rows not yet in the database: sealed segments and the open one."""
        segment = self._open
        # tuple() copies in one C call: the metrics server's thread may ask while the loop appends.
        return sum(s.count for s in tuple(self.pending)) + (segment.count if segment is not None else 0)

    def append(self, row: Row) -> None:
        """Journal `row`. Never raises: a failed write (disk full) keeps the row in memory only,
        logged and counted, and the segment is written again whole when it is sealed."""
        segment = self._open if self._open is not None else self._start()
        if segment.durable:
            try:
                os.write(self._fd, self.encode(row))
            except OSError as exc:
                segment.durable = False
                self._write_failed(exc)
        assert segment.rows is not None
        segment.rows.append(row)
        segment.count += 1
        self.rows_in_memory += 1
        self.appended += 1
        if segment.count >= self.segment_rows:
            self.seal()

    def _start(self) -> Segment[Row]:
        segment: Segment[Row] = Segment(self._seq, uuid.uuid4().hex, self.directory)
        segment.path = self.directory / segment_name(segment.seq, segment.key)
        self._seq += 1
        try:
            self._fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as exc:
            self._fd = -1
            segment.durable = False
            self._write_failed(exc)
        self._open = segment
        return segment

    def _write_failed(self, exc: OSError) -> None:
        self.write_errors += 1
        message = f"{type(exc).__name__}: {exc}"
        if message != self._last_error:  # once per distinct error, not once per share
            self._last_error = message
            self._log.error("journal.write_failed", error=message,
                            consequence="rows kept in memory only until the segment is written again")

    def seal(self) -> None:
        """Close the open segment (if it holds rows): it waits for the database from now on."""
        segment = self._open
        if segment is None:
            return
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = -1
        self._open = None
        if not segment.durable:
            self._rewrite(segment)
        self.pending.append(segment)
        self._bound_memory()

    def _rewrite(self, segment: Segment[Row]) -> None:
        """Write a segment whose appends failed again, whole (the disk may have room again)."""
        assert segment.rows is not None
        try:
            data = b"".join(self.encode(row) for row in segment.rows)
            with open(segment.path, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            self._write_failed(exc)
            return
        segment.durable = True
        self._log.info("journal.segment_rewritten", rows=segment.count, file=str(segment.path))

    def _bound_memory(self) -> None:
        for segment in self.pending:  # oldest first: they are the next to be read back anyway
            if self.rows_in_memory <= self.memory_rows:
                return
            if segment.rows is not None and segment.durable:
                self.rows_in_memory -= len(segment.rows)
                self.rows_on_disk_only += segment.count
                segment.rows = None
                self._log.warning("journal.spilled", rows=segment.count, file=str(segment.path))

    def done(self, segment: Segment[Row]) -> None:
        """The segment's rows are in the database: forget it and delete its file."""
        with contextlib.suppress(ValueError):
            self.pending.remove(segment)
        if segment.rows is None:
            self.rows_on_disk_only -= segment.count
        else:
            self.rows_in_memory -= len(segment.rows)
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()

    def load(self, segment: Segment[Row]) -> tuple[list[Row], list[Unreadable]]:
        """The rows of a segment held on disk only, and the lines that do not decode. Blocking
        file I/O: call it in a thread."""
        return read_segment(segment.path, self.decode)

    def sync(self, segment: Segment[Row]) -> None:
        """fsync a segment that will stay on disk a while (blocking: call it in a thread). Not
        needed against a killed process, only against losing the machine."""
        fd = os.open(segment.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        segment.synced = True

    def close(self) -> None:
        """Seal the open segment; rows the disk refused get one more try, then an error line."""
        self.seal()
        lost = sum(s.count for s in self.pending if not s.durable)
        if lost:
            self._log.error("journal.rows_not_on_disk", rows=lost,
                            consequence="these rows were never written to the journal or the database")


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


_DECODE_ERRORS = (ValueError, TypeError, IndexError, OverflowError)


def read_segment(path: Path, decode: Callable[[Any], Row]) -> tuple[list[Row], list[Unreadable]]:
    lines = path.read_bytes().split(b"\n")
    try:
        # All lines as one JSON array: one parser call instead of one per line (bench.recording).
        values = json.loads(b"[" + b",".join(line for line in lines if line.strip()) + b"]")
        return [decode(v) for v in values], []
    except _DECODE_ERRORS:
        pass  # some line is torn or edited: find which, line by line
    rows: list[Row] = []
    unreadable: list[Unreadable] = []
    for line_no, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        text = raw.decode("utf-8", "backslashreplace")
        try:
            rows.append(decode(json.loads(text)))
        except _DECODE_ERRORS as exc:
            unreadable.append(Unreadable(line_no, text, f"{type(exc).__name__}: {exc}"))
    return rows, unreadable


# -- keyed records ------------------------------------------------------------------------------


class RecordJournal:
    """Keyed records, one fsync'd file each (see the module docstring). Every file operation runs
    in a thread, one at a time per journal: the event loop never waits on a disk."""

    def __init__(self, directory: Path, create: bool = True) -> None:
        """`create=False`: only look (`qscrypt spill status` makes nothing)."""
        self.directory = directory
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        self._lock = asyncio.Lock()

    def path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise JournalError(f"journal key {key!r} is not a safe file name")
        return self.directory / f"{key}{RECORD_SUFFIX}"

    async def put(self, key: str, record: dict[str, Any]) -> int:
        """Make `record` durable under `key` (replacing an older version); its version."""
        async with self._lock:
            return await asyncio.to_thread(self.put_now, key, record)

    async def remove(self, key: str, version: int) -> bool:
        """Delete the record if it is still `version`; whether it was deleted."""
        async with self._lock:
            return await asyncio.to_thread(self.remove_now, key, version)

    async def pending(self) -> list[tuple[str, int, dict[str, Any]]]:
        async with self._lock:
            return await asyncio.to_thread(self.pending_now)

    # Blocking forms, for threads and for the `qscrypt spill` command.

    def put_now(self, key: str, record: dict[str, Any]) -> int:
        version = time.time_ns()
        target = self.path(key)
        temporary = target.with_name(f".{target.name}.{version}.tmp")
        data = json.dumps({"key": key, "version": version, "record": record}).encode()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
        fsync_dir(self.directory)  # the rename itself must survive a power cut
        return version

    def remove_now(self, key: str, version: int) -> bool:
        target = self.path(key)
        try:
            current = json.loads(target.read_bytes())
        except FileNotFoundError:
            return False
        except ValueError:
            current = {}
        if current.get("version") != version:
            return False
        target.unlink()
        return True

    def pending_now(self) -> list[tuple[str, int, dict[str, Any]]]:
        """(key, version, record) of every record, oldest first; unreadable files are skipped
        (and reported by `unreadable_now`)."""
        found = []
        for path in self.directory.glob(f"*{RECORD_SUFFIX}"):
            try:
                entry = json.loads(path.read_bytes())
                found.append((str(entry["key"]), int(entry["version"]), dict(entry["record"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return sorted(found, key=lambda item: item[1])

    def unreadable_now(self) -> list[Path]:
        bad = []
        for path in self.directory.glob(f"*{RECORD_SUFFIX}"):
            try:
                entry = json.loads(path.read_bytes())
                str(entry["key"]), int(entry["version"]), dict(entry["record"])
            except (OSError, ValueError, KeyError, TypeError):
                bad.append(path)
        return bad

    def quarantine_now(self, key: str, version: int, reason: str, quarantine: Path) -> None:
        """Move a record the database refuses for good to the quarantine file, with the reason."""
        target = self.path(key)
        try:
            entry = json.loads(target.read_bytes())
        except (FileNotFoundError, ValueError):
            return
        if entry.get("version") != version:
            return
        append_quarantine(quarantine, [{"kind": self.directory.name, "key": key, "reason": reason,
                                        "record": entry.get("record")}])
        target.unlink()


def append_quarantine(path: Path, entries: list[dict[str, Any]]) -> None:
    """Lines for an operator: what the database refused, and why; one write and one fsync for
    all of them (the writer quarantines a segment's bad rows at once, and they are few)."""
    if not entries:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data = b"".join(json.dumps({"at": at, **entry}).encode() + b"\n" for entry in entries)
    with path.open("ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def read_quarantine(path: Path) -> list[dict[str, Any]]:
    """The entries of a quarantine file; a line that does not decode comes back as its text."""
    entries: list[dict[str, Any]] = []
    if not path.exists():
        return entries
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = {"unreadable": raw.decode("utf-8", "backslashreplace")}
            entries.append(entry if isinstance(entry, dict) else {"unreadable": repr(entry)})
    return entries


def rewrite_quarantine(path: Path, entries: list[dict[str, Any]]) -> None:
    """Replace the quarantine file with `entries` (those still refused), atomically; none left:
    the file goes."""
    if not entries:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as fh:
        fh.write(b"".join(json.dumps(entry).encode() + b"\n" for entry in entries))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)
