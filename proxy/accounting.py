"""Per-worker share accounting: counted in memory, written to PostgreSQL in batches.

Share handling never waits for the database. Records queue in memory; a writer task copies them
in batches. When PostgreSQL is down the queue grows to its bound, then the oldest records spill
to a local JSON-lines file; both are written once the database is back, so no accepted share is
lost to an outage.
"""

import asyncio
import contextlib
import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

from mining.target import HASHES_PER_NETWORK_DIFF1, HASHES_PER_SHARE_DIFF1, hashrate_from_shares
from qscrypt.log import get_logger

SHARE_COLUMNS = ("ts", "worker", "upstream", "job_id", "difficulty", "share_diff", "result", "reason",
                 "block_hash")
ShareRow = tuple[datetime, str, str, str, float, float | None, str, str | None, str | None]


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
    def __init__(self, window_s: float = 300.0, keep_rows: bool = True) -> None:
        """`keep_rows`: queue a row per share for a `ShareWriter`; without a database nothing would
        ever drain them."""
        self.window_s = window_s
        self.keep_rows = keep_rows
        self.workers: dict[str, WorkerStats] = {}
        self.queue: deque[ShareRow] = deque()
        self.coins: dict[tuple[str, str], CoinTally] = {}

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
                 block_hash: str | None = None, coin: str | None = None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if coin:
            self._tally(worker, coin).difficulty += difficulty
        self._stats(worker).add_accepted(now, difficulty)
        if self.keep_rows:
            self.queue.append((datetime.now(UTC), worker, upstream, job_id, difficulty, share_diff,
                               "accepted", None, block_hash))

    def rejected(self, worker: str, upstream: str, job_id: str, difficulty: float, reason: str,
                 stale: bool) -> None:
        stats = self._stats(worker)
        if stale:
            stats.stale += 1
        else:
            stats.rejected[reason] += 1
        if self.keep_rows:
            self.queue.append((datetime.now(UTC), worker, upstream, job_id, difficulty, None,
                               "stale" if stale else "rejected", reason, None))


def _row_to_json(row: ShareRow) -> str:
    return json.dumps([row[0].isoformat(), *row[1:]])


def _row_from_json(line: str) -> ShareRow:
    values = json.loads(line)
    return (datetime.fromisoformat(values[0]), *values[1:])  # type: ignore[return-value]


class ShareWriter:
    """Drains `Accounting.queue` into PostgreSQL; spills to `spill_dir` past `max_buffer` rows."""

    def __init__(self, accounting: Accounting, dsn: str, spill_dir: Path, max_buffer: int = 100_000,
                 flush_s: float = 1.0, batch: int = 5000) -> None:
        self.accounting = accounting
        self.dsn = dsn
        self.spill_dir = spill_dir
        self.max_buffer = max_buffer
        self.flush_s = flush_s
        self.batch = batch
        self.written = 0
        self.spilled = 0
        self.failures = 0
        self.quarantined = 0
        self._partitions_until: date | None = None
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger(component="share-writer")

    @property
    def spill_file(self) -> Path:
        return self.spill_dir / "shares.jsonl"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="share-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.flush()
        self._spill(len(self.accounting.queue))  # whatever the database could not take
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.failures += 1
                self._log.warning("shares.flush_failed", error=str(exc), buffered=len(self.accounting.queue))
                await self._disconnect()
            overflow = len(self.accounting.queue) - self.max_buffer
            if overflow > 0:
                self._spill(overflow)

    async def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.terminate()
        self._conn = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.dsn, timeout=5)
        return self._conn

    def _spill(self, count: int) -> None:
        if count <= 0:
            return
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        queue = self.accounting.queue
        with self.spill_file.open("a") as fh:
            for _ in range(count):
                fh.write(_row_to_json(queue.popleft()) + "\n")
        self.spilled += count
        self._log.warning("shares.spilled", rows=count, file=str(self.spill_file))

    async def flush(self) -> int:
        """Write spilled rows first (they are older), then the queue. Returns rows written."""
        written = 0
        if self.spill_file.exists():
            written += await self._flush_spill()
        await self._write_coin_tallies()
        queue = self.accounting.queue
        while queue:
            rows = [queue[i] for i in range(min(self.batch, len(queue)))]
            await self._write(rows)
            for _ in rows:
                queue.popleft()
            written += len(rows)
        self.written += written
        return written

    async def _write_coin_tallies(self) -> None:
        """Add this interval's time and difficulty per worker and coin, priced at the aggregator's
        current difficulty, reward and price: what the work was expected to earn when it was done."""
        tallies = self.accounting.take_coin_tallies()
        if not tallies:
            return
        try:
            conn = await self._connection()
            market = {r["symbol"]: r for r in await conn.fetch(
                "SELECT symbol, difficulty, block_reward, price_usd FROM coins WHERE algorithm = 'scrypt'"
                " AND NOT stale")}
            rows = []
            day = datetime.now(UTC).date()
            for (worker, coin), tally in tallies.items():
                quote = market.get(coin)
                coins = usd = 0.0
                unpriced = tally.difficulty
                if quote is not None and quote["difficulty"] and quote["block_reward"] is not None:
                    # share difficulty d is d·2^16 hashes; a block takes D·2^32 of them
                    coins = tally.difficulty * HASHES_PER_SHARE_DIFF1 * float(quote["block_reward"]) / (
                        float(quote["difficulty"]) * HASHES_PER_NETWORK_DIFF1)
                    usd = coins * float(quote["price_usd"] or 0.0)
                    unpriced = 0.0
                rows.append((day, worker, coin, tally.seconds, tally.difficulty, coins, usd, unpriced))
            await conn.executemany(
                """
                INSERT INTO worker_coin_daily AS w (day, worker, coin, seconds, accepted_difficulty,
                                                    expected_coins, expected_usd, unpriced_difficulty)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT (day, worker, coin) DO UPDATE SET
                    seconds = w.seconds + EXCLUDED.seconds,
                    accepted_difficulty = w.accepted_difficulty + EXCLUDED.accepted_difficulty,
                    expected_coins = w.expected_coins + EXCLUDED.expected_coins,
                    expected_usd = w.expected_usd + EXCLUDED.expected_usd,
                    unpriced_difficulty = w.unpriced_difficulty + EXCLUDED.unpriced_difficulty
                """, rows)
        except BaseException:
            self.accounting.return_coin_tallies(tallies)  # the next flush tries again
            raise

    async def _flush_spill(self) -> int:
        # Rename first so rows spilled while this replay runs go to a new file, never lost or doubled.
        replay = self.spill_file.with_suffix(".replay")
        if not replay.exists():
            self.spill_file.rename(replay)
        rows = [_row_from_json(line) for line in replay.read_text().splitlines() if line.strip()]
        await self._write(rows)  # one transaction: a failure part-way must not write rows twice
        replay.unlink()
        return len(rows)

    @property
    def quarantine_file(self) -> Path:
        return self.spill_dir / "shares.rejected-by-db.jsonl"

    async def _write(self, rows: list[ShareRow]) -> None:
        conn = await self._connection()
        await self._ensure_partitions(conn)
        try:
            await self._insert(conn, rows)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            # One bad row must not hold every other share hostage: write the rest one by one and
            # keep the rows the database refuses in a file beside the spill, for an operator.
            self._log.error("shares.rows_refused", error=str(exc), batch=len(rows))
            for row in rows:
                try:
                    await self._insert(conn, [row])
                except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
                    self._quarantine(row)

    def _quarantine(self, row: ShareRow) -> None:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        with self.quarantine_file.open("a") as fh:
            fh.write(_row_to_json(row) + "\n")
        self.quarantined += 1

    async def _ensure_partitions(self, conn: asyncpg.Connection) -> None:
        """Daily partitions for today and the next two days, checked once a day."""
        today = datetime.now(UTC).date()
        if self._partitions_until is not None and today < self._partitions_until:
            return
        await conn.fetchval("SELECT qscrypt_ensure_share_partitions($1, 3)", today)
        self._partitions_until = today + timedelta(days=1)

    async def _insert(self, conn: asyncpg.Connection, rows: list[ShareRow]) -> None:
        async with conn.transaction():
            await conn.copy_records_to_table("shares", records=rows, columns=SHARE_COLUMNS)
            await conn.executemany(
                """
                INSERT INTO workers (name, accepted, rejected, stale, last_share_at, last_seen)
                VALUES ($1, $2, $3, $4, $5, $5)
                ON CONFLICT (name) DO UPDATE SET
                    accepted = workers.accepted + EXCLUDED.accepted,
                    rejected = workers.rejected + EXCLUDED.rejected,
                    stale = workers.stale + EXCLUDED.stale,
                    last_share_at = GREATEST(workers.last_share_at, EXCLUDED.last_share_at),
                    last_seen = GREATEST(workers.last_seen, EXCLUDED.last_seen)
                """,
                _worker_totals(rows),
            )


def _worker_totals(rows: list[ShareRow]) -> list[tuple[str, int, int, int, datetime]]:
    totals: dict[str, list[object]] = {}
    for row in rows:
        ts, worker, result = row[0], row[1], row[6]
        entry = totals.setdefault(worker, [0, 0, 0, ts])
        index = {"accepted": 0, "rejected": 1, "stale": 2}[result]
        entry[index] = int(entry[index]) + 1  # type: ignore[call-overload]
        entry[3] = max(entry[3], ts)  # type: ignore[type-var]
    return [(w, int(a), int(r), int(s), t) for w, (a, r, s, t) in totals.items()]  # type: ignore[misc]
