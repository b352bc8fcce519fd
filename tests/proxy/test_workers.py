"""`proxy.workers = 2`: the real `qscrypt proxy` as a supervisor with two worker processes, driven
over loopback by a test pool and scripted miners.

Covered: miners spread over both workers and mine real shares through them; limits that must hold
across workers (per IP, bans) hold; a killed worker is replaced and its connections stop counting;
metrics of all workers come from the supervisor's one port, the top workers ranked across them;
TLS miners are handed over too; a miner resuming its session id goes back to the worker that holds
its extranonce1.
"""

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.extranonce import HOST_TAG_DIGITS, host_tag, new_session_id, session_worker
from tests.proxy.conftest import wait_for
from tests.services.proxy_command import start_proxy_command, stop_process
from tests.stratum_peers import PoolServer, ScriptedMiner, make_certificate


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int
    tls_port: int
    metrics_port: int
    log: Path
    clean_exit_expected: bool = True

    def workers(self) -> list[int]:
        """PIDs of the worker processes (the supervisor's children that are not hashers)."""
        return [child for child in _children_of(self.process.pid)
                if b"proxy.hashers" not in Path(f"/proc/{child}/cmdline").read_bytes()]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "{"))


def _readies(log: Path) -> int:
    return log.read_text().count("supervisor.worker_ready")


@pytest.fixture
async def supervised(tmp_path: Path, pool: PoolServer) -> AsyncIterator[Running]:
    cert, key = make_certificate(tmp_path)
    running = await _start_supervised(tmp_path, pool, cert, key)
    process, log = running.process, running.log
    try:
        # Both workers have their own upstream session.
        await wait_for(lambda: pool.connections >= 2, "two upstream sessions", timeout=60)
        yield running
    finally:
        stop_process(process)
    if running.clean_exit_expected:
        assert process.returncode == 0, log.read_text()[-3000:]


async def _start_supervised(tmp_path: Path, pool: PoolServer, cert: Path, key: Path) -> Running:
    """The supervisor with two workers, both ready."""
    def text(ports: dict[str, int]) -> str:
        return f"""
[logging]
level = "info"
format = "json"
[proxy]
workers = 2
hash_processes = 1
metrics_port = {ports['metrics_port']}
spill_dir = "{tmp_path / 'spill'}"
[proxy.listen]
host = "127.0.0.1"
port = {ports['port']}
tls_port = {ports['tls_port']}
tls_cert = "{cert}"
tls_key = "{key}"
[proxy.limits]
max_connections_per_ip = 6
ban_min_shares = 6
ban_invalid_ratio = 0.5
ban_seconds = 60.0
[proxy.vardiff]
initial = 0.001
minimum = 0.0001
[[proxy.upstreams]]
name = "p1"
url = "{pool.url}"
user = "acct"
"""

    started = await start_proxy_command(tmp_path / "proxy.toml", text,
                                        lambda log: log.count("supervisor.worker_ready") >= 2)
    ports = started.ports
    return Running(started.process, ports["port"], ports["tls_port"], ports["metrics_port"], started.log)


async def _miner(port: int, ip: str = "127.0.0.1") -> ScriptedMiner:
    return await ScriptedMiner("127.0.0.1", port, local_host=ip).connect()


async def _admitted(port: int, ip: str) -> ScriptedMiner:
    """A subscribed miner from `ip`, retrying while the supervisor still counts a slot that was
    just freed (a worker reports a close a moment after the miner sees it)."""
    for _ in range(50):
        miner = await _miner(port, ip)
        try:
            if (await miner.subscribe()).error is None:
                return miner
        except ConnectionError:
            pass
        await miner.close()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{ip} was never admitted again")


async def test_miners_spread_over_both_workers_and_mine_through_them(
        supervised: Running, pool: PoolServer) -> None:
    miners = [await _miner(supervised.port, f"127.0.0.{10 + i}") for i in range(8)]
    try:
        for index, miner in enumerate(miners):
            assert (await miner.subscribe()).error is None
            assert (await miner.authorize(f"rig{index}", "d=0.001")).result is True
        # Each worker has its own pool session, hence its own upstream extranonce1 (4 bytes here).
        upstream_parts = {miner.extranonce1[:4] for miner in miners}
        assert len(upstream_parts) == 2, "the supervisor put every miner on one worker"
        assert len({miner.extranonce1 for miner in miners}) == len(miners)
        for index, miner in enumerate(miners[:4]):
            response = await miner.mine_one(f"rig{index}")
            assert response.result is True, response
        await wait_for(lambda: len(pool.accepted()) >= 4, "the shares to reach the pool")
        metrics = supervised.metrics()
        assert _metric(metrics, "qscrypt_miners_connected") == len(miners)
        assert _metric(metrics, "qscrypt_shares_total") >= 4
        # The top workers are ranked by the supervisor over both processes: one series per worker
        # name, no per-process label (each worker reports every 10 s).
        await wait_for(lambda: all(f'qscrypt_worker_hashrate_hs{{worker="rig{i}"}}' in supervised.metrics()
                                   for i in range(4)), "both workers' top workers", timeout=30)
        series = [line for line in supervised.metrics().splitlines()
                  if line.startswith(("qscrypt_worker_hashrate_hs{", "qscrypt_worker_difficulty{"))]
        assert len(series) == 8 and not any("pid=" in line for line in series), series
    finally:
        for miner in miners:
            await miner.close()


async def test_a_resuming_miner_goes_back_to_the_worker_holding_its_extranonce1(
        supervised: Running) -> None:
    # Without the supervisor reading the resume, least-loaded placement would send it to the other
    # worker in the first round already: its own worker got the newcomer that filled its slot.
    ip = "127.0.0.50"
    miner = await _miner(supervised.port, ip)
    assert (await miner.subscribe()).error is None
    extranonce1, session_id = miner.extranonce1, miner.session_id
    others: list[ScriptedMiner] = []
    try:
        for _ in range(3):
            await miner.close()
            await wait_for(lambda: _metric(supervised.metrics(), "qscrypt_miners_connected") == len(others),
                           "the worker to see the miner go")
            newcomer = await _miner(supervised.port, ip)
            assert (await newcomer.subscribe()).error is None
            others.append(newcomer)
            miner = await _miner(supervised.port, ip)
            assert (await miner.subscribe(resume=session_id)).error is None
            assert (miner.extranonce1, miner.session_id) == (extranonce1, session_id)
        assert len({m.extranonce1[:4] for m in others}) == 2  # the newcomers did spread
    finally:
        for other in [miner, *others]:
            await other.close()


async def test_a_miner_resuming_another_hosts_id_is_placed_by_load_and_starts_afresh(
        supervised: Running) -> None:
    """Behind HAProxy a miner of a host that died comes back here with that host's session id: the
    worker digits in it are the other host's, so it is placed like a new miner (before host tags,
    every such miner went to the worker its digits named, however loaded) and gets an id of ours."""
    first = await _miner(supervised.port, "127.0.0.51")
    miners = [first]
    try:
        assert (await first.subscribe()).error is None
        ours = first.session_id[:HOST_TAG_DIGITS]
        worker = session_worker(first.session_id, ours)
        assert worker is not None
        foreign = [new_session_id(host_tag("a-host-that-died"), worker) for _ in range(4)]
        assert not any(session.startswith(ours) for session in foreign)
        for session in foreign:
            miner = await _miner(supervised.port, "127.0.0.51")
            miners.append(miner)
            assert (await miner.subscribe(resume=session)).error is None
            assert miner.session_id.startswith(ours) and miner.session_id != session
        assert len({m.extranonce1[:4] for m in miners}) == 2  # on both workers
    finally:
        for miner in miners:
            await miner.close()


async def test_miners_that_open_with_anything_else_are_placed_as_before(supervised: Running) -> None:
    silent = await _miner(supervised.port, "127.0.0.60")
    try:
        await asyncio.sleep(1.5)  # longer than the supervisor waits for a first line
        assert (await silent.subscribe()).error is None
    finally:
        await silent.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", supervised.port)
    try:
        writer.write(b"\xff\xfe not json\n")
        error = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert error["error"][0] == -32700
        writer.write(b'{"id":1,"method":"mining.subscribe","params":["x","zz-not-a-session"]}\n')
        reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert reply["id"] == 1 and reply["error"] is None
    finally:
        writer.close()


async def test_the_per_ip_limit_counts_across_workers(supervised: Running) -> None:
    ip = "127.0.0.20"
    held = [await _miner(supervised.port, ip) for _ in range(6)]
    try:
        for miner in held:
            assert (await miner.subscribe()).error is None
        assert len({m.extranonce1[:4] for m in held}) == 2  # the six are on both workers
        refused = await _miner(supervised.port, ip)
        await asyncio.wait_for(refused.closed.wait(), 10)
        assert any("too many connections from this IP" in str(n.params) for n in refused.notifications)
        await refused.close()
        assert 'qscrypt_connections_refused_total{reason="too many connections from this IP"} 1.0' \
            in supervised.metrics()
        # Another IP is not affected.
        other = await _miner(supervised.port, "127.0.0.21")
        assert (await other.subscribe()).error is None
        await other.close()
        # A closed connection frees its slot, whichever worker held it.
        await held.pop().close()
        held.append(await _admitted(supervised.port, ip))
    finally:
        for miner in held:
            await miner.close()


async def test_a_ban_on_one_worker_closes_the_ip_on_every_worker(supervised: Running) -> None:
    ip = "127.0.0.30"
    miners = [await _miner(supervised.port, ip) for _ in range(4)]
    try:
        for index, miner in enumerate(miners):
            await miner.subscribe()
            await miner.authorize(f"bad{index}", "d=0.001")
        assert len({m.extranonce1[:4] for m in miners}) == 2
        cheat = miners[0]
        mjob = await cheat.wait_job()
        en2 = bytes(cheat.extranonce2_size)
        for start in range(0, 6 * 5000, 5000):  # six really invalid shares (too little work)
            nonce = await asyncio.to_thread(cheat.find_share, mjob, en2, start, None, False)
            if cheat.closed.is_set():
                break
            with contextlib.suppress(ConnectionError):
                await cheat.submit("bad0", mjob, en2, nonce)
        for miner in miners:
            await asyncio.wait_for(miner.closed.wait(), 10)
        newcomer = await _miner(supervised.port, ip)
        await asyncio.wait_for(newcomer.closed.wait(), 10)
        assert any("banned" in str(n.params) for n in newcomer.notifications)
        await newcomer.close()
    finally:
        for miner in miners:
            await miner.close()


async def test_a_killed_worker_is_replaced_and_its_miners_stop_counting(
        supervised: Running, pool: PoolServer) -> None:
    ip = "127.0.0.40"
    miners = [await _miner(supervised.port, ip) for _ in range(6)]
    for miner in miners:
        await miner.subscribe()
    before = supervised.workers()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    # Its miners lose their connection; the others keep theirs.
    await wait_for(lambda: any(m.closed.is_set() for m in miners), "the killed worker's miners to drop")
    survivors = [m for m in miners if not m.closed.is_set()]
    assert 0 < len(survivors) < len(miners)
    await wait_for(lambda: len(supervised.workers()) == 2 and before[0] not in supervised.workers(),
                   "a new worker", timeout=30)
    await wait_for(lambda: _readies(supervised.log) >= 3, "the new worker to be ready", timeout=30)
    # The dead worker's connections no longer count against the per-IP limit of 6.
    fresh = [await _admitted(supervised.port, ip) for _ in range(len(miners) - len(survivors))]
    metrics = supervised.metrics()
    assert _metric(metrics, "qscrypt_worker_restarts_total") == 1
    assert _metric(metrics, "qscrypt_workers_ready") == 2
    for miner in miners + fresh:
        await miner.close()


async def test_tls_miners_are_handed_to_workers(supervised: Running, tmp_path: Path) -> None:
    context = ssl.create_default_context(cafile=str(tmp_path / "localhost.crt"))
    reader, writer = await asyncio.open_connection("127.0.0.1", supervised.tls_port, ssl=context,
                                                   server_hostname="localhost")
    try:
        writer.write(b'{"id":1,"method":"mining.subscribe","params":["tls-test/1"]}\n')
        line = await asyncio.wait_for(reader.readline(), 10)
        assert b'"error":null' in line and b"mining.notify" in line
    finally:
        writer.close()


async def test_ctrl_c_to_the_whole_group_stops_everything_in_order(supervised: Running) -> None:
    """A terminal's Ctrl-C reaches the supervisor, its workers and their hashers at once: the
    supervisor alone decides, stops its workers, and nothing is restarted or reported dead."""
    miner = await _miner(supervised.port)
    assert (await miner.subscribe()).error is None
    os.killpg(supervised.process.pid, signal.SIGINT)
    await asyncio.wait_for(miner.closed.wait(), 20)
    await asyncio.to_thread(supervised.process.wait, 20)
    assert supervised.process.returncode == 0
    log = supervised.log.read_text()
    assert "worker_died" not in log and "hashers.died" not in log, log[-2000:]
    await miner.close()


def _children_of(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has exited, its reaper just has not looked yet


async def test_workers_and_hashers_exit_when_the_supervisor_is_killed(supervised: Running) -> None:
    workers = supervised.workers()
    helpers = workers + [child for worker in workers for child in _children_of(worker)]
    assert len(helpers) == 4  # two workers, one hasher each
    supervised.clean_exit_expected = False
    os.kill(supervised.process.pid, signal.SIGKILL)
    await asyncio.to_thread(supervised.process.wait, 10)
    await wait_for(lambda: not any(_alive(pid) for pid in helpers), "orphaned workers and hashers to exit",
                   timeout=30)
    with socket.create_server(("127.0.0.1", supervised.port)):  # nothing holds the port any more
        pass


async def test_a_burst_of_new_miners_is_placed_whole_however_full_the_handoff_queue(
        supervised: Running) -> None:
    """A worker's control socket queues only as many sockets as its send buffer holds (a few
    hundred). With both workers stopped (as busy as a worker gets) while 800 miners connect (160
    addresses, 5 each: the per-IP cap is 6), the supervisor cannot hand them all over; once the
    workers run again every one is subscribed, none dropped for a full queue."""
    workers = supervised.workers()
    assert len(workers) == 2

    async def subscribe(index: int) -> tuple[dict[str, object], asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", supervised.port, local_addr=(f"127.0.2.{1 + index % 160}", 0))
        writer.write(b'{"id":1,"method":"mining.subscribe","params":["burst/1.0"]}\n')
        try:
            line = await asyncio.wait_for(reader.readline(), 60)
        except ConnectionError as exc:
            return {"error": f"closed: {exc}"}, writer
        return (json.loads(line) if line else {"error": "closed"}), writer

    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        burst = asyncio.gather(*(subscribe(index) for index in range(800)))
        await asyncio.sleep(2.5)  # every miner's first line is in: the supervisor has tried them all
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    answers = await burst
    try:
        refused = [answer for answer, _ in answers
                   if answer.get("error") is not None or answer.get("id") != 1]
        assert not refused, f"{len(refused)} of 800 miners not subscribed, e.g. {refused[0]}"
        assert "supervisor.handoff_failed" not in supervised.log.read_text()
    finally:
        for _, writer in answers:
            writer.close()
