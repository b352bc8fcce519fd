"""The PROXY protocol shell on real sockets, for what HAProxy does not do on demand: a header split
over several writes (plain port: parsed as it arrives; TLS port: peeked before the handshake), one
that never completes, `optional` mode, LOCAL, and an IPv6 client. The "balancer" here connects
from 127.0.0.5, the one trusted address."""

import asyncio
import socket
import ssl
import struct
from pathlib import Path
from typing import Any

import pytest

from mining import stratum
from proxy.app import Proxy
from proxy.config import ListenConfig
from proxy.proxy_protocol import V2_SIGNATURE
from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer, make_certificate

BALANCER = "127.0.0.5"
SUBSCRIBE = stratum.encode(stratum.Request(1, "mining.subscribe", ["split/1.0"]))


def _v2(src: str, sport: int, command: int = 1) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack(">HH", sport, 3333)
    return V2_SIGNATURE + bytes([0x20 | command, 0x11]) + struct.pack(">H", len(body)) + body


async def _proxy(make_proxy: Any, pool: PoolServer, tmp_path: Path, **listen: Any) -> tuple[Proxy, Path]:
    cert, key = make_certificate(tmp_path)
    config = ListenConfig(host="127.0.0.1", port=0, tls_port=0, tls_cert=cert, tls_key=key,
                          proxy_protocol_from=[BALANCER], **{"proxy_protocol_timeout_s": 1.0, **listen})
    return await make_proxy([pool_upstream(pool, "p1")], listen=config), cert


async def _raw(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((BALANCER, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def _answered(reader: asyncio.StreamReader) -> bool:
    events = stratum.StratumCodec().feed(await asyncio.wait_for(reader.readline(), 10))
    return bool(events) and isinstance(events[0], stratum.Response) and events[0].error is None


def _seen(proxy: Proxy) -> list[tuple[str, str | None]]:
    return sorted((conn.ip, conn.via) for conn in proxy.server.connections)


async def test_a_header_split_over_writes_on_the_plain_and_the_tls_port(
        pool: PoolServer, make_proxy: Any, tmp_path: Path) -> None:
    proxy, cert = await _proxy(make_proxy, pool, tmp_path)
    loop = asyncio.get_running_loop()

    plain = await _raw(proxy.ports["tcp"])
    pieces = (b"PRO", b"XY TCP6 2001:db8::7 ", b"::1 40000 3333\r", b"\n" + SUBSCRIBE[:10], SUBSCRIBE[10:])
    for piece in pieces:
        await loop.sock_sendall(plain, piece)
        await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection(sock=plain)
    assert await _answered(reader)

    header = _v2("198.51.100.23", 60001)
    tls = await _raw(proxy.ports["tls"])
    for piece in (header[:5], header[5:14], header[14:]):
        await loop.sock_sendall(tls, piece)
        await asyncio.sleep(0.05)
    client = ssl.create_default_context(cafile=str(cert))
    tls_reader, tls_writer = await asyncio.open_connection(sock=tls, ssl=client, server_hostname="localhost")
    tls_writer.write(SUBSCRIBE)
    assert await _answered(tls_reader)
    assert _seen(proxy) == [("198.51.100.23", BALANCER), ("2001:db8::7", BALANCER)]
    writer.close()
    tls_writer.close()


@pytest.mark.parametrize("port", ["tcp", "tls"])
async def test_a_header_that_never_completes_is_refused_after_the_timeout(
        pool: PoolServer, make_proxy: Any, tmp_path: Path, port: str) -> None:
    proxy, _ = await _proxy(make_proxy, pool, tmp_path)
    refused = proxy.metrics.disconnects.labels("PROXY protocol")
    sock = await _raw(proxy.ports[port])
    await asyncio.get_running_loop().sock_sendall(sock, b"PROXY TCP4 198.51.100.1 127.0.0.1 ")
    reader, writer = await asyncio.open_connection(sock=sock)
    began = asyncio.get_running_loop().time()
    try:
        assert await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionResetError:
        pass
    waited = asyncio.get_running_loop().time() - began
    assert 0.8 <= waited < 8, waited  # the 1 s timeout, with room for a loaded machine
    await wait_for(lambda: refused._value.get() == 1, "the refusal to be counted")
    assert not proxy.server.connections
    writer.close()


async def test_optional_mode_and_local_headers_leave_the_balancers_address(
        pool: PoolServer, make_proxy: Any, tmp_path: Path) -> None:
    proxy, _ = await _proxy(make_proxy, pool, tmp_path, proxy_protocol="optional")
    loop = asyncio.get_running_loop()
    bare = await _raw(proxy.ports["tcp"])  # no header: optional, so the balancer's own connection
    await loop.sock_sendall(bare, SUBSCRIBE)
    local = await _raw(proxy.ports["tcp"])  # a health check's LOCAL header, then Stratum anyway
    await loop.sock_sendall(local, _v2("0.0.0.0", 0, command=0) + SUBSCRIBE)
    relayed = await _raw(proxy.ports["tcp"])
    await loop.sock_sendall(relayed, _v2("203.0.113.50", 4242) + SUBSCRIBE)
    streams = [await asyncio.open_connection(sock=s) for s in (bare, local, relayed)]
    for reader, _ in streams:
        assert await _answered(reader)
    assert _seen(proxy) == [(BALANCER, None), (BALANCER, None), ("203.0.113.50", BALANCER)]
    for _, writer in streams:
        writer.close()
