"""TLS on both sides (stratum+ssl listener for miners, verified TLS to pools) and /metrics."""

import asyncio
import socket
import ssl
import urllib.request
from dataclasses import replace
from pathlib import Path

from mining import stratum
from qscrypt.config import ListenConfig
from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer, make_certificate


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_stratum_ssl_listener_serves_miners(pool: PoolServer, make_proxy, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    listen = ListenConfig(host="127.0.0.1", port=0, tls_port=0, tls_cert=cert, tls_key=key)
    proxy = await make_proxy([pool_upstream(pool, "p1")], listen=listen)
    client = ssl.create_default_context(cafile=str(cert))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["tls"], ssl=client)
    writer.write(stratum.encode(stratum.Request(1, "mining.subscribe", ["tls-miner"])))
    codec = stratum.StratumCodec()
    events = codec.feed(await asyncio.wait_for(reader.readline(), 5))
    assert isinstance(events[0], stratum.Response) and len(events[0].result) == 3
    writer.close()


async def test_pool_tls_is_verified(make_proxy, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path, "pool")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    pool = PoolServer()
    await pool.start(tls=server_tls)
    try:
        base = pool_upstream(pool, "secure")
        url = base.url.replace("stratum+tcp", "stratum+ssl")
        trusted = replace(base, url=url, tls_ca=cert)
        untrusted = replace(base, name="untrusted", url=url, priority=1)  # system CAs only
        proxy = await make_proxy([trusted, untrusted])
        assert proxy.router.active == "secure"
        untrusted_upstream = proxy.router.upstream("untrusted")
        await wait_for(lambda: untrusted_upstream.last_error is not None, "the untrusted upstream to fail")
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted_upstream.last_error
        assert not untrusted_upstream.healthy
    finally:
        await pool.stop()


async def test_metrics_endpoint_reports_miners_shares_and_upstreams(pool: PoolServer, make_proxy,
                                                                    miners) -> None:
    port = _free_port()
    proxy = await make_proxy([pool_upstream(pool, "p1")], metrics_port=port)
    miner = await miners(proxy.ports["tcp"])
    await miner.subscribe()
    await miner.authorize("metered", "d=0.001")
    assert (await miner.mine_one("metered")).result is True
    await miner.submit("metered", miner.jobs[-1], b"\x00", 1)  # bad extranonce2 length

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()

    await wait_for(lambda: proxy.metrics.upstream_submits.labels("p1", "accepted")._value.get() == 1,
                   "the forwarded share's result")
    text = await asyncio.to_thread(scrape)
    assert "qscrypt_miners_connected 1.0" in text
    assert 'qscrypt_shares_total{reason="",result="accepted"} 1.0' in text
    assert 'qscrypt_shares_total{reason="bad-extranonce2",result="rejected"} 1.0' in text
    assert 'qscrypt_upstream_up{upstream="p1"} 1.0' in text
    assert 'qscrypt_upstream_active{upstream="p1"} 1.0' in text
    assert 'qscrypt_upstream_submits_total{result="accepted",upstream="p1"} 1.0' in text
    assert "qscrypt_upstream_submit_seconds_bucket" in text
