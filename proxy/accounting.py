"""Per-worker share accounting: counted in memory, journaled on disk, written to PostgreSQL.

Share handling never waits for the database. Each share's row is appended to the local journal
(`proxy.journal.SegmentLog`) as it is counted, before the miner hears the verdict; a writer task
copies the journal's segments into PostgreSQL, one transaction per segment. What happens to a row
that does not go in at once:

- the database is away (connection refused or lost, server shutting down, timeouts, anything not
  the rows' fault): the segment waits, the writer retries with backoff; rows past the memory
  bound stay on disk only and are read back when PostgreSQL returns. Nothing is dropped.
- the database refuses some rows (invalid data, a constraint, an index row too big — SQLSTATE
  22, 23 and 54 — or a string asyncpg cannot encode): the batch is bisected under savepoints,
  exactly the refused rows go to the quarantine file with the reason, the rest are written.
- the writer itself fails (a bug): its supervisor logs it, counts it and starts it again.

`qscrypt spill status|replay` shows and replays what waits on disk (proxy/spill.py).
"""

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from mining.target import HASHES_PER_NETWORK_DIFF1, HASHES_PER_SHARE_DIFF1, hashrate_from_shares
from proxy import db
from proxy.db import SHARE_COLUMNS, ShareRow, WorkerTotals
from proxy.journal import (
    RecordJournal,
    Segment,
    SegmentLog,
    Unreadable,
    append_quarantine,
    read_quarantine,
    rewrite_quarantine,
)
from proxy.validate import NOT_SUBSCRIBED, STALE, UNAUTHORIZED, JudgedShare
from qscrypt.bus.aio import backoff_s
from qscrypt.log import get_logger

if TYPE_CHECKING:
    from proxy.metrics import ProxyMetrics

# Refusals counted in metrics but never stored: their worker name is one nobody authorized.
_UNRECORDED = frozenset((UNAUTHORIZED, NOT_SUBSCRIBED))


@dataclass
class WorkerStats:
    accepted: int = 0
    stale: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    accepted_difficulty: float = 0.0
    last_share_at: float | None = None
    _window: deque[list[float]] = field(default_factory=deque)
    """[second, difficulty accepted in it]: one entry per second, however many shares it held."""

    def add_accepted(self, now: float, difficulty: float) -> None:
        self.accepted += 1
        self.accepted_difficulty += difficulty
        self.last_share_at = now
        second = float(int(now))
        if self._window and self._window[-1][0] == second:
            self._window[-1][1] += difficulty
        else:
            self._window.append([second, difficulty])

    def hashrate(self, now: float, window_s: float) -> float:
        while self._window and self._window[0][0] < now - window_s:
            self._window.popleft()
        total = sum(d for _, d in self._window)
        return hashrate_from_shares(total, window_s)


@dataclass
class CoinTally:
    """One worker's work on one coin since the last write: what worker_coin_daily accumulates."""

    seconds: float = 0.0
    difficulty: float = 0.0


class Accounting:
    def __init__(self, window_s: float = 300.0, log: "SegmentLog[ShareRow] | None" = None,
                 host: str | None = None) -> None:
        """`log`: the journal each share's row goes to, for a `ShareWriter`; without one (no
        database) rows are not kept at all. `host`: this proxy host's name, in every row."""
        self.window_s = window_s
        self.log = log
        self.host = host
        self.workers: dict[str, WorkerStats] = {}
        self.coins: dict[tuple[str, str], CoinTally] = {}

    @property
    def rows_waiting(self) -> int:
        """Share rows not yet in PostgreSQL, in memory or on disk."""
        return self.log.waiting_rows if self.log is not None else 0

    def _tally(self, worker: str, coin: str) -> CoinTally:
        tally = self.coins.get((worker, coin))
        if tally is None:
            tally = self.coins[(worker, coin)] = CoinTally()
        return tally

    def time_on_coin(self, worker: str, coin: str, seconds: float) -> None:
        self._tally(worker, coin).seconds += seconds

    def take_coin_tallies(self) -> dict[tuple[str, str], CoinTally]:
        tallies, self.coins = self.coins, {}
        return tallies

    def return_coin_tallies(self, tallies: dict[tuple[str, str], CoinTally]) -> None:
        """Tallies that could not be written join those counted since, for the next write."""
        for key, tally in tallies.items():
            merged = self._tally(*key)
            merged.seconds += tally.seconds
            merged.difficulty += tally.difficulty

    def _stats(self, worker: str) -> WorkerStats:
        stats = self.workers.get(worker)
        if stats is None:
            stats = self.workers[worker] = WorkerStats()
        return stats

    def accepted(self, worker: str, upstream: str, job_id: str, difficulty: float, share_diff: float,
                 block_hash: str | None = None, coin: str | None = None, now: float | None = None,
                 ip: str | None = None) -> None:
        now = time.monotonic() if now is None else now
        if coin:
            self._tally(worker, coin).difficulty += difficulty
        self._stats(worker).add_accepted(now, difficulty)
        if self.log is not None:
            self.log.append((datetime.now(UTC), worker, upstream, job_id, difficulty, share_diff,
                             "accepted", None, block_hash, ip, self.host))

    def record(self, judged: JudgedShare) -> None:
        """A share's verdict from the Stratum server: counted and (when a database takes rows)
        journaled. A refusal to a name nobody authorized, or to a connection that never
        subscribed, is counted in metrics by the server but never stored: a row under that name
        would let any stranger write to `shares` and `workers`."""
        verdict = judged.verdict
        if verdict.rejection is None:
            self.accepted(judged.worker, judged.upstream, judged.job_id, judged.difficulty,
                          verdict.share_difficulty, block_hash=judged.block_hash, coin=judged.coin,
                          now=judged.now, ip=judged.ip)
        elif verdict.rejection.reason not in _UNRECORDED:
            reason = verdict.rejection.reason
            self.rejected(judged.worker, judged.upstream, judged.job_id, judged.difficulty, reason,
                          reason == STALE, ip=judged.ip)

    def rejected(self, worker: str, upstream: str, job_id: str, difficulty: float, reason: str,
                 stale: bool, ip: str | None = None) -> None:
        stats = self._stats(worker)
        if stale:
            stats.stale += 1
        else:
            stats.rejected[reason] += 1
        if self.log is not None:
            self.log.append((datetime.now(UTC), worker, upstream, job_id, difficulty, None,
                             "stale" if stale else "rejected", reason, None, ip, self.host))


# -- rows in the journal ------------------------------------------------------------------------

_OLD_ROW_LENGTH = 9
"""Rows journaled before shares had their ip and host (migration 0011)."""
_escape = json.encoder.encode_basestring_ascii  # the C one: quotes and escapes to ASCII


def _number(value: float) -> str:
    if math.isfinite(value):
        return repr(value)
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def encode_row(row: ShareRow) -> bytes:
    """One journal line: a JSON array, ASCII only (any string, a lone surrogate included, comes
    back unchanged), the time as POSIX seconds. Formatted by hand: json.dumps of the row costs
    twice as much, and this runs for every share (bench.recording)."""
    ts, worker, upstream, job_id, difficulty, share_diff, result, reason, block_hash, ip, host = row
    # x - x == 0.0 is False only for inf and nan, which repr() would write as invalid JSON.
    if difficulty - difficulty == 0.0 and (share_diff is None or share_diff - share_diff == 0.0):
        numbers = f'{difficulty!r},{"null" if share_diff is None else repr(share_diff)}'
    else:
        numbers = f'{_number(difficulty)},{"null" if share_diff is None else _number(share_diff)}'
    return (f'[{ts.timestamp()!r},{_escape(worker)},{_escape(upstream)},{_escape(job_id)},{numbers},'
            f'{_escape(result)},{"null" if reason is None else _escape(reason)},'
            f'{"null" if block_hash is None else _escape(block_hash)},'
            f'{"null" if ip is None else _escape(ip)},'
            f'{"null" if host is None else _escape(host)}]\n').encode()


def decode_row(values: Any) -> ShareRow:
    """A row from its journal line (or a spill line of an older proxy, whose time is ISO text, or
    whose rows had no ip and host yet: 9 values)."""
    if not isinstance(values, list) or len(values) not in (len(SHARE_COLUMNS), _OLD_ROW_LENGTH):
        raise ValueError(f"a share row is a list of {len(SHARE_COLUMNS)} values")
    ts = values[0]
    when = datetime.fromisoformat(ts) if isinstance(ts, str) else datetime.fromtimestamp(float(ts), UTC)
    row: ShareRow = (when, *values[1:], *[None] * (len(SHARE_COLUMNS) - len(values)))
    return row


def row_to_json(row: ShareRow) -> list[Any]:
    return [row[0].timestamp(), *row[1:]]


def share_log(directory: Path, segment_rows: int = 5000, memory_rows: int = 100_000) -> SegmentLog[ShareRow]:
    return SegmentLog(directory, encode_row, decode_row, segment_rows, memory_rows)


# -- what a failed write means ------------------------------------------------------------------

ROW = "row"
TRANSIENT = "transient"

# Errors that are the rows' fault: another try cannot help them, but without them the batch may
# go in. SQLSTATE classes 22 (data exception: bad encoding, out of range, NUL in text), 23
# (integrity constraint) and 54 (program limit exceeded: "index row requires … bytes"), and what
# asyncpg raises while encoding a row before the server sees it (UnicodeEncodeError for a lone
# surrogate, wrong types). Everything else — connection lost, server shutting down or starting,
# timeouts, too many clients, missing tables — is the database's state, not the rows': retried.
_ROW_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.ProgramLimitExceededError,
    ValueError, TypeError, OverflowError,
)


def classify(exc: BaseException) -> str:
    """ROW when `exc` is the fault of the rows written, TRANSIENT otherwise."""
    return ROW if isinstance(exc, _ROW_ERRORS) else TRANSIENT


def describe(exc: BaseException) -> dict[str, Any]:
    sqlstate = getattr(exc, "sqlstate", None)
    return {"error": f"{type(exc).__name__}: {exc}", **({"sqlstate": sqlstate} if sqlstate else {})}


RecordApply = Callable[[asyncpg.Connection, dict[str, Any]], Awaitable[None]]
"""Writes one journaled record (a block) to PostgreSQL, idempotent on its key."""

_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
_RESTART_BACKOFF_S = (0.1, 1.0, 5.0)
_CONNECT_TIMEOUT_S = 5.0
_COMMAND_TIMEOUT_S = 60.0
_CLOSE_FLUSH_S = 10.0
_LOG_REPEAT_S = 60.0
_MARKER_DAYS = 30
_PARTITION_DAYS = 3


class ShareWriter:
    """Copies the share journal into PostgreSQL and replays the record journals (blocks); started
    under a supervisor that starts it again if it ever ends (see the module docstring)."""

    def __init__(self, log: SegmentLog[ShareRow], dsn: str, quarantine: Path,
                 accounting: Accounting | None = None, flush_s: float = 1.0,
                 records: list[tuple[RecordJournal, RecordApply]] | None = None,
                 metrics: "ProxyMetrics | None" = None, retention_days: float = 30.0,
                 pplns_factor: float = 2.0) -> None:
        self.log = log
        self.retention_days = retention_days
        self.pplns_factor = pplns_factor
        self._shares_pruned: date | None = None
        self.dsn = dsn
        self.quarantine_file = quarantine
        self.accounting = accounting
        self.flush_s = flush_s
        self.records = records or []
        self.metrics = metrics
        self.written = 0
        self.quarantined = 0
        self.failures = 0
        self.restarts = 0
        self.database_up: bool | None = None
        """Whether the last attempt to write worked (None before the first)."""
        self.last_error: str | None = None
        self.records_waiting = 0
        self._partitions_until: date | None = None
        self._markers_pruned: date | None = None
        self._conn: asyncpg.Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._logged: tuple[str, float] = ("", 0.0)
        self._log = get_logger(component="share-writer")

    # -- life ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="share-writer-supervisor")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details) for /readyz: ready while the writer runs and the journal takes rows;
        the database may be away (the journal holds everything meanwhile), which the details say.
        Called from the metrics server's thread: it only reads."""
        details = {
            "share_writer": "running" if self.running else "stopped" if self._supervisor is None
            or self._supervisor.done() else "restarting",
            "database": {None: "unknown", True: "up", False: "down"}[self.database_up],
            "rows_waiting": self.log.waiting_rows,
            "rows_on_disk_only": self.log.rows_on_disk_only,
            "records_waiting": self.records_waiting,
            "quarantined": self.quarantined,
            "restarts": self.restarts,
            "journal_write_errors": self.log.write_errors,
            "last_error": self.last_error,
        }
        segments = tuple(self.log.pending)  # one C call: safe from the metrics server's thread
        journal_ok = all(s.durable for s in segments)
        return self.running and journal_ok, details

    async def _supervise(self) -> None:
        while True:
            self._task = asyncio.create_task(self._run(), name="share-writer")
            try:
                await asyncio.wait({self._task})  # returns however the writer ended
            except asyncio.CancelledError:
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
                raise
            task, self._task = self._task, None
            error = "cancelled" if task.cancelled() else repr(task.exception())
            self.restarts += 1
            if self.metrics is not None:
                self.metrics.share_writer_restarts.inc()
                self.metrics.share_writer_up.set(0)
            self._log.error("shares.writer_restarted", error=error, restarts=self.restarts,
                            rows_waiting=self.log.waiting_rows)
            await asyncio.sleep(backoff_s(_RESTART_BACKOFF_S, self.restarts - 1))

    async def close(self) -> None:
        """Stop; one last write (bounded in time); what is still unwritten stays in the journal,
        which is sealed. Never raises: whatever failed before, the caller goes on closing."""
        for task in (self._supervisor, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self._disconnect()  # a statement cut short by the cancel: the last pass starts afresh
        try:
            async with asyncio.timeout(_CLOSE_FLUSH_S):
                await self.flush()
        except Exception as exc:
            self._log.warning("shares.final_flush_failed", **describe(exc),
                              rows_waiting=self.log.waiting_rows,
                              consequence="left in the journal for the next start or `qscrypt spill replay`")
        try:
            self.log.close()
        except Exception:
            self._log.exception("shares.journal_close_failed")
        if self.accounting is not None and self.accounting.coins:
            # Expected earnings only (worker_coin_daily), not shares: say what is not written.
            self._log.warning("shares.coin_tallies_not_written", tallies=len(self.accounting.coins))
        await self._disconnect()

    async def _run(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self.flush_s if not failures else backoff_s(_BACKOFF_S, failures - 1))
            try:
                await self.flush()
            except Exception as exc:  # classified and logged; none of them ends the writer
                failures += 1
                self._failed(exc, failures)
                # A statement cut short may leave the connection mid-protocol: start afresh.
                await self._disconnect()
                await self._sync_spilled()
            else:
                if failures:
                    self._log.info("shares.writer_recovered", failures=failures,
                                   rows_waiting=self.log.waiting_rows)
                failures = 0

    def _failed(self, exc: Exception, failures: int) -> None:
        self.failures += 1
        self.database_up = False
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.metrics is not None:
            self.metrics.share_write_failures.labels(TRANSIENT).inc()
            self.metrics.share_writer_up.set(0)
        # Every failure is logged, but a database away for an hour writes a line a minute, not
        # one per retry.
        now = time.monotonic()
        if self.last_error != self._logged[0] or now - self._logged[1] > _LOG_REPEAT_S:
            self._logged = (self.last_error, now)
            self._log.warning("shares.write_failed", **describe(exc), failures=failures,
                              rows_waiting=self.log.waiting_rows,
                              rows_on_disk_only=self.log.rows_on_disk_only)
        self._update_gauges()

    async def _sync_spilled(self) -> None:
        """fsync the segments kept on disk only: the database may be away for hours, and they
        should outlive the machine, not only the process. Off the loop, once each."""
        for segment in list(self.log.pending):
            if segment.rows is None and not segment.synced:
                try:
                    await asyncio.to_thread(self.log.sync, segment)
                except OSError as exc:
                    self._log.warning("journal.sync_failed", file=str(segment.path), error=str(exc))
                    return

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.dsn, timeout=_CONNECT_TIMEOUT_S,
                                               command_timeout=_COMMAND_TIMEOUT_S)
        return self._conn

    def _update_gauges(self) -> None:
        if self.metrics is None:
            return
        self.metrics.share_buffer.set(self.log.waiting_rows)
        self.metrics.share_rows_on_disk.set(self.log.rows_on_disk_only)
        self.metrics.records_journaled.set(self.records_waiting)

    # -- one pass -----------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Replay the record journals, write every sealed segment (the open one is sealed first),
        add the coin tallies. Returns share rows written; raises what it could not get past."""
        self.log.seal()
        written = 0
        tallies = self.accounting.coins if self.accounting is not None else {}
        if self.log.pending or self.records or tallies:
            conn = await self._connection()
            # Blocks first: few, and worth more than any share a stuck segment could hold up. A
            # failure there (a lock on `blocks`, a timeout) must not hold the shares up either:
            # it is raised after them.
            records_failed: Exception | None = None
            try:
                await self._replay_records(conn)
            except Exception as exc:
                records_failed = exc
            if self.log.pending:
                await self._ensure_partitions(conn)
            while self.log.pending:
                segment = self.log.pending[0]
                written += await self._record_segment(conn, segment)
                self.log.done(segment)
            await self._write_coin_tallies(conn)
            await self._prune_markers(conn)
            await self._prune_shares(conn)
            if records_failed is not None:
                self.written += written
                raise records_failed
        self.written += written
        self.database_up = True
        if self.metrics is not None:
            self.metrics.share_writer_up.set(1)
        self._update_gauges()
        return written

    async def _record_segment(self, conn: asyncpg.Connection, segment: Segment[ShareRow]) -> int:
        unreadable: list[Unreadable] = []
        if segment.rows is None:
            rows, unreadable = await asyncio.to_thread(self.log.load, segment)
        else:
            rows = segment.rows
        async with conn.transaction():
            if not await db.mark_recorded(conn, uuid.UUID(segment.key), len(rows)):
                # committed before a crash that kept its file: nothing to write twice
                self._log.info("shares.segment_already_recorded", segment=segment.key, file=str(segment.path))
                return 0
            refused = await self._insert_rows(conn, rows)
            # Before the commit: a crash between the two quarantines the rows again on replay
            # (lines carry the segment and index, so they are recognisable), never loses them.
            await self._quarantine(segment.key, refused, unreadable)
        return len(rows) - len(refused)

    async def _insert_rows(self, conn: asyncpg.Connection, rows: list[ShareRow],
                           offset: int = 0) -> list[tuple[int, ShareRow, BaseException]]:
        """Insert `rows` under a savepoint; when the database refuses some of them, halve and try
        each half, down to the single rows it refuses: (index, row, error) of each."""
        if not rows:
            return []
        try:
            async with conn.transaction():  # a savepoint inside the segment's transaction
                await self._insert(conn, rows)
            return []
        except Exception as exc:
            if classify(exc) != ROW:
                raise
            if len(rows) == 1:
                return [(offset, rows[0], exc)]
        middle = len(rows) // 2
        return (await self._insert_rows(conn, rows[:middle], offset)
                + await self._insert_rows(conn, rows[middle:], offset + middle))

    @staticmethod
    async def _insert(conn: asyncpg.Connection, rows: list[ShareRow]) -> None:
        await db.copy_shares(conn, rows)
        await db.add_worker_totals(conn, worker_totals(rows))

    async def _quarantine(self, segment: str, refused: list[tuple[int, ShareRow, BaseException]],
                          unreadable: list[Unreadable]) -> None:
        if not refused and not unreadable:
            return
        entries = [{"kind": "shares", "segment": segment, "index": index, **describe(exc),
                    "row": row_to_json(row)} for index, row, exc in refused]
        entries += [{"kind": "shares", "segment": segment, "line": bad.line_no, "error": bad.error,
                     "text": bad.text} for bad in unreadable]
        await asyncio.to_thread(append_quarantine, self.quarantine_file, entries)  # fsync: off the loop
        count = len(entries)
        self.quarantined += count
        if self.metrics is not None:
            self.metrics.share_write_failures.labels(ROW).inc()
            self.metrics.shares_quarantined.inc(count)
        self._log.error("shares.rows_quarantined", rows=count, segment=segment,
                        file=str(self.quarantine_file),
                        reasons=sorted({e.get("error", "")[:200] for e in entries}))

    async def _replay_records(self, conn: asyncpg.Connection) -> None:
        waiting = 0
        for journal, apply in self.records:
            for key, version, record in await journal.pending():
                try:
                    async with conn.transaction():
                        await apply(conn, record)
                except Exception as exc:
                    if classify(exc) != ROW:
                        raise
                    reason = describe(exc)["error"]
                    await asyncio.to_thread(journal.quarantine_now, key, version, reason,
                                            self.quarantine_file)
                    self.quarantined += 1
                    if self.metrics is not None:
                        self.metrics.share_write_failures.labels(ROW).inc()
                    self._log.error("journal.record_quarantined", kind=journal.directory.name, key=key,
                                    reason=reason, file=str(self.quarantine_file))
                    continue
                if not await journal.remove(key, version):
                    waiting += 1  # a newer version arrived meanwhile: the next pass writes it
                else:
                    self._log.info("journal.record_replayed", kind=journal.directory.name, key=key)
        self.records_waiting = waiting

    async def replay_quarantine(self) -> tuple[int, int]:
        """Try every quarantined entry again (after an operator fixed the schema, say, or the
        line by hand); those the database still refuses stay in the file. (written, left)."""
        entries = await asyncio.to_thread(read_quarantine, self.quarantine_file)
        if not entries:
            return 0, 0
        conn = await self._connection()
        blocks = {journal.directory.name: apply for journal, apply in self.records}
        left: list[dict[str, Any]] = []
        written = 0
        for entry in entries:
            try:
                if await self._replay_entry(conn, entry, blocks):
                    written += 1
            except Exception as exc:
                if classify(exc) != ROW:
                    raise  # the database is away: the file stays as it is
                left.append({**entry, **describe(exc)})
        await asyncio.to_thread(rewrite_quarantine, self.quarantine_file, left)
        self._log.info("shares.quarantine_replayed", written=written, left=len(left))
        return written, len(left)

    async def _replay_entry(self, conn: asyncpg.Connection, entry: dict[str, Any],
                            blocks: dict[str, RecordApply]) -> bool:
        """Write one quarantined entry; False when it was already written (replayed before)."""
        kind = entry.get("kind")
        if kind == "shares" and ("row" in entry or "text" in entry):
            row = decode_row(entry["row"] if "row" in entry else json.loads(entry["text"]))
            # One marker per quarantined row: a second replay, or a line quarantined twice by a
            # crash between quarantine and commit, writes nothing again.
            place = entry.get("index", entry.get("line"))
            marker = uuid.uuid5(uuid.NAMESPACE_URL, f"qscrypt-quarantine:{entry.get('segment')}:{place}")
            await self._ensure_partitions(conn)
            async with conn.transaction():
                fresh = await db.mark_recorded(conn, marker, 1)
                if fresh:
                    await self._insert(conn, [row])
            return fresh
        apply = blocks.get(str(kind))
        if apply is not None and isinstance(entry.get("record"), dict):
            async with conn.transaction():
                await apply(conn, entry["record"])
            return True
        raise ValueError(f"quarantine entry of an unknown kind {kind!r} or without its data")

    async def _ensure_partitions(self, conn: asyncpg.Connection) -> None:
        """Daily partitions for today and the next two days, checked once a day."""
        today = datetime.now(UTC).date()
        if self._partitions_until is not None and today < self._partitions_until:
            return
        await db.ensure_share_partitions(conn, today, _PARTITION_DAYS)
        self._partitions_until = today + timedelta(days=1)

    async def _prune_markers(self, conn: asyncpg.Connection) -> None:
        """Markers only matter for a segment file a crash kept after its commit, which the next
        start replays within seconds: a month of them is plenty."""
        today = datetime.now(UTC).date()
        if self._markers_pruned == today:
            return
        await db.prune_recorded(conn, _MARKER_DAYS)
        self._markers_pruned = today

    async def _prune_shares(self, conn: asyncpg.Connection) -> None:
        """Once a day, drop raw shares past the retention, never inside the PPLNS window
        (pplns_factor x D x 65536 of share difficulty, D the largest scrypt difficulty known:
        the longest window). Without a difficulty nothing is pruned."""
        today = datetime.now(UTC).date()
        if self._shares_pruned == today:
            return
        self._shares_pruned = today
        difficulty = await db.max_network_difficulty(conn)
        if difficulty is None:
            self._log.info("shares.not_pruned", why="no network difficulty known for the PPLNS window")
            return
        retention = datetime.now(UTC) - timedelta(days=self.retention_days)
        cutoff = await db.share_prune_cutoff(conn, retention, self.pplns_factor * difficulty * 65536)
        if cutoff is not None:
            dropped = await db.prune_shares(conn, cutoff)
            if dropped:
                self._log.info("shares.pruned", before=cutoff.isoformat(), partitions=dropped)

    async def _write_coin_tallies(self, conn: asyncpg.Connection) -> None:
        """Add this interval's time and difficulty per worker and coin, priced at the aggregator's
        current difficulty, reward and price: what the work was expected to earn when it was done."""
        if self.accounting is None:
            return
        tallies = self.accounting.take_coin_tallies()
        if not tallies:
            return
        try:
            market = await db.scrypt_quotes(conn)
            rows: list[db.WorkerCoinDay] = []
            day = datetime.now(UTC).date()
            for (worker, coin), tally in tallies.items():
                quote = market.get(coin)
                coins = usd = 0.0
                unpriced = tally.difficulty
                if quote is not None and quote.difficulty and quote.block_reward is not None:
                    # share difficulty d is d·2^16 hashes; a block takes D·2^32 of them
                    coins = tally.difficulty * HASHES_PER_SHARE_DIFF1 * quote.block_reward / (
                        quote.difficulty * HASHES_PER_NETWORK_DIFF1)
                    usd = coins * (quote.price_usd or 0.0)
                    unpriced = 0.0
                rows.append((day, worker, coin, tally.seconds, tally.difficulty, coins, usd, unpriced))
            await db.add_worker_coin_days(conn, rows)
        except BaseException:
            self.accounting.return_coin_tallies(tallies)  # the next flush tries again
            raise


def worker_totals(rows: list[ShareRow]) -> list[WorkerTotals]:
    """(name, accepted, rejected, stale, last share, its ip, its host) per worker, sorted by name."""
    totals: dict[str, list[Any]] = {}
    for row in rows:
        ts, worker, result = row[0], row[1], row[6]
        entry = totals.get(worker)
        if entry is None:
            entry = totals[worker] = [0, 0, 0, ts, row[9], row[10]]
        index = _RESULT_INDEX.get(result)
        if index is None:  # a hand-edited segment: a row error, so bisection finds the row
            raise ValueError(f"share result {result!r} is none of {sorted(_RESULT_INDEX)}")
        entry[index] += 1
        if ts >= entry[3]:
            entry[3], entry[4], entry[5] = ts, row[9], row[10]
    return [(w, a, r, s, t, ip, host) for w, (a, r, s, t, ip, host) in sorted(totals.items())]


_RESULT_INDEX = {"accepted": 0, "rejected": 1, "stale": 2}
