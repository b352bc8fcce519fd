"""`qscrypt spill status|replay` as an operator runs it: a real process, a real PostgreSQL, the
journal directories a stopped proxy left behind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from proxy.accounting import ShareWriter, share_log
from proxy.journal import JournalDir, RecordJournal, read_quarantine
from proxy.upstream.daemon import BlockRecord, insert_block
from tests.proxy.test_recording import query

REPO = Path(__file__).resolve().parents[2]
BLOCK = "0" * 8 + "ab" * 28


def qscrypt(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", "-c", str(config), "spill", *args],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120, check=False)


async def left_by_a_stopped_proxy(spill: Path, dsn: str) -> None:
    """What a proxy leaves when it stops with PostgreSQL away: share segments, a found block, and
    a row the database refused (an empty worker name breaks `workers`' CHECK)."""
    claimed = JournalDir.claim(spill, "proxy")
    log = share_log(claimed.shares, segment_rows=4)
    blocks = RecordJournal(claimed.blocks)
    writer = ShareWriter(log, dsn, claimed.quarantine, records=[(blocks, insert_block)])
    log.append((datetime.now(UTC), "", "solo", "1", 0.5, 0.6, "accepted", None, None, "127.0.0.1", "host-a"))
    await writer.close()  # its last flush quarantines the refused row
    assert writer.quarantined == 1
    for n in range(10):  # then PostgreSQL went away
        log.append((datetime.now(UTC), "cli.rig", "solo", f"{n:x}", 0.5, 0.6, "accepted", None, None,
                    "127.0.0.1", "host-a"))
    log.close()
    found = BlockRecord("LTC", 500, BLOCK, "cli.rig", "solo", Decimal("6.25"), "accepted", None,
                        datetime.now(UTC))
    await blocks.put(BLOCK, found.to_json())
    claimed.release()


async def test_status_then_replay_then_the_quarantine_fixed_by_hand(pg_dsn: str, tmp_path: Path) -> None:
    await query(pg_dsn, "TRUNCATE shares, workers, blocks")
    spill = tmp_path / "spill"
    config = tmp_path / "qscrypt.toml"
    config.write_text(f'[database]\ndsn = "{pg_dsn}"\n\n[proxy]\nspill_dir = "{spill}"\n')
    await left_by_a_stopped_proxy(spill, pg_dsn)
    held = JournalDir.claim(spill, "worker-1")  # a live proxy's: replay must leave it alone
    share_log(held.shares).append((datetime.now(UTC), "live", "solo", "1", 0.5, 0.6, "accepted", None, None,
                                   "127.0.0.1", "host-a"))
    try:
        shown = qscrypt(config, "status", "--json")
        assert shown.returncode == 0, shown.stderr
        dirs = {Path(d["path"]).name: d for d in json.loads(shown.stdout)["directories"]}
        assert dirs["proxy"]["held"] is False and dirs["worker-1"]["held"] is True
        assert dirs["proxy"]["share_rows"] == 10 and dirs["proxy"]["segments"] == 3
        assert [b["key"] for b in dirs["proxy"]["blocks"]] == [BLOCK]
        assert dirs["proxy"]["quarantined"] == 1
        human = qscrypt(config, "status")
        assert "10 rows in 3 segment files" in human.stdout and BLOCK in human.stdout

        replayed = qscrypt(config, "replay")
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "worker-1: held by a running proxy" in replayed.stdout
        rows = await query(pg_dsn, "SELECT worker, count(*) AS n FROM shares GROUP BY worker")
        assert {r["worker"]: r["n"] for r in rows} == {"cli.rig": 10}
        assert [r["hash"] for r in await query(pg_dsn, "SELECT hash FROM blocks")] == [BLOCK]

        # The operator names the refused row's worker and replays the quarantine.
        quarantine = spill / "proxy" / "quarantine.jsonl"
        [entry] = read_quarantine(quarantine)
        assert entry["sqlstate"] == "23514"
        entry["row"][1] = "fixed-by-hand"
        quarantine.write_text(json.dumps(entry) + "\n")
        for _ in range(2):  # the second time writes nothing again
            fixed = qscrypt(config, "replay", "--quarantine")
            assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        rows = await query(pg_dsn, "SELECT worker, count(*) AS n FROM shares GROUP BY worker")
        assert {r["worker"]: r["n"] for r in rows} == {"cli.rig": 10, "fixed-by-hand": 1}
        assert not quarantine.exists()

        after = json.loads(qscrypt(config, "status", "--json").stdout)["directories"]
        waiting = [(Path(d["path"]).name, d["share_rows"]) for d in after if d["share_rows"]]
        assert waiting == [("worker-1", 1)]
    finally:
        held.release()


async def test_replay_with_the_database_away_keeps_everything_and_says_so(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    claimed = JournalDir.claim(spill, "proxy")
    log = share_log(claimed.shares)
    log.append((datetime.now(UTC), "w", "solo", "1", 0.5, 0.6, "accepted", None, None, "127.0.0.1", "host-a"))
    log.close()
    claimed.release()
    config = tmp_path / "qscrypt.toml"
    # Nothing listens on port 9 of loopback: connection refused.
    config.write_text(f'[database]\ndsn = "postgresql://postgres@127.0.0.1:9/x"\n\n'
                      f'[proxy]\nspill_dir = "{spill}"\n')
    result = await asyncio.to_thread(qscrypt, config, "replay")
    assert result.returncode != 0 and "not reachable" in result.stdout
    assert len(list((spill / "proxy" / "shares").glob("*.jsonl"))) == 1
