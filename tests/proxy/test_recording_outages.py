"""Nothing accepted is lost (issue 15): the proxy SIGKILLed in the middle of a batch and restarted,
and PostgreSQL stopped for 60 s then killed and restarted, while a miner finds blocks on a real
Litecoin Core regtest pair. Every share the miner heard "accepted" for, and every block it found,
is counted against the rows: zero lost, none twice.

Each test has its own PostgreSQL server (durable: it is killed) and the module its own regtest
pair, so the blocks mined here do not bring the session's pair near MWEB activation (block 432).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from qscrypt.db.embedded import EmbeddedPostgres, PostgresError, free_port
from qscrypt.db.migrate import migrate
from qscrypt.devnet.litecoind import RegtestPair, start_pair
from tests.proxy.conftest import wait_for
from tests.proxy.test_recording import eventually_rows, query
from tests.services import fixture_failure
from tests.services.postgres import scratch_dir
from tests.solo.miner import SoloMiner
from tests.solo.support import daemon_config, mine_block, running_proxy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def own_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestPair]:
    try:
        pair = start_pair(tmp_path_factory.mktemp("litecoin-outages"))
    except Exception as exc:
        raise fixture_failure(f"litecoind regtest pair did not start: {exc}") from None
    yield pair
    pair.stop()


@pytest.fixture
async def own_postgres() -> AsyncIterator[tuple[EmbeddedPostgres, str]]:
    root = scratch_dir("outage")
    server = EmbeddedPostgres(root / "pg")  # durable (fsync, synchronous commit): it gets killed
    dsn = await asyncio.to_thread(server.start)
    await migrate(dsn)
    try:
        yield server, dsn
    finally:
        with contextlib.suppress(PostgresError):
            await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Tally:
    """What the miner was told: every accepted share here is also a block (regtest)."""

    worker: str
    blocks: list[str] = field(default_factory=list)

    async def mine(self, miner: SoloMiner, pair: RegtestPair) -> None:
        self.blocks.append((await mine_block(miner, pair, "test_recording_outages")).block_hash)

    async def assert_all_recorded(self, dsn: str, timeout: float = 30.0) -> None:
        count = len(self.blocks)
        await eventually_rows(dsn, "SELECT count(*) FROM shares WHERE worker = $1 AND result = 'accepted'",
                              count, self.worker, timeout=timeout)
        await eventually_rows(dsn, "SELECT count(*) FROM blocks WHERE hash = ANY($1::text[])", count,
                              self.blocks, timeout=timeout)
        rows = await query(dsn, "SELECT count(*) AS n, count(DISTINCT hash) AS d FROM blocks"
                                " WHERE worker = $1", self.worker)
        assert rows[0]["n"] == rows[0]["d"] == count  # none twice, none more
        statuses = await query(dsn, "SELECT DISTINCT status FROM blocks WHERE worker = $1", self.worker)
        assert {r["status"] for r in statuses} == {"accepted"}


# -- the proxy killed mid-batch -------------------------------------------------------------------


def write_config(path: Path, dsn: str, pair: RegtestPair, address: str, port: int, spill: Path) -> None:
    upstream = daemon_config(pair, address)
    path.write_text(f"""
[database]
dsn = "{dsn}"

[logging]
format = "json"

[proxy]
metrics_port = 0
hash_processes = 1
share_flush_s = 0.2
spill_dir = "{spill}"

[proxy.listen]
host = "127.0.0.1"
port = {port}

[proxy.vardiff]
initial = 1e-5
minimum = 1e-6

[proxy.switching]
api_url = ""

[[proxy.upstreams]]
name = "solo"
kind = "daemon"
coin = "LTC"
network = "regtest"
rpc_url = "{upstream.rpc_url}"
rpc_user = "{upstream.rpc_user}"
rpc_password = "{upstream.rpc_password}"
payout_address = "{address}"
coinbase_tag = "/qscrypt-crash-test/"
""")


class ProxyProcess:
    """`qscrypt proxy` in a process group of its own, so a SIGKILL takes its hashers too, as a
    crash of the service would."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with self.log.open("ab") as out:
            command = [sys.executable, "-m", "cli", "-c", str(self.config), "proxy"]
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def ensure_gone(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


async def join(port: int, worker: str, timeout: float = 30.0) -> SoloMiner:
    deadline = time.monotonic() + timeout
    while True:
        miner = SoloMiner("127.0.0.1", port, worker=worker)
        try:
            await miner.join()
            await miner.wait_job()
            return miner
        except (OSError, AssertionError, TimeoutError):
            await miner.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_proxy_killed_mid_batch_loses_no_accepted_share_or_block(
        own_pair: RegtestPair, own_postgres: tuple[EmbeddedPostgres, str], tmp_path: Path) -> None:
    _, dsn = own_postgres
    port = free_port()
    spill = tmp_path / "spill"
    config = tmp_path / "proxy.toml"
    write_config(config, dsn, own_pair, own_pair.wallet.call("getnewaddress", "", "bech32"), port, spill)
    tally = Tally("crash.rig")
    proxy = ProxyProcess(config, tmp_path / "proxy.log")
    blocker = await asyncpg.connect(dsn)
    try:
        # Partitions first, so the writer's batch is what waits for the lock, not their creation.
        await blocker.fetchval("SELECT qscrypt_ensure_share_partitions((now() AT TIME ZONE 'UTC')::date, 3)")
        proxy.start()
        miner = await join(port, tally.worker)
        try:
            # Hold the tables: the writer's COPY (and the blocks' inserts) wait mid-transaction.
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("LOCK TABLE shares, blocks IN ACCESS EXCLUSIVE MODE")
            for _ in range(5):
                await tally.mine(miner, own_pair)

            async def writer_waits() -> bool:
                # asyncpg's COPY first reads the table's row type ("SELECT … FROM "shares""): the
                # writer's transaction (its segment marker inserted) waits there or at the COPY.
                rows = await query(dsn, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                        " AND query LIKE '%\"shares\"%'")
                return rows[0][0] == 1

            # Journaled blocks go first and wait on `blocks` until their statement times out (5 s).
            deadline = time.monotonic() + 30
            while not await writer_waits():
                assert time.monotonic() < deadline, "the writer never reached its batch"
                await asyncio.sleep(0.1)
            proxy.kill()  # SIGKILL, mid-batch
            await lock.rollback()
        finally:
            await miner.close()
        assert (await query(dsn, "SELECT count(*) FROM shares"))[0][0] == 0, "the batch was not committed"
        assert list(spill.rglob("shares/*.jsonl")) and len(list(spill.rglob("blocks/*.json"))) == 5

        proxy.start()  # the same spill dir: the new process replays what the killed one journaled
        miner = await join(port, tally.worker)
        try:
            for _ in range(2):
                await tally.mine(miner, own_pair)
        finally:
            await miner.close()
        await tally.assert_all_recorded(dsn)
        assert proxy.stop() == 0
        assert not list(spill.rglob("shares/*.jsonl")) and not list(spill.rglob("blocks/*.json"))
        assert not list(spill.rglob("quarantine.jsonl"))
    finally:
        proxy.ensure_gone()
        await blocker.close()


# -- PostgreSQL away for a minute, then killed -----------------------------------------------------


async def kill_postgres(server: EmbeddedPostgres) -> None:
    """SIGKILL the postmaster (a crash, no shutdown), then start it again: crash recovery."""
    assert server._process is not None
    server._process.kill()
    await asyncio.to_thread(server._process.wait)
    server._process = None
    deadline = time.monotonic() + 30
    while True:  # its orphaned backends hold the shared memory until they notice and exit
        try:
            await asyncio.to_thread(server.start)
            return
        except PostgresError:
            server._process = None
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@pytest.mark.timeout(240)
async def test_postgres_stopped_for_a_minute_then_killed_loses_no_accepted_share_or_block(
        own_pair: RegtestPair, own_postgres: tuple[EmbeddedPostgres, str], tmp_path: Path) -> None:
    server, dsn = own_postgres
    tally = Tally("outage.rig")
    address = own_pair.wallet.call("getnewaddress", "", "bech32")
    stop_mining = asyncio.Event()

    async def keep_mining(miner: SoloMiner) -> None:
        while not stop_mining.is_set():
            await tally.mine(miner, own_pair)
            await asyncio.sleep(0.5)  # about one block a second: the pair stays far from block 432

    # A memory bound of 3 rows: most of the outage's shares wait on disk only.
    async with running_proxy(daemon_config(own_pair, address), dsn, tmp_path / "spill") as proxy:
        assert proxy.writer is not None and proxy.accounting.log is not None
        proxy.accounting.log.memory_rows = 3
        miner = await SoloMiner("127.0.0.1", proxy.ports["tcp"], worker=tally.worker).join()
        mining = asyncio.create_task(keep_mining(miner))
        try:
            await wait_for(lambda: len(tally.blocks) >= 3, "a few blocks before the outage", timeout=30)
            await asyncio.to_thread(server.stop)
            outage_began = len(tally.blocks)
            await asyncio.sleep(60)
            assert proxy.writer.database_up is False
            assert proxy.accounting.log.rows_on_disk_only > 0, "past the memory bound: on disk"
            during = len(tally.blocks) - outage_began
            assert during >= 20, f"only {during} blocks during the outage"
            await asyncio.to_thread(server.start)
            await asyncio.sleep(1.0)  # the writer is replaying the backlog
            await kill_postgres(server)
            await asyncio.sleep(3)
        finally:
            stop_mining.set()
            await mining
            await miner.close()
        await tally.assert_all_recorded(dsn, timeout=60)
        await wait_for(lambda: proxy.accounting.rows_waiting == 0, "the journal to drain", timeout=20)
        assert proxy.blocks is not None and await proxy.blocks.pending() == []
        assert proxy.writer.quarantined == 0
