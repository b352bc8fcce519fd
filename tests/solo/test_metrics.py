"""The proxy's metrics and rows against a real solo flow, series by series (issue 14: upstream_up
read 0 for a healthy daemon, blocks were never counted, shares.block_hash was never written)."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import asyncpg

from proxy.app import Proxy
from proxy.config import ListenConfig, ProxyConfig
from qscrypt.devnet.litecoind import RegtestPair
from tests.services.proxy_command import free_port
from tests.solo.support import VARDIFF, connected_miner, daemon_config, mine_block, running_proxy, wait_until


def _sample(proxy: Proxy, name: str, **labels: str) -> float | None:
    return proxy.metrics.registry.get_sample_value(name, labels)


async def test_upstream_up_blocks_by_coin_and_status_and_the_block_share_row(
    litecoin_pair: RegtestPair, pg_dsn: str, tmp_path: Path
) -> None:
    pair = litecoin_pair
    address = pair.wallet.call("getnewaddress")
    async with running_proxy(daemon_config(pair, address), pg_dsn, tmp_path) as proxy, \
            connected_miner(proxy, "meter") as miner:
        assert _sample(proxy, "qscrypt_upstream_up", upstream="solo") == 1.0
        assert _sample(proxy, "qscrypt_upstream_active", upstream="solo") == 1.0
        assert _sample(proxy, "qscrypt_blocks_total", coin="LTC", status="accepted") is None
        found = [await mine_block(miner, pair, "test_metrics") for _ in range(2)]
        await wait_until(lambda: _sample(proxy, "qscrypt_blocks_total", coin="LTC", status="accepted") == 2,
                         5, "two accepted blocks counted")
        assert _sample(proxy, "qscrypt_upstream_submits_total", upstream="solo", result="accepted") == 2
        assert _sample(proxy, "qscrypt_upstream_up", upstream="solo") == 1.0  # still, after new tips
        assert _sample(proxy, "qscrypt_failovers_total") == 0
        assert _sample(proxy, "qscrypt_failbacks_total") == 0

        async def rows() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(pg_dsn)
            try:
                return list(await conn.fetch(
                    "SELECT block_hash FROM shares WHERE worker = 'meter' AND block_hash IS NOT NULL"))
            finally:
                await conn.close()

        for _ in range(100):
            if len(await rows()) == 2:
                break
            await asyncio.sleep(0.1)
        assert sorted(r["block_hash"] for r in await rows()) == sorted(s.block_hash for s in found)



async def test_metrics_bind_the_listen_host_unless_told_otherwise(litecoin_pair: RegtestPair,
                                                                  tmp_path: Path) -> None:
    pair = litecoin_pair
    upstream = daemon_config(pair, pair.wallet.call("getnewaddress"))
    for metrics_host, reachable_on in (("", "127.0.0.1"), ("127.0.0.2", "127.0.0.2")):
        port = free_port()
        config = ProxyConfig(listen=ListenConfig(host="127.0.0.1", port=0), vardiff=VARDIFF,
                             upstreams=[upstream], metrics_port=port, metrics_host=metrics_host,
                             spill_dir=tmp_path)
        proxy = Proxy(config, None)
        await proxy.start()
        try:
            text = await asyncio.to_thread(_scrape, f"http://{reachable_on}:{port}/metrics")
            assert b"qscrypt_upstream_up" in text
            # Nowhere else: the server is not on the wildcard address.
            try:
                await asyncio.to_thread(_scrape, f"http://127.0.0.3:{port}/metrics")
                raise AssertionError(f"metrics answered on 127.0.0.3 while bound to {reachable_on}")
            except OSError:
                pass
        finally:
            await proxy.close()


def _scrape(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())
