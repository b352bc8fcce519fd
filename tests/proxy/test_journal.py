"""The local journals (proxy/journal.py) on a real file system: segments of share rows, keyed
records for blocks, the per-process directory lock. No database here: test_recording*.py write
what these hold into PostgreSQL."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.accounting import decode_row, encode_row, share_log
from proxy.db import ShareRow
from proxy.journal import JournalDir, RecordJournal, journal_dirs, read_quarantine

FEW = settings(max_examples=200, deadline=None)

text = st.text()  # every code point: lone surrogates, NUL, anything a bug could let through
floats = st.floats(allow_nan=True, allow_infinity=True)
rows = st.builds(
    lambda ts, worker, upstream, job_id, difficulty, share_diff, result, reason, block_hash, ip, host: (
        ts, worker, upstream, job_id, difficulty, share_diff, result, reason, block_hash, ip, host),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    text, text, text, floats, st.none() | floats, st.sampled_from(["accepted", "rejected", "stale"]),
    st.none() | text, st.none() | text, st.none() | text, st.none() | text,
)


def row(worker: str = "w", n: int = 0) -> ShareRow:
    when = datetime(2026, 12, 6, tzinfo=UTC) + timedelta(microseconds=n)
    return (when, worker, "pool", f"{n:x}", 0.5, 0.75, "accepted", None, None, "198.51.100.7", "host-a")


def test_a_row_journaled_before_ip_and_host_reads_back_with_none() -> None:
    # A proxy upgraded with rows still in its journal: the old 9-value lines still go in.
    old = json.loads(encode_row(row()))[:9]
    assert decode_row(old)[9:] == (None, None)
    assert decode_row(old)[:9] == row()[:9]


def same(a: ShareRow, b: ShareRow) -> bool:
    def eq(x: object, y: object) -> bool:
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x):
            return math.isnan(y)
        return x == y

    return all(eq(x, y) for x, y in zip(a, b, strict=True))


@FEW
@given(rows)
def test_any_row_survives_a_journal_line_unchanged(share: ShareRow) -> None:
    line = encode_row(share)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
    assert same(decode_row(json.loads(line)), share)


def test_rows_past_the_memory_bound_stay_on_disk_and_come_back(tmp_path: Path) -> None:
    log = share_log(tmp_path, segment_rows=3, memory_rows=4)
    written = [row(n=n) for n in range(10)]
    for share in written:
        log.append(share)
    assert [s.count for s in log.pending] == [3, 3, 3] and log.waiting_rows == 10
    # Sealing the third segment went over 4 rows in memory: the oldest ones are on disk only.
    assert log.rows_in_memory <= 4 + 3 and log.rows_on_disk_only == 6
    assert [s.rows is None for s in log.pending] == [True, True, False]
    log.seal()
    assert log.waiting_rows == 10 and len(log.pending) == 4

    again = share_log(tmp_path)  # a new process finds every segment, in order, rows on disk only
    assert [s.count for s in again.pending] == [3, 3, 3, 1]
    back = [r for s in again.pending for r in again.load(s)[0]]
    assert back == written
    for segment in list(again.pending):
        again.done(segment)
    assert again.waiting_rows == 0 and not list(tmp_path.glob("*.jsonl"))


def test_a_torn_or_edited_line_is_reported_not_fatal(tmp_path: Path) -> None:
    log = share_log(tmp_path, segment_rows=100)
    log.append(row(n=1))
    log.append(row(n=2))
    log.seal()
    segment = log.pending[0]
    with segment.path.open("ab") as fh:
        fh.write(b'[1796543097.1,"half a li')  # what a kill in the middle of a write could leave
    rows_back, unreadable = log.load(segment)
    assert rows_back == [row(n=1), row(n=2)]
    assert len(unreadable) == 1 and unreadable[0].line_no == 3 and "half a li" in unreadable[0].text


def test_a_failed_append_keeps_the_row_in_memory_and_writes_it_at_the_seal(tmp_path: Path) -> None:
    log = share_log(tmp_path, segment_rows=100, memory_rows=0)
    log.append(row(n=1))
    os.close(log._fd)  # the disk goes away under the journal (EBADF stands for EIO, ENOSPC)
    log.append(row(n=2))
    assert log.write_errors == 1 and log._open is not None and not log._open.durable
    log._fd = -1
    log.seal()  # written again whole, and only then may its rows leave memory
    segment = log.pending[0]
    assert segment.durable and log.load(segment)[0] == [row(n=1), row(n=2)]
    assert segment.rows is None and log.rows_on_disk_only == 2


async def test_a_record_is_removed_only_in_the_version_that_was_written(tmp_path: Path) -> None:
    journal = RecordJournal(tmp_path / "blocks")
    first = await journal.put("ab" * 32, {"status": "pending"})
    second = await journal.put("ab" * 32, {"status": "accepted"})
    assert second != first
    assert [(k, r["status"]) for k, _, r in await journal.pending()] == [("ab" * 32, "accepted")]
    assert not await journal.remove("ab" * 32, first)  # replayed the old one: the new one stays
    assert await journal.remove("ab" * 32, second)
    assert await journal.pending() == []
    assert not list((tmp_path / "blocks").iterdir())  # no temporary files left either
    with pytest.raises(Exception, match="safe file name"):
        await journal.put("../escape", {})


def test_a_record_the_database_refuses_moves_to_the_quarantine_with_its_reason(tmp_path: Path) -> None:
    journal = RecordJournal(tmp_path / "blocks")
    version = journal.put_now("cd" * 32, {"coin": "ltc"})
    journal.quarantine_now("cd" * 32, version, "CheckViolationError: coin", tmp_path / "quarantine.jsonl")
    assert journal.pending_now() == []
    [entry] = read_quarantine(tmp_path / "quarantine.jsonl")
    assert entry["kind"] == "blocks" and entry["record"] == {"coin": "ltc"} and "coin" in entry["reason"]


def test_each_live_process_gets_a_directory_of_its_own(tmp_path: Path) -> None:
    first = JournalDir.claim(tmp_path, "proxy")
    second = JournalDir.claim(tmp_path, "proxy")  # another flock on the same file: held
    assert first.path.name == "proxy" and second.path.name == "proxy-2"
    first.release()
    third = JournalDir.claim(tmp_path, "proxy")
    assert third.path.name == "proxy"
    assert journal_dirs(tmp_path) == [tmp_path / "proxy", tmp_path / "proxy-2"]
    second.release()
    third.release()


def test_the_spill_file_of_an_older_proxy_is_adopted_as_a_segment(tmp_path: Path) -> None:
    old = [row(n=n) for n in range(3)]
    # The format before the journal: JSON arrays with the time as ISO text.
    (tmp_path / "shares.jsonl").write_text(
        "".join(json.dumps([r[0].isoformat(), *r[1:]]) + "\n" for r in old))
    claimed = JournalDir.claim(tmp_path, "proxy")
    try:
        log = share_log(claimed.shares)
        assert not (tmp_path / "shares.jsonl").exists()
        assert [r for s in log.pending for r in log.load(s)[0]] == old
    finally:
        claimed.release()
