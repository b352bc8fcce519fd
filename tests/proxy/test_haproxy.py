"""Behind a real HAProxy in TCP mode: PROXY protocol v1 (`send-proxy`) and v2 (`send-proxy-v2`)
on the plain and the TLS port (TLS passes through HAProxy and ends at the proxy).

HAProxy connects from 127.0.0.5 (the one trusted source); the miners connect to it from 127.0.0.2
and 127.0.0.3 (cpuminer from 127.0.0.1). The proxy's connections, its per-IP cap and its bans, and
the `shares`/`workers` rows must see the miners' addresses, never HAProxy's; a PROXY header from
anyone else, or a trusted connection without one, is refused with the reason.
"""

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mining import stratum
from proxy.app import Proxy
from proxy.config import LimitsConfig, ListenConfig
from proxy.proxy_protocol import V2_SIGNATURE
from tests.proxy.conftest import pool_upstream, wait_for
from tests.services.haproxy import BALANCER_IP, Frontend, HAProxy
from tests.services.proxy_command import start_proxy_command
from tests.stratum_peers import PoolServer, ScriptedMiner, make_certificate


async def _behind(make_proxy: Any, pool: PoolServer, haproxy: HAProxy, tmp_path: Path, dsn: str | None = None,
                  **limits: Any) -> tuple[Proxy, dict[str, int], Path]:
    cert, key = make_certificate(tmp_path)
    listen = ListenConfig(host="127.0.0.1", port=0, tls_port=0, tls_cert=cert, tls_key=key,
                          proxy_protocol_from=[f"{BALANCER_IP}/32"], proxy_protocol_timeout_s=3.0)
    proxy = await make_proxy([pool_upstream(pool, "p1")], dsn=dsn, listen=listen,
                             limits=LimitsConfig(**limits), host_name="edge-a")
    plain, tls = ("127.0.0.1", proxy.ports["tcp"]), ("127.0.0.1", proxy.ports["tls"])
    ports = await haproxy.start([
        Frontend("plain_v1", [plain], "v1"), Frontend("plain_v2", [plain], "v2"),
        Frontend("tls_v1", [tls], "v1"), Frontend("tls_v2", [tls], "v2"),
        Frontend("no_header", [plain], None),
    ])
    assert not proxy.server.connections  # the fixture saw HAProxy listen without connecting
    return proxy, ports, cert


async def _tls_subscribe(port: int, cert: Path,
                         source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    client = ssl.create_default_context(cafile=str(cert))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="localhost",
                                                   local_addr=(source, 0))
    writer.write(stratum.encode(stratum.Request(1, "mining.subscribe", ["tls-miner"])))
    events = stratum.StratumCodec().feed(await asyncio.wait_for(reader.readline(), 10))
    assert isinstance(events[0], stratum.Response) and events[0].error is None, events
    return reader, writer


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """What came before the proxy closed (a reset, for bytes it left unread, counts as a close)."""
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""


def _ips(proxy: Proxy) -> list[str]:
    return sorted(conn.ip for conn in proxy.server.connections)


async def test_miners_behind_haproxy_are_seen_at_their_own_address_plain_and_tls(
        pool: PoolServer, make_proxy: Any, haproxy: HAProxy, tmp_path: Path, pg_dsn: str) -> None:
    proxy, ports, cert = await _behind(make_proxy, pool, haproxy, tmp_path, dsn=pg_dsn)
    miners = []
    for frontend, source in (("plain_v1", "127.0.0.2"), ("plain_v2", "127.0.0.3")):
        miner = await ScriptedMiner("127.0.0.1", ports[frontend], local_host=source).connect()
        miners.append(miner)
        assert (await miner.subscribe()).error is None
        assert (await miner.authorize(f"rig-{frontend}")).result is True
        assert (await miner.mine_one(f"rig-{frontend}")).result is True
    tls = [await _tls_subscribe(ports["tls_v1"], cert, "127.0.0.2"),
           await _tls_subscribe(ports["tls_v2"], cert, "127.0.0.3")]
    assert _ips(proxy) == ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"]
    assert {conn.via for conn in proxy.server.connections} == {BALANCER_IP}

    assert proxy.writer is not None
    await wait_for(lambda: proxy.accounting.rows_waiting == 0, "the share rows to be written", timeout=20)
    conn = await asyncpg.connect(pg_dsn)
    try:
        shares = await conn.fetch("SELECT worker, ip, host FROM shares WHERE worker LIKE 'rig-plain%'"
                                  " ORDER BY worker")
        workers = await conn.fetch("SELECT name, last_ip, host FROM workers WHERE name LIKE 'rig-plain%'"
                                   " ORDER BY name")
    finally:
        await conn.close()
    assert [tuple(r) for r in shares] == [("rig-plain_v1", "127.0.0.2", "edge-a"),
                                          ("rig-plain_v2", "127.0.0.3", "edge-a")]
    assert [tuple(r) for r in workers] == [("rig-plain_v1", "127.0.0.2", "edge-a"),
                                           ("rig-plain_v2", "127.0.0.3", "edge-a")]
    for miner in miners:
        await miner.close()
    for _, writer in tls:
        writer.close()


async def test_the_per_ip_cap_and_bans_apply_to_the_miners_behind_haproxy(
        pool: PoolServer, make_proxy: Any, haproxy: HAProxy, tmp_path: Path) -> None:
    proxy, ports, _ = await _behind(make_proxy, pool, haproxy, tmp_path, max_connections_per_ip=2,
                                    ban_min_shares=4, ban_invalid_ratio=0.5, ban_seconds=60.0)
    a = [await ScriptedMiner("127.0.0.1", ports["plain_v2"], local_host="127.0.0.2").connect()
         for _ in range(2)]
    for miner in a:
        assert (await miner.subscribe()).error is None
    third = await ScriptedMiner("127.0.0.1", ports["plain_v1"], local_host="127.0.0.2").connect()
    await asyncio.wait_for(third.closed.wait(), 10)  # over 127.0.0.2's cap of two
    assert any("too many connections from this IP" in str(n.params) for n in third.notifications)
    # HAProxy's one address holds three connections: only the miners' addresses count.
    b = await ScriptedMiner("127.0.0.1", ports["plain_v1"], local_host="127.0.0.3").connect()
    assert (await b.subscribe()).error is None
    assert (await b.authorize("rig-b")).result is True

    # 127.0.0.2 sends nothing but bad shares: it is banned, 127.0.0.3 is not.
    miner = a[0]
    assert (await miner.authorize("rig-a")).result is True
    job = await miner.wait_job()
    for nonce in range(4):
        await miner.submit("rig-a", job, bytes(miner.extranonce2_size), nonce, ntime=1)
    await asyncio.wait_for(asyncio.gather(*(m.closed.wait() for m in a)), 10)
    assert _ips(proxy) == ["127.0.0.3"]
    assert proxy.server.admission.is_banned("127.0.0.2", time.monotonic())
    again = await ScriptedMiner("127.0.0.1", ports["plain_v2"], local_host="127.0.0.2").connect()
    await asyncio.wait_for(again.closed.wait(), 10)
    assert any("banned" in str(n.params) for n in again.notifications)
    assert (await b.mine_one("rig-b")).result is True
    for m in (*a, third, b, again):
        await m.close()


async def test_headers_from_untrusted_sources_and_trusted_connections_without_one_are_refused(
        pool: PoolServer, make_proxy: Any, haproxy: HAProxy, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    proxy, ports, cert = await _behind(make_proxy, pool, haproxy, tmp_path)
    refused = proxy.metrics.disconnects
    before = refused.labels("PROXY protocol")._value.get()
    assert before == 0

    # A miner that writes its own header straight to the proxy, plain and TLS port.
    for port, header in ((proxy.ports["tcp"], b"PROXY TCP4 203.0.113.9 127.0.0.1 1234 3333\r\n"),
                         (proxy.ports["tls"], V2_SIGNATURE + b"\x21\x11\x00\x0c" + b"\xcb\x00\x71\x09" * 2
                          + b"\x04\xd2\x0d\x05")):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        writer.write(header + stratum.encode(stratum.Request(1, "mining.subscribe", [])))
        assert await _closed(reader) == b""  # closed, nothing answered
        writer.close()
    assert refused.labels("PROXY protocol header from an untrusted source")._value.get() == 1
    assert refused.labels("PROXY protocol")._value.get() == before + 1  # the TLS port's, before TLS
    logged = capsys.readouterr().out
    assert "reason='PROXY protocol header from an untrusted source' tls=True" in logged
    assert "reason='PROXY protocol header from an untrusted source' workers=[]" in logged

    # HAProxy (trusted) relaying a miner without a header: refused, the header is required.
    miner = await ScriptedMiner("127.0.0.1", ports["no_header"], local_host="127.0.0.3").connect()
    await miner.send_raw(stratum.encode(stratum.Request(1, "mining.subscribe", [])))
    await asyncio.wait_for(miner.closed.wait(), 10)
    await wait_for(lambda: refused.labels("PROXY protocol")._value.get() == before + 2, "the refusal")
    assert "ip=127.0.0.5 reason='no PROXY protocol header: one is required from this source'" in \
        capsys.readouterr().out
    assert not proxy.server.connections
    await miner.close()
    # The TLS port still serves a relayed miner after all that.
    _, writer = await _tls_subscribe(ports["tls_v2"], cert, "127.0.0.3")
    assert _ips(proxy) == ["127.0.0.3"]
    writer.close()


async def test_cpuminer_mines_through_haproxy_and_is_recorded_at_its_address(
        pool: PoolServer, make_proxy: Any, haproxy: HAProxy, tmp_path: Path, pg_dsn: str, peers: Any) -> None:
    proxy, ports, _ = await _behind(make_proxy, pool, haproxy, tmp_path, dsn=pg_dsn)
    miner = await peers.start_cpuminer(f"stratum+tcp://127.0.0.1:{ports['plain_v2']}", "cpu-haproxy",
                                       "x,d=0.05")
    await miner.wait_for(lambda: miner.accepted >= 3, 60, "three shares accepted through HAProxy")
    assert _ips(proxy) == ["127.0.0.1"]  # cpuminer's own address, not HAProxy's 127.0.0.5
    await wait_for(lambda: proxy.accounting.rows_waiting == 0, "the share rows to be written", timeout=20)
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT DISTINCT ip, host FROM shares WHERE worker = 'cpu-haproxy'")
        accepted = await conn.fetchval("SELECT count(*) FROM shares WHERE worker = 'cpu-haproxy'"
                                       " AND result = 'accepted'")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [("127.0.0.1", "edge-a")]
    assert accepted >= 3


@pytest.mark.parametrize("workers", [1, 2])
async def test_the_qscrypt_proxy_command_on_uvloop_reads_the_header(
        pool: PoolServer, haproxy: HAProxy, tmp_path: Path, workers: int) -> None:
    """The real command, on uvloop. `workers = 1`: the plain port reads the header in the stream,
    the TLS port off the socket before the handshake. `workers = 2`: the supervisor reads it (plain
    and TLS), applies the per-IP cap to the miner's address and hands the worker the socket with
    it. Either way the log says who and via whom."""
    cert, key = make_certificate(tmp_path)

    def text(ports: dict[str, int]) -> str:
        return f"""
[logging]
level = "info"
format = "json"
[proxy]
workers = {workers}
hash_processes = 1
metrics_port = {ports['metrics_port']}
spill_dir = "{tmp_path / 'spill'}"
[proxy.listen]
host = "127.0.0.1"
port = {ports['port']}
tls_port = {ports['tls_port']}
tls_cert = "{cert}"
tls_key = "{key}"
proxy_protocol_from = ["{BALANCER_IP}"]
[proxy.limits]
max_connections_per_ip = 2
[[proxy.upstreams]]
name = "p1"
url = "{pool.url}"
user = "acct"
"""

    def ready(log: str) -> bool:
        if workers > 1:
            return log.count("supervisor.worker_ready") >= workers
        return log.count("stratum.listening") >= 2 and "router.active" in log

    proxy = await start_proxy_command(tmp_path / "proxy.toml", text, ready)
    port, tls_port = proxy.ports["port"], proxy.ports["tls_port"]
    try:
        ports = await haproxy.start([Frontend("plain_v2", [("127.0.0.1", port)], "v2"),
                                     Frontend("tls_v1", [("127.0.0.1", tls_port)], "v1")])
        miner = await ScriptedMiner("127.0.0.1", ports["plain_v2"], local_host="127.0.0.2").connect()
        assert (await miner.subscribe()).error is None
        assert (await miner.authorize("rig-sup")).result is True
        assert (await miner.mine_one("rig-sup")).result is True
        _, writer = await _tls_subscribe(ports["tls_v1"], cert, "127.0.0.2")
        # 127.0.0.2 holds its two: a third through the same HAProxy is refused by the supervisor.
        third = await ScriptedMiner("127.0.0.1", ports["plain_v2"], local_host="127.0.0.2").connect()
        await asyncio.wait_for(third.closed.wait(), 10)
        assert any("too many connections from this IP" in str(n.params) for n in third.notifications)
        # A miner writing its own header to the TLS port is refused before the handshake.
        reader, raw = await asyncio.open_connection("127.0.0.1", tls_port, local_addr=("127.0.0.3", 0))
        raw.write(b"PROXY TCP4 203.0.113.9 127.0.0.1 1234 3333\r\n")
        assert await _closed(reader) == b""
        raw.close()
        # The refusal is logged just after the socket is closed: it may be a moment behind.
        refusal = {"event": "miner.proxy_header_refused", "ip": "127.0.0.3",
                   "reason": "PROXY protocol header from an untrusted source"}
        await wait_for(lambda: any(refusal.items() <= e.items() for e in proxy.events()),
                       "the refusal in the log")
        connected = [(e.get("ip"), e.get("via")) for e in proxy.events()
                     if e.get("event") == "miner.connected"]
        assert connected.count(("127.0.0.2", BALANCER_IP)) == 2, connected
        assert not [c for c in connected if c[0] == BALANCER_IP], connected
        await miner.close()
        await third.close()
        writer.close()
    finally:
        returncode = proxy.stop()
    assert returncode == 0, proxy.log.read_text()[-3000:]
