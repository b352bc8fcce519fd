"""`qscrypt spill status|replay`: what waits on disk for PostgreSQL, and writing it on demand.

Each proxy process journals under `proxy.spill_dir/<name>/` (proxy.journal): share segments
(`shares/*.jsonl`), found blocks (`blocks/*.json`) and the rows PostgreSQL refused for good
(`quarantine.jsonl`). A running proxy replays its own directory by itself; this command handles
the directories no live process holds (a proxy that was stopped while the database was away,
one that crashed, a changed `workers` count) and, with `--quarantine`, tries quarantined rows
again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from proxy.journal import (
    SEGMENT_SUFFIX,
    JournalDir,
    RecordJournal,
    count_lines,
    journal_dirs,
    read_quarantine,
    try_lock,
)


@dataclass
class DirStatus:
    path: str
    held: bool
    """A live process holds it (and replays it itself)."""
    segments: int = 0
    share_rows: int = 0
    blocks: list[dict[str, Any]] = field(default_factory=list)
    unreadable_blocks: list[str] = field(default_factory=list)
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.segments or self.blocks or self.unreadable_blocks or self.quarantined)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="spill_command", required=True)
    p = sub.add_parser("status", help="list the journal, spill and quarantine files")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("replay", help="write what waits on disk into PostgreSQL")
    p.add_argument("--quarantine", action="store_true",
                   help="also try the rows PostgreSQL refused before (kept if refused again)")


def dir_status(path: Path, held: bool) -> DirStatus:
    status = DirStatus(str(path), held)
    shares = path / "shares"
    if shares.is_dir():
        for segment in sorted(shares.glob(f"*{SEGMENT_SUFFIX}")):
            with contextlib.suppress(OSError):
                status.share_rows += count_lines(segment)
                status.segments += 1
    blocks = path / "blocks"
    if blocks.is_dir():
        journal = RecordJournal(blocks, create=False)
        shown = ("height", "status", "worker", "found_at")
        status.blocks = [{"key": key, **{k: record.get(k) for k in shown}}
                         for key, _, record in journal.pending_now()]
        status.unreadable_blocks = [str(p) for p in journal.unreadable_now()]
    for entry in read_quarantine(path / "quarantine.jsonl"):
        status.quarantined += 1
        reason = str(entry.get("error") or entry.get("reason") or "unreadable line")
        status.quarantine_reasons[reason[:120]] = status.quarantine_reasons.get(reason[:120], 0) + 1
    return status


def status(spill_dir: Path) -> list[DirStatus]:
    found = []
    for path in journal_dirs(spill_dir):
        fd = try_lock(path)
        if fd is not None:
            os.close(fd)
        found.append(dir_status(path, held=fd is None))
    return found


def legacy_files(spill_dir: Path) -> list[Path]:
    return [p for p in (spill_dir / "shares.jsonl", spill_dir / "shares.replay",
                        spill_dir / "shares.rejected-by-db.jsonl") if p.exists()]


def print_status(spill_dir: Path, found: list[DirStatus], as_json: bool) -> None:
    legacy = legacy_files(spill_dir)
    if as_json:
        print(json.dumps({"spill_dir": str(spill_dir), "directories": [asdict(s) for s in found],
                          "legacy_files": [str(p) for p in legacy]}, indent=2))
        return
    print(f"spill dir: {spill_dir}")
    waiting = [s for s in found if not s.empty]
    if not waiting and not legacy:
        print(f"  nothing waiting ({len(found)} journal directories, all empty)")
    for s in waiting:
        owner = "held by a running proxy, which replays it itself" if s.held else "not held by any process"
        print(f"  {s.path} ({owner})")
        print(f"    shares: {s.share_rows} rows in {s.segments} segment files waiting for PostgreSQL")
        print(f"    blocks: {len(s.blocks)} journaled, not yet in `blocks`")
        for block in s.blocks:
            print(f"      {block['key']} height {block['height']} status {block['status']} "
                  f"worker {block['worker']} found {block['found_at']}")
        for bad in s.unreadable_blocks:
            print(f"      unreadable record file: {bad}")
        print(f"    quarantine: {s.quarantined} entries PostgreSQL refused ({s.path}/quarantine.jsonl)")
        for reason, count in sorted(s.quarantine_reasons.items(), key=lambda item: -item[1]):
            print(f"      {count} × {reason}")
    for path in legacy:
        print(f"  {path}: spill file of an older proxy (a proxy starting on this spill dir adopts it)")


async def replay(spill_dir: Path, dsn: str, quarantine: bool) -> int:
    """Replay every journal directory no live process holds; 0 when nothing is left."""
    from proxy.accounting import ShareWriter, share_log
    from proxy.upstream.daemon import insert_block
    from qscrypt.db.migrate import migrate

    try:
        await migrate(dsn)
    except Exception as exc:  # unreachable, refused: say so, touch nothing
        print(f"PostgreSQL is not reachable ({type(exc).__name__}: {exc}); nothing was replayed")
        return 2
    left = 0
    claimed: list[JournalDir] = []
    # A proxy from before the journal left its spill in spill_dir itself: claiming adopts it.
    if any(p.name != "shares.rejected-by-db.jsonl" for p in legacy_files(spill_dir)):
        claimed.append(JournalDir.claim(spill_dir, "replay"))
    for path in journal_dirs(spill_dir):
        if any(c.path == path for c in claimed):
            continue
        fd = try_lock(path)
        if fd is None:
            print(f"{path}: held by a running proxy, which replays it itself; skipped")
            continue
        claimed.append(JournalDir(path, fd))
    try:
        for journal in claimed:
            log = share_log(journal.shares)
            blocks = RecordJournal(journal.blocks)
            writer = ShareWriter(log, dsn, journal.quarantine, records=[(blocks, insert_block)])
            try:
                before = log.waiting_rows
                written = await writer.flush()
                replayed_q, left_q = await writer.replay_quarantine() if quarantine else (0, 0)
                print(f"{journal.path}: {written} share rows written ({before - written} already there "
                      f"or quarantined), {writer.quarantined} rows quarantined, "
                      f"{writer.records_waiting} block records left"
                      + (f", quarantine: {replayed_q} written, {left_q} still refused" if quarantine else ""))
                left += log.waiting_rows + writer.records_waiting + left_q
            except Exception as exc:
                print(f"{journal.path}: stopped: {type(exc).__name__}: {exc} (everything is still on disk)")
                left += max(log.waiting_rows, 1)
            finally:
                await writer.close()
    finally:
        for journal in claimed:
            journal.release()  # the directory stays: a proxy may claim it the moment it is free
    return 0 if left == 0 else 1


def main(args: argparse.Namespace) -> int | Coroutine[Any, Any, int]:
    from qscrypt.db import database_dsn

    spill_dir = Path(args.section.spill_dir)  # args.section: the [proxy] section (ProxyConfig)
    if args.spill_command == "status":
        print_status(spill_dir, status(spill_dir), args.json)
        return 0
    return replay(spill_dir, database_dsn(args.database), args.quarantine)
