"""The built-in miner against a real in-test Stratum pool over loopback TCP."""

import asyncio
import os
import signal
import sys
from pathlib import Path

from structlog.testing import capture_logs

from backends.cpu import CpuEngine
from backends.devices import EngineOptions
from backends.engine import Engine
from backends.miner import MinerConfig, MinerStats, run_miner
from backends.opencl import OpenClEngine
from mining import stratum
from tests.stratum_peers import PoolServer

REPO = Path(__file__).resolve().parents[2]
EASY = 1 / 32  # about 2,048 hashes a share: tens of shares a second with SIMD scrypt on two cores


def _pool(answer_delay_s: float = 0.0, reject_first: int = 0) -> PoolServer:
    """A pool at EASY that sends jobs only when a test says so."""
    return PoolServer(difficulty=EASY, job_interval_s=None, answer_delay_s=answer_delay_s,
                      reject_first=reject_first)


def _config(url: str, **overrides: object) -> MinerConfig:
    settings: dict[str, object] = {"chunk_seconds": 0.1, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2,
                                   "flush_timeout_s": 3.0}
    settings.update(overrides)
    return MinerConfig(url=url, user="worker1", password="x", **settings)  # type: ignore[arg-type]


async def _mine(pool: PoolServer, hasher: Engine | None, until: object, **overrides: object) -> MinerStats:
    stop = asyncio.Event()
    task = asyncio.create_task(run_miner(_config(pool.url, **overrides), stop, hasher))
    try:
        await pool.wait_for(until)
    finally:
        stop.set()
    return await asyncio.wait_for(task, 15)


async def test_valid_shares_are_accepted(cpu_engine: CpuEngine) -> None:
    async with _pool() as pool:
        with capture_logs() as logs:
            stats = await _mine(pool, cpu_engine, lambda: len(pool.accepted()) >= 3)
    assert stats.rejected == 0
    assert all(share.accepted for share in pool.submissions)
    # Every submit was answered before run_miner returned: nothing pending was dropped.
    assert stats.accepted == len(pool.accepted()) >= 3
    assert stats.hashes > 0
    lines = [entry["event"] for entry in logs if str(entry["event"]).startswith("accepted: ")]
    assert lines[0].startswith("accepted: 1/1 (100.00%), ") and lines[0].endswith("khash/s (yay!!!)")


async def test_opencl_engine_mines_accepted_shares(opencl_engine: OpenClEngine) -> None:
    async with _pool() as pool:
        stats = await _mine(pool, opencl_engine, lambda: len(pool.accepted()) >= 3)
    assert stats.rejected == 0
    assert stats.accepted == len(pool.accepted()) >= 3


async def test_set_difficulty_raises_the_share_target(cpu_engine: CpuEngine) -> None:
    async with _pool() as pool:
        stop = asyncio.Event()
        task = asyncio.create_task(run_miner(_config(pool.url), stop, cpu_engine))
        await pool.wait_for(lambda: len(pool.accepted()) >= 2)
        pool.set_difficulty(4 * EASY)
        job = pool.new_job(clean=True)
        await pool.wait_for(lambda: len(pool.accepted(job.job_id)) >= 3)
        stop.set()
        stats = await asyncio.wait_for(task, 15)
    new_job_shares = [share for share in pool.submissions if share.job_id == job.job_id]
    assert all(share.accepted and share.difficulty == 4 * EASY for share in new_job_shares)
    # Only shares already on the wire when the job changed may miss; the miner drops later ones itself.
    assert all(share.reason == "job not found" for share in pool.submissions if not share.accepted)
    assert stats.accepted == len(pool.accepted())


async def test_set_extranonce_changes_the_coinbase(cpu_engine: CpuEngine) -> None:
    async with _pool() as pool:
        stop = asyncio.Event()
        task = asyncio.create_task(run_miner(_config(pool.url), stop, cpu_engine))
        await pool.wait_for(lambda: len(pool.accepted()) >= 1)
        pool.set_extranonce(pool.sessions[0], os.urandom(3), 2)
        job = pool.new_job(clean=True)
        await pool.wait_for(lambda: len(pool.accepted(job.job_id)) >= 3)
        stop.set()
        await asyncio.wait_for(task, 15)
    new_job_shares = [share for share in pool.submissions if share.job_id == job.job_id]
    assert all(share.accepted and len(share.extranonce2) == 2 for share in new_job_shares)


async def test_client_reconnect_moves_to_the_named_pool(cpu_engine: CpuEngine) -> None:
    async with _pool() as first, _pool() as second:
        stop = asyncio.Event()
        task = asyncio.create_task(run_miner(_config(first.url), stop, cpu_engine))
        await first.wait_for(lambda: len(first.accepted()) >= 1)
        first.broadcast(stratum.notify("client.reconnect", ["127.0.0.1", second.port, 0]))
        await second.wait_for(lambda: len(second.accepted()) >= 2)
        stop.set()
        stats = await asyncio.wait_for(task, 15)
    assert stats.connections == 2
    assert len(first.sessions) == 1 and len(second.sessions) == 1
    assert stats.accepted == len(first.accepted()) + len(second.accepted())


async def test_lost_connection_is_retried(cpu_engine: CpuEngine) -> None:
    async with _pool() as pool:
        stop = asyncio.Event()
        task = asyncio.create_task(run_miner(_config(pool.url), stop, cpu_engine))
        await pool.wait_for(lambda: len(pool.accepted()) >= 1)
        pool.sessions[0].writer.close()
        await pool.wait_for(lambda: len(pool.sessions) == 2 and len(pool.accepted()) >= 3)
        stop.set()
        stats = await asyncio.wait_for(task, 15)
    assert stats.connections == 2
    assert stats.rejected == 0


async def test_stop_waits_for_answers_to_pending_submits(cpu_engine: CpuEngine) -> None:
    async with _pool(answer_delay_s=0.5) as pool:
        stats = await _mine(pool, cpu_engine, lambda: len(pool.submissions) >= 2)
    assert stats.accepted + stats.rejected == len(pool.submissions)


async def test_rejections_are_counted_and_engine_built_from_config() -> None:
    async with _pool(reject_first=2) as pool:
        with capture_logs() as logs:
            stats = await _mine(pool, None, lambda: len(pool.accepted()) >= 1,
                                engine=EngineOptions(engine="cpu", threads=1))
    assert stats.rejected == 2
    assert stats.accepted >= 1
    assert any(str(entry["event"]).endswith("reason: rejected by test (20)") and "(booooo)" in entry["event"]
               for entry in logs)


async def test_unreachable_pool_is_retried_until_stop(cpu_engine: CpuEngine) -> None:
    async with _pool() as pool:
        url = pool.url
    stop = asyncio.Event()
    task = asyncio.create_task(run_miner(_config(url), stop, cpu_engine))
    await asyncio.sleep(0.5)
    stop.set()
    stats = await asyncio.wait_for(task, 5)
    assert stats.connections == 0


async def test_cli_miner_exits_cleanly_on_sigterm() -> None:
    """The `qscrypt miner` entry point in a real process: SIGTERM ends it with every submit answered."""
    script = ("import argparse, asyncio, sys\n"
              "from backends import cli\n"
              "parser = argparse.ArgumentParser()\n"
              "cli.add_arguments(parser)\n"
              "sys.exit(asyncio.run(cli.main(parser.parse_args(sys.argv[1:]))))\n")
    async with _pool(answer_delay_s=0.2) as pool:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, "-o", pool.url, "-u", "worker1",
            "--engine", "cpu", "--threads", "1",
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await pool.wait_for(lambda: len(pool.submissions) >= 3)
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), 15)
        finally:
            if process.returncode is None:
                process.kill()
    text = output.decode()
    assert process.returncode == 0, text
    assert "miner stopped" in text
    last = [line for line in text.splitlines() if "accepted: " in line][-1]
    assert f"accepted: {len(pool.accepted())}/{len(pool.submissions)} " in last
