"""Share recording: what the journal costs a share, and how fast the writer puts shares into PostgreSQL.

    python -m bench.recording [--rows N] [--workers W] [--runs R] [--rate ROWS_PER_S] [--dsn DSN]

The writer and journal are the proxy's own (proxy.accounting, proxy.journal) with its batching:
segments of 5,000 rows, one transaction each (COPY into the daily partition, the `workers`
upsert, the segment's marker). Figures, each the median of R runs on a fresh database state:
- journal: µs per `Accounting.accepted` with the row journaled (encode + os.write), beside the same
  call without a journal (counting only): the difference is what a share costs the event loop;
- memory: bytes per share row held in memory while it waits for PostgreSQL (tracemalloc);
- writer, rows in memory: rows/s the writer puts into PostgreSQL from memory (the normal case);
- writer, rows on disk only: the same after an outage, every row read back from its segment file;
- live: a producer appends at --rate rows/s on the same event loop for 10 s while the writer runs
  as in the proxy (flush every second): rows/s written and the largest backlog seen;
- block: ms to journal a found block durably (fsync) before it is submitted;
- reference: plain COPY of the same rows in 5,000-row transactions, nothing else (no journal, no
  workers upsert, no marker), on the same server in the same run: what asyncpg and PostgreSQL
  allow on this machine.
The database is a fresh embedded server, durable as `make run` starts it (fsync on), unless --dsn
names one. Target (issue 15): the writer sustains at least 50,000 rows/s.
"""

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import structlog

from proxy.accounting import Accounting, ShareWriter, share_log
from proxy.app import _tune_gc
from proxy.db import SHARE_COLUMNS, ShareRow
from proxy.journal import RecordJournal
from qscrypt.db.embedded import EmbeddedPostgres
from qscrypt.db.migrate import migrate

TARGET_ROWS_S = 50_000
SEGMENT_ROWS = 5000


def produce(accounting: Accounting, rows: int, workers: int, offset: int = 0) -> float:
    """Seconds to count `rows` accepted shares, spread over `workers` names (as the proxy does)."""
    names = [f"farm{w // 100}.rig{w % 100}" for w in range(workers)]
    accepted = accounting.accepted
    began = time.perf_counter()
    for n in range(offset, offset + rows):
        accepted(names[n % workers], "pool-a", f"{n // 1000:x}", 0.5, 0.75)
    return time.perf_counter() - began


async def reset(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE shares, workers, recorded_segments")
        await conn.fetchval("SELECT qscrypt_ensure_share_partitions($1, 3)", datetime.now(UTC).date())
    finally:
        await conn.close()


async def writer_drain(dsn: str, tmp: Path, rows: int, workers: int, memory_rows: int) -> float:
    """Rows/s of one writer pass over `rows` journaled rows (in memory, or on disk only)."""
    await reset(dsn)
    log = share_log(tmp / f"drain-{memory_rows}-{time.monotonic_ns()}", SEGMENT_ROWS, memory_rows)
    accounting = Accounting(log=log)
    produce(accounting, rows, workers)
    log.seal()
    writer = ShareWriter(log, dsn, tmp / "quarantine.jsonl", accounting)
    began = time.perf_counter()
    written = await writer.flush()
    elapsed = time.perf_counter() - began
    await writer.close()
    if written != rows or writer.quarantined:
        raise SystemExit(f"the writer wrote {written} of {rows} rows ({writer.quarantined} quarantined)")
    return rows / elapsed


async def reference_copy(dsn: str, rows: int, workers: int) -> float:
    await reset(dsn)
    names = [f"farm{w // 100}.rig{w % 100}" for w in range(workers)]
    now = datetime.now(UTC)
    records: list[ShareRow] = [(now, names[n % workers], "pool-a", f"{n // 1000:x}", 0.5, 0.75, "accepted",
                                None, None, "198.51.100.7", "host-a") for n in range(rows)]
    conn = await asyncpg.connect(dsn)
    try:
        began = time.perf_counter()
        for start in range(0, rows, SEGMENT_ROWS):
            async with conn.transaction():
                await conn.copy_records_to_table("shares", records=records[start:start + SEGMENT_ROWS],
                                                 columns=SHARE_COLUMNS)
        return rows / (time.perf_counter() - began)
    finally:
        await conn.close()


async def live(dsn: str, tmp: Path, rate: int, workers: int,
               seconds: float = 10.0) -> tuple[float, int, float]:
    """With a producer at `rate` on the writer's own loop for `seconds`: (rows/s produced and
    written, the largest backlog seen, seconds from the producer's end to the last row written)."""
    await reset(dsn)
    log = share_log(tmp / f"live-{time.monotonic_ns()}", SEGMENT_ROWS, 100_000)
    accounting = Accounting(log=log)
    writer = ShareWriter(log, dsn, tmp / "quarantine.jsonl", accounting, flush_s=1.0)
    await writer.start()
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    produced = 0
    backlog = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        produce(accounting, per_tick, workers, produced)
        produced += per_tick
        backlog = max(backlog, log.waiting_rows)
        # Sleep to the next tick: the producer takes the loop only as much as its rate needs.
        await asyncio.sleep(max(0.0, began + produced / rate - time.perf_counter()))
    produced_s = time.perf_counter() - began
    while log.waiting_rows:  # noqa: ASYNC110 - the tail, still part of what the writer had to do
        await asyncio.sleep(0.01)
    tail_s = time.perf_counter() - began - produced_s
    await writer.close()
    if writer.written != produced:
        raise SystemExit(f"live: {writer.written} of {produced} rows written")
    return produced / produced_s, backlog, tail_s


def block_journal_ms(tmp: Path, blocks: int = 20) -> float:
    """Median ms to make one found block durable before its submission (write, fsync, rename,
    fsync of the directory): what `submitblock` waits for (proxy.upstream.daemon)."""
    journal = RecordJournal(tmp / "blocks")
    record = {"coin": "LTC", "height": 1, "hash": "00" * 32, "worker": "farm1.rig1", "upstream": "solo",
              "reward": "6.25", "status": "pending", "reason": None,
              "found_at": datetime.now(UTC).isoformat()}
    timings = []
    for n in range(blocks):
        began = time.perf_counter()
        journal.put_now(f"{n:064x}", record)
        timings.append(time.perf_counter() - began)
    return statistics.median(timings) * 1000


def memory_per_row(tmp: Path, rows: int, workers: int) -> float:
    log = share_log(tmp / "memory", SEGMENT_ROWS, rows + SEGMENT_ROWS)
    accounting = Accounting(log=log)
    produce(accounting, workers, workers)  # every worker's stats exist first: only rows are measured
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    produce(accounting, rows, workers, workers)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    log.close()
    return (after - before) / rows


async def bench(dsn: str, tmp: Path, rows: int, workers: int, runs: int, rate: int) -> dict[str, list[float]]:
    await migrate(dsn)
    names = ("journal_us", "count_only_us", "memory_b", "drain_memory", "drain_disk", "live", "live_backlog",
             "live_tail_s", "reference", "block_ms")
    figures: dict[str, list[float]] = {k: [] for k in names}
    await writer_drain(dsn, tmp, 20_000, workers, rows)  # warm-up: connections, partitions, caches
    for run in range(runs):
        journaled = Accounting(log=share_log(tmp / f"journal-{run}", SEGMENT_ROWS, rows + SEGMENT_ROWS))
        figures["journal_us"].append(produce(journaled, rows, workers) / rows * 1e6)
        assert journaled.log is not None
        journaled.log.close()
        figures["count_only_us"].append(produce(Accounting(), rows, workers) / rows * 1e6)
        figures["memory_b"].append(memory_per_row(tmp / f"m{run}", min(rows, 200_000), workers))
        in_memory = await writer_drain(dsn, tmp, rows, workers, memory_rows=rows + SEGMENT_ROWS)
        figures["drain_memory"].append(in_memory)
        figures["drain_disk"].append(await writer_drain(dsn, tmp, rows, workers, memory_rows=0))
        written, backlog, tail = await live(dsn, tmp, rate, workers)
        figures["live"].append(written)
        figures["live_backlog"].append(backlog)
        figures["live_tail_s"].append(tail)
        figures["reference"].append(await reference_copy(dsn, rows, workers))
        figures["block_ms"].append(block_journal_ms(tmp / f"b{run}"))
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:,.1f}" for k, v in figures.items()), flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recording", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows per measurement (default 300,000)")
    parser.add_argument("--workers", type=int, default=1000, help="distinct worker names (default 1,000)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs after a warm-up (default 3)")
    parser.add_argument("--rate", type=int, default=60_000, help="live producer rows/s (default 60,000)")
    parser.add_argument("--dsn", help="PostgreSQL DSN; default: a fresh embedded server in a temp dir")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    _tune_gc()  # the proxy's garbage-collector settings: rows in memory are not re-walked per share
    with tempfile.TemporaryDirectory(prefix="qscrypt-bench-") as name:
        tmp = Path(name)
        server = None
        dsn = args.dsn
        if dsn is None:
            server = EmbeddedPostgres(tmp / "pg")  # durable, as `make run` starts it
            server.start()
            dsn = server.create_database("bench")
        try:
            figures = asyncio.run(bench(dsn, tmp, args.rows, args.workers, args.runs, args.rate))
        finally:
            if server is not None:
                server.stop()
    med = {k: statistics.median(v) for k, v in figures.items()}
    rng = {k: (min(v), max(v)) for k, v in figures.items()}
    database = "given DSN" if args.dsn else "embedded PostgreSQL, durable"
    print(f"\nshare recording, {args.rows:,} rows over {args.workers:,} workers, {database}, "
          f"median of {args.runs} runs (min–max):")
    print(f"  journal, per accepted share:   {med['journal_us']:.2f} µs  (counting only: "
          f"{med['count_only_us']:.2f} µs; the journal adds {med['journal_us'] - med['count_only_us']:.2f})")
    print(f"  memory per buffered share:     {med['memory_b']:.0f} bytes")
    print(f"  block journaled before submit: {med['block_ms']:.2f} ms (write, fsync, rename, fsync dir)")
    print(f"  writer, rows in memory:        {med['drain_memory']:,.0f} rows/s "
          f"({rng['drain_memory'][0]:,.0f}–{rng['drain_memory'][1]:,.0f})")
    print(f"  writer, rows on disk only:     {med['drain_disk']:,.0f} rows/s "
          f"({rng['drain_disk'][0]:,.0f}–{rng['drain_disk'][1]:,.0f})")
    print(f"  live, producer on the loop:    {med['live']:,.0f} rows/s for 10 s, all written; backlog at "
          f"most {med['live_backlog']:,.0f} rows ({med['live_backlog'] / med['live']:.1f} s of shares, "
          f"flush every 1 s), last row in {med['live_tail_s']:.2f} s after the producer stopped")
    print(f"  reference, plain COPY:         {med['reference']:,.0f} rows/s "
          f"({rng['reference'][0]:,.0f}–{rng['reference'][1]:,.0f})")
    met = med["drain_memory"] >= TARGET_ROWS_S and med["drain_disk"] >= TARGET_ROWS_S
    print(f"  target ≥ {TARGET_ROWS_S:,} rows/s: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
