"""Hostile and broken miners: garbage, huge lines, invalid UTF-8, wrong types, floods, slow readers.

None of it crashes the proxy or grows its memory, and a well-behaved miner beside them keeps
getting its shares accepted.
"""

import asyncio
import resource

from mining import stratum
from proxy.config import LimitsConfig
from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer, ScriptedMiner


async def test_malformed_lines_get_json_rpc_errors_and_the_connection_lives(
        pool: PoolServer, make_proxy, miners) -> None:
    proxy = await make_proxy([pool_upstream(pool, "p1")])
    port = proxy.ports["tcp"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    codec = stratum.StratumCodec(1 << 20)

    async def ask(raw: bytes) -> stratum.Event:
        writer.write(raw)
        await writer.drain()
        while True:
            events = codec.feed(await asyncio.wait_for(reader.read(65536), 5))
            for event in events:
                if isinstance(event, stratum.Response):
                    return event

    r = await ask(b"this is not json\n")
    assert r.error[0] == stratum.PARSE_ERROR
    r = await ask(b"\xff\xfe\x80garbage\n")
    assert r.error[0] == stratum.PARSE_ERROR and "UTF-8" in r.error[1]
    r = await ask(b"[1, 2, 3]\n")
    assert r.error[0] == stratum.INVALID_REQUEST
    r = await ask(b'{"id": 5, "method": "mining.authorize", "params": [42, "x"]}\n')
    assert r.id == 5 and r.error[0] == stratum.INVALID_PARAMS and "username" in r.error[1]
    r = await ask(b'{"id": 6, "method": "mining.suggest_difficulty", "params": ["high"]}\n')
    assert r.id == 6 and r.error[0] == stratum.INVALID_PARAMS
    r = await ask(b'{"id": 7, "method": "mining.submit", "params": "nope"}\n')
    assert r.id == 7 and r.error[0] == stratum.INVALID_PARAMS
    r = await ask(b'{"id": 8, "method": "mining.suggest_difficulty", "params": [1e999]}\n')
    assert r.id == 8 and r.error[0] == stratum.INVALID_PARAMS
    # A 1 MB line is refused without being buffered whole, and the next line still works.
    writer.write(b"{" + b"x" * (1 << 20))
    r = await ask(b"\n")
    assert "longer than" in r.error[1]
    r = await ask(b'{"id": 9, "method": "client.get_version", "params": []}\n')
    assert r.id == 9 and r.result.startswith("qscrypt/")
    assert proxy.router.miner_count == 1
    writer.close()


async def test_abusive_connections_are_closed_with_a_reason_and_others_are_unaffected(
        pool: PoolServer, make_proxy, miners) -> None:
    limits = LimitsConfig(max_protocol_errors=5, messages_per_second=50.0, message_burst=50,
                          max_line_bytes=4096)
    proxy = await make_proxy([pool_upstream(pool, "p1")], limits=limits)
    port = proxy.ports["tcp"]
    good = await miners(port)
    await good.subscribe()
    await good.authorize("honest")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    garbage = await miners(port)
    await garbage.send_raw(b"garbage\n" * 10)
    await asyncio.wait_for(garbage.closed.wait(), 5)
    shown = [n.params[0] for n in garbage.notifications if n.method == "client.show_message"]
    assert shown and "malformed" in shown[0]

    flood = await miners(port)
    await flood.send_raw(b'{"id":1,"method":"client.get_version","params":[]}\n' * 500)
    await asyncio.wait_for(flood.closed.wait(), 5)
    shown = [n.params[0] for n in flood.notifications if n.method == "client.show_message"]
    assert shown and "rate limit" in shown[0]

    huge = await miners(port)
    for _ in range(8):  # 8 MB of lines too long, sent fast
        await huge.send_raw(b"a" * (1 << 20) + b"\n")
        if huge.closed.is_set():
            break
    await asyncio.wait_for(huge.closed.wait(), 5)

    # the honest miner beside them never noticed
    assert (await good.mine_one("honest")).result is True
    assert not good.closed.is_set()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert rss_after - rss_before < 64 * 1024  # KiB: nothing near the 8 MB that was sent
    assert proxy.metrics.protocol_errors._value.get() >= 6


async def test_connection_limits_and_handshake_timeout(pool: PoolServer, make_proxy, miners) -> None:
    limits = LimitsConfig(max_connections=20, max_connections_per_ip=3, handshake_timeout_s=1.0)
    proxy = await make_proxy([pool_upstream(pool, "p1")], limits=limits)
    port = proxy.ports["tcp"]
    held = [await miners(port) for _ in range(3)]
    fourth = await miners(port)
    await asyncio.wait_for(fourth.closed.wait(), 5)
    shown = [n.params[0] for n in fourth.notifications if n.method == "client.show_message"]
    assert shown and "too many connections from this IP" in shown[0]
    # the three that never subscribed are closed after the handshake timeout
    for miner in held:
        await asyncio.wait_for(miner.closed.wait(), 5)
    await wait_for(lambda: proxy.router.miner_count == 0, "connections released")


async def test_an_ip_that_reconnects_too_fast_is_refused_then_let_back(pool: PoolServer, make_proxy) -> None:
    limits = LimitsConfig(connect_burst_per_ip=4, connects_per_ip_per_s=5.0)
    proxy = await make_proxy([pool_upstream(pool, "p1")], limits=limits)
    port = proxy.ports["tcp"]

    async def connect(ip: str) -> ScriptedMiner:
        return await ScriptedMiner("127.0.0.1", port, local_host=ip).connect()

    for _ in range(4):  # the burst: connect and leave at once, as a crash-looping miner does
        miner = await connect("127.0.0.60")
        assert (await miner.subscribe()).error is None
        await miner.close()
    refused = await connect("127.0.0.60")
    await asyncio.wait_for(refused.closed.wait(), 5)
    shown = [n.params[0] for n in refused.notifications if n.method == "client.show_message"]
    assert shown and "connecting too often from this IP" in shown[0]
    await refused.close()
    other = await connect("127.0.0.61")  # another IP has its own allowance
    assert (await other.subscribe()).error is None
    await other.close()
    await asyncio.sleep(0.25)  # 5 per second: one more is allowed again
    again = await connect("127.0.0.60")
    assert (await again.subscribe()).error is None
    await again.close()


async def test_slow_reader_is_dropped_not_buffered(pool: PoolServer, make_proxy) -> None:
    limits = LimitsConfig(write_buffer_bytes=16 * 1024, messages_per_second=1e6, message_burst=1_000_000)
    proxy = await make_proxy([pool_upstream(pool, "p1")], limits=limits)
    _reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["tcp"], limit=1024)
    # shrink our receive buffer by never reading, while asking for lots of replies
    request = b'{"id":1,"method":"client.get_version","params":[]}\n'
    try:
        for _ in range(200):
            writer.write(request * 500)
            await writer.drain()
            if proxy.router.miner_count == 0:
                break
            await asyncio.sleep(0.01)
    except ConnectionError:
        pass
    await wait_for(lambda: proxy.router.miner_count == 0, "the slow reader to be dropped")
    assert proxy.metrics.disconnects.labels("slow reader")._value.get() == 1
    writer.close()


async def test_ip_with_mostly_invalid_shares_is_banned(pool: PoolServer, make_proxy, miners) -> None:
    limits = LimitsConfig(ban_min_shares=10, ban_invalid_ratio=0.8, ban_seconds=60)
    proxy = await make_proxy([pool_upstream(pool, "p1")], limits=limits)
    port = proxy.ports["tcp"]
    cheat = await miners(port)
    await cheat.subscribe()
    await cheat.authorize("cheat", "d=1000")  # nothing it sends will meet this
    mjob = await cheat.wait_job()
    for nonce in range(12):
        r = await cheat.submit("cheat", mjob, b"\x00\x00", nonce)
        if cheat.closed.is_set() or r.error is None:
            break
    await asyncio.wait_for(cheat.closed.wait(), 5)
    again = await miners(port)
    await asyncio.wait_for(again.closed.wait(), 5)  # banned IP: refused at once
    shown = [n.params[0] for n in again.notifications if n.method == "client.show_message"]
    assert shown and "banned" in shown[0]
    assert proxy.metrics.bans._value.get() == 1


async def test_a_tls_client_hello_on_the_plain_port_is_closed_at_once(pool: PoolServer, make_proxy) -> None:
    """BFGMiner tries TLS first on stratum+tcp and falls back to plain TCP only once the server
    closes: a server that waits for a JSON line leaves it hanging until its handshake timeout."""
    import ssl
    import time

    proxy = await make_proxy([pool_upstream(pool, "p1")])
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proxy.ports["tcp"], ssl=context), 5)
        raise AssertionError("the TLS handshake went through on the plain port")
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        print(f"closed in {(time.monotonic() - started) * 1000:.0f} ms: {type(exc).__name__}")
    assert time.monotonic() - started < 1.0
    assert proxy.metrics.disconnects.labels("TLS handshake on the plain Stratum port")._value.get() == 1


async def test_miners_connect_authorize_and_leave_in_the_log_and_a_flood_of_them_does_not_flood_it(
        pool: PoolServer, make_proxy, miners) -> None:
    from structlog.testing import capture_logs

    from proxy.server import _MINER_LOG_BURST

    proxy = await make_proxy([pool_upstream(pool, "p1")],
                             limits=LimitsConfig(connects_per_ip_per_s=10_000, connect_burst_per_ip=10_000))
    with capture_logs() as logs:
        miner = await miners(proxy.ports["tcp"])
        await miner.subscribe()
        await miner.authorize("logged.rig1")
        await miner.close()
        await wait_for(lambda: any(e["event"] == "miner.closed" for e in logs), "the close line")
    events = {e["event"]: e for e in logs}
    assert events["miner.connected"]["ip"] == "127.0.0.1"
    assert events["miner.authorize"]["worker"] == "logged.rig1" and events["miner.authorize"]["accepted"]
    assert events["miner.closed"]["reason"] == "peer closed"
    assert events["miner.closed"]["workers"] == ["logged.rig1"]
    with capture_logs() as logs:
        for _ in range(3 * _MINER_LOG_BURST):
            _, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["tcp"])
            writer.close()
        await asyncio.sleep(0.5)
    lines = [e for e in logs if e["event"].startswith("miner.")]
    # 3 × burst connections make 6 × burst lines (connect, close): about a burst of them logged.
    assert _MINER_LOG_BURST // 2 <= len(lines) < 2 * _MINER_LOG_BURST, len(lines)
