"""TLS on both sides (stratum+ssl listener for miners, verified TLS to pools) and /metrics."""

import asyncio
import ssl
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

from mining import stratum
from proxy.config import LimitsConfig, ListenConfig
from proxy.metrics import TOP_WORKERS, top_workers
from tests.proxy.conftest import pool_upstream, wait_for
from tests.services.proxy_command import free_port
from tests.stratum_peers import PoolServer, make_certificate


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
        untrusted_upstream = proxy.upstream("untrusted")
        await wait_for(lambda: untrusted_upstream.last_error is not None, "the untrusted upstream to fail")
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted_upstream.last_error
        assert not untrusted_upstream.healthy
    finally:
        await pool.stop()


async def test_metrics_endpoint_reports_miners_shares_and_upstreams(pool: PoolServer, make_proxy,
                                                                    miners) -> None:
    port = free_port()
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


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_top_workers_ranks_by_hashrate_and_merges_one_name() -> None:
    figures = [("a", 5.0, 1.0), ("b", 9.0, 2.0), ("c", 1.0, 4.0), ("a", 6.0, 3.0)]
    assert top_workers(figures, 2) == [("a", 11.0, 3.0), ("b", 9.0, 2.0)]
    assert top_workers([], 2) == []


async def test_only_the_top_workers_get_a_series(pool: PoolServer, make_proxy, miners) -> None:
    port = free_port()
    # Shares come as fast as the test finds them: a message allowance that keeps d=0.001 pinned.
    proxy = await make_proxy([pool_upstream(pool, "p1")], metrics_port=port,
                             limits=LimitsConfig(messages_per_second=1000.0, message_burst=1000))
    miner = await miners(proxy.ports["tcp"])
    await miner.subscribe()
    names = [f"rig{i:02d}" for i in range(TOP_WORKERS + 5)]
    for name in names:
        assert (await miner.authorize(name, "d=0.001")).result is True
    for index, name in enumerate(names):
        # More shares for later names: they must be the ones ranked.
        for extra in range(1 + index // 10):
            assert (await miner.mine_one(name, bytes([index, extra, 0, 0])[:miner.extranonce2_size])).result
    proxy.report_workers(time.monotonic())
    text = await asyncio.to_thread(_scrape, port)
    shown = {line.split('"')[1] for line in text.splitlines()
             if line.startswith("qscrypt_worker_hashrate_hs{")}
    assert len(shown) == TOP_WORKERS
    assert {"rig20", "rig21", "rig22", "rig23", "rig24"} <= shown
    assert all(f'qscrypt_worker_difficulty{{worker="{name}"}} 0.001' in text for name in shown)
    assert float(next(line.split()[-1] for line in text.splitlines()
                      if line.startswith("qscrypt_hashrate_hs "))) > 0
