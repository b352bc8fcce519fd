"""Several proxy hosts, one farm: two real `qscrypt proxy` processes (host-a a single process,
host-b a supervisor with two workers), each with its own upstream sessions to two real Stratum
pools, on one PostgreSQL and one decision API, behind one HAProxy (PROXY protocol v2, health
checks). Scripted miners connect to HAProxy from 127.0.0.2 and 127.0.0.3.

1. Miners spread over both hosts; every share they are answered `true` for is a `shares` row with
   the host that judged it and the miner's own address.
2. The API pins the miners' profile to the other pool: miners on every host move there (their
   extranonce1 becomes one of that pool's sessions'), and each host writes its switch_events row.
3. host-a is killed (SIGKILL, the whole process group): HAProxy sends its miners to host-b, where
   they mine on. host-a's journal, replayed by `qscrypt spill replay` as an operator would, brings
   the rows it had not yet written: every accepted share is in the database, none twice.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from api.app import create_app
from api.config import ApiConfig
from proxy.extranonce import host_tag
from tests.proxy.conftest import wait_for
from tests.services.haproxy import BALANCER_IP, Frontend, HAProxy
from tests.services.proxy_command import free_port, spawn_proxy, stop_process
from tests.stratum_peers import PoolServer, ScriptedMiner

TOKEN = "multi-host-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROFILE = "farm"
SOURCES = ("127.0.0.2", "127.0.0.3")
MINERS = 6



@dataclass
class Host:
    name: str
    config: Path
    log: Path
    port: int
    workers: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = spawn_proxy(self.config, self.log)

    def ready(self) -> bool:
        text = self.log.read_text()
        if self.workers > 1:
            return text.count("supervisor.worker_ready") >= self.workers
        return "stratum.listening" in text and "router.active" in text

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def _write_config(tmp: Path, name: str, workers: int, dsn: str, api_url: str,
                  pools: dict[str, PoolServer]) -> Host:
    port = free_port()
    config = tmp / f"{name}.toml"
    upstreams = "".join(f"""
[[proxy.upstreams]]
name = "{pool_name}"
url = "{pool.url}"
user = "acct.{name}"
priority = {i}
""" for i, (pool_name, pool) in enumerate(pools.items()))
    config.write_text(f"""
[database]
dsn = "{dsn}"
[logging]
level = "info"
format = "json"
[proxy]
host_name = "{name}"
workers = {workers}
hash_processes = 1
metrics_port = 0
share_flush_s = 0.3
spill_dir = "{tmp / name / 'spill'}"
[proxy.listen]
host = "127.0.0.1"
port = {port}
proxy_protocol_from = ["{BALANCER_IP}/32"]
[proxy.vardiff]
initial = 0.001
minimum = 0.0001
[proxy.failover]
grace_s = 5.0
[proxy.switching]
api_url = "{api_url}"
poll_s = 0.5
stagger_interval_s = 0.05
{upstreams}""")
    return Host(name, config, tmp / f"{name}.log", port, workers)


@pytest.fixture
async def api(pg_dsn: str) -> AsyncIterator[str]:
    config = ApiConfig(token=TOKEN, rate_limit_per_s=0, min_dwell_s=1.0, evaluate_every_s=0.2)
    runner = web.AppRunner(create_app(config, pg_dsn))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def _pin(api_url: str, pool: str) -> None:
    async with aiohttp.ClientSession() as http, http.put(
            f"{api_url}/v1/profiles/{PROFILE}", headers=AUTH,
            json={"strategy": "fixed", "params": {"coin": "LTC", "pool": pool}}) as reply:
        assert reply.status in (200, 201), await reply.text()


@dataclass
class Rig:
    worker: str
    source: str
    miner: ScriptedMiner


async def _join(port: int, worker: str, source: str, resume: str | None = None) -> ScriptedMiner:
    """A miner through HAProxy, subscribed and authorized (tried again while a killed host's
    connections are still being refused)."""
    for _ in range(50):
        miner = await ScriptedMiner("127.0.0.1", port, local_host=source).connect()
        try:
            if (await miner.subscribe(resume)).error is None and \
                    (await miner.authorize(worker)).result is True:
                await miner.wait_job()
                return miner
        except (ConnectionError, TimeoutError):
            pass
        await miner.close()
        await asyncio.sleep(0.2)
    raise AssertionError(f"{worker} could not join through HAProxy")


async def _mine(rig: Rig, answered: Counter[str]) -> None:
    # A fresh extranonce2 each time: the job may be the one the previous share was found on.
    en2 = (answered[rig.worker] + 1).to_bytes(rig.miner.extranonce2_size, "big")
    reply = await rig.miner.mine_one(rig.worker, en2)
    assert reply.result is True, reply.error
    answered[rig.worker] += 1


async def _rows(dsn: str, query: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


async def _eventually_rows(dsn: str, query: str, expected: object, what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await _rows(dsn, query)
        if rows == expected:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {rows} != {expected}")
        await asyncio.sleep(0.2)


def _counts(answered: Counter[str]) -> list[tuple[object, ...]]:
    return sorted((worker, count) for worker, count in answered.items())


async def test_two_hosts_behind_haproxy_share_one_farm_and_survive_a_host_killed(
        pg_dsn: str, api: str, haproxy: HAProxy, tmp_path: Path) -> None:
    pools = {"pool-a": PoolServer(), "pool-b": PoolServer()}
    for pool in pools.values():
        await pool.start()
    await _pin(api, "pool-a")
    hosts = [_write_config(tmp_path, "host-a", 1, pg_dsn, api, pools),
             _write_config(tmp_path, "host-b", 2, pg_dsn, api, pools)]
    rigs: list[Rig] = []
    answered: Counter[str] = Counter()
    try:
        for host in hosts:
            host.start()
        await wait_for(lambda: all(h.ready() for h in hosts), "both hosts ready", timeout=90)
        ports = await haproxy.start([Frontend("farm", [("127.0.0.1", h.port) for h in hosts], "v2",
                                              check=True, balance="roundrobin")])
        farm = ports["farm"]

        # 1. Miners over both hosts; each share's row says which host judged it.
        for i in range(MINERS):
            worker, source = f"rig{i}+{PROFILE}", SOURCES[i % 2]  # the profile is part of the name
            rigs.append(Rig(worker, source, await _join(farm, worker, source)))
        # Each host's miners sit in its own upstream sessions: no two miners share an extranonce1
        # (so no two build the same coinbase) or a session id, whichever host they are on.
        assert len({rig.miner.extranonce1 for rig in rigs}) == MINERS
        assert len({rig.miner.session_id for rig in rigs}) == MINERS
        for rig in rigs:
            await _mine(rig, answered)
        query = "SELECT worker, count(*) FROM shares WHERE result = 'accepted' GROUP BY worker" \
            " ORDER BY worker"
        await _eventually_rows(pg_dsn, query, _counts(answered), "every accepted share recorded")
        placed = dict(await _rows(pg_dsn, "SELECT worker, min(host) FROM shares GROUP BY worker"))
        assert set(placed.values()) == {"host-a", "host-b"}, placed
        # Each session id carries the tag of the host that made it: unique across hosts by construction.
        assert all(rig.miner.session_id.startswith(host_tag(placed[rig.worker])) for rig in rigs)
        assert await _rows(pg_dsn, "SELECT DISTINCT worker, ip FROM shares ORDER BY worker") == \
            [(rig.worker, rig.source) for rig in sorted(rigs, key=lambda r: r.worker)]

        # 2. A switch reaches the miners on every host.
        await _pin(api, "pool-b")
        pool_b_sessions = pools["pool-b"].sessions

        def moved() -> bool:
            prefixes = {s.extranonce1 for s in pool_b_sessions}
            return all(rig.miner.extranonce1[:4] in prefixes for rig in rigs)

        await wait_for(moved, "every miner on pool-b", timeout=30)
        for rig in rigs:
            await _mine(rig, answered)
        # Forwarded by both hosts, each on its own session and account at the pool.
        await wait_for(lambda: {s.worker for s in pools["pool-b"].submissions if s.accepted}
                       == {"acct.host-a", "acct.host-b"}, "pool-b to accept shares from both hosts")
        await _eventually_rows(pg_dsn, f"SELECT DISTINCT host FROM switch_events WHERE profile = '{PROFILE}'"
                               " AND to_upstream = 'pool-b' ORDER BY host", [("host-a",), ("host-b",)],
                               "a switch_events row from each host")
        # The decision API shows which host wrote each row.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{api}/v1/switch-events", params={"profile": PROFILE}) as reply:
                events = (await reply.json())["items"]
            async with http.get(f"{api}/v1/workers") as reply:
                listed = {w["name"]: w["proxy_host"] for w in (await reply.json())["items"]}
        assert {e["proxy_host"] for e in events if e["to_upstream"] == "pool-b"} == {"host-a", "host-b"}
        assert {name: listed.get(name) for name in placed} == placed, (listed, placed)

        # 3. host-a dies with shares it answered `true` for and never wrote (the database holds
        # their segment's first statement until host-a is dead); its miners come back through
        # HAProxy on host-b and mine on.
        on_a = [rig for rig in rigs if placed[rig.worker] == "host-a"]
        hold = await asyncpg.connect(pg_dsn)
        try:
            transaction = hold.transaction()
            await transaction.start()
            await hold.execute("LOCK TABLE recorded_segments IN ACCESS EXCLUSIVE MODE")
            for rig in on_a:
                await _mine(rig, answered)
            hosts[0].kill()
            written = await hold.fetchval("SELECT count(*) FROM shares WHERE result = 'accepted'")
            assert written < sum(answered.values()), "host-a's last shares were to be in its journal only"
            await transaction.rollback()
        finally:
            await hold.close()
        await asyncio.wait_for(asyncio.gather(*(rig.miner.closed.wait() for rig in on_a)), 10)
        for rig in on_a:
            old = rig.miner
            rig.miner = await _join(farm, rig.worker, rig.source, resume=old.session_id)
            await old.close()
            # host-b cannot resume host-a's session (its upstream sessions are its own): a new one.
            assert rig.miner.session_id.startswith(host_tag("host-b")), (old.session_id, rig.miner.session_id)
        for rig in rigs:
            await _mine(rig, answered)
        # host-a's journal holds what it had not written yet: replayed as an operator would.
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "-c", str(hosts[0].config), "spill", "replay",
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output, _ = await asyncio.wait_for(replay.communicate(), 60)
        assert replay.returncode == 0, output.decode()
        await _eventually_rows(pg_dsn, query, _counts(answered), "every accepted share recorded, once")
        hosts_of = await _rows(pg_dsn, "SELECT worker, array_agg(DISTINCT host ORDER BY host) FROM shares"
                                       " GROUP BY worker ORDER BY worker")
        for worker, seen in hosts_of:
            assert seen == (["host-a", "host-b"] if placed[str(worker)] == "host-a" else ["host-b"]), hosts_of
        assert await _rows(pg_dsn, "SELECT name, host, last_ip FROM workers ORDER BY name") == \
            [(rig.worker, "host-b", rig.source) for rig in sorted(rigs, key=lambda r: r.worker)]
    finally:
        for rig in rigs:
            with contextlib.suppress(Exception):
                await rig.miner.close()
        for host in hosts:
            host.stop()
        await haproxy.stop()
        for pool in pools.values():
            await pool.stop()
