"""BFGMiner — a real miner that answers the cgminer API — mines through the real proxy (solo on a
Litecoin Core regtest pair of its own, shares recorded in PostgreSQL) while the fleet poller reads
its API: the hashrate it reports, normalised from its MHS to H/s, against the hashrate the proxy
measures from its accepted shares over the same window.

Its own regtest pair: at regtest's target every share is a block, and this test mines dozens; the
session's shared pair must stay well short of MWEB activation (height 432) for the other tests."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fleet.config import DeviceConfig, FleetConfig
from fleet.metrics import FleetMetrics
from fleet.poller import Poller
from proxy.app import Proxy
from proxy.config import ListenConfig, ProxyConfig, VardiffConfig
from qscrypt.db.embedded import free_port
from qscrypt.db.migrate import migrate
from qscrypt.devnet.litecoind import RegtestPair, start_pair
from tests.peers.support import FAILOVER, solo_upstream, wait_until
from tests.services.peers import PeerFactory

# ~650 hashes a share: two to five a second from BFGMiner's 1.5-4 kH/s on one (shared) core, so a
# 30 s window holds enough shares for the proxy's measure to mean something.
DIFFICULTY = 0.01
WINDOW_S = 30.0
POLL_S = 2.0
WORKER = "bfg.fleet"


@pytest.fixture(scope="module")
def own_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestPair]:
    pair = start_pair(tmp_path_factory.mktemp("litecoin-fleet"))
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture
async def proxy_on_postgres(own_pair: RegtestPair, pg_dsn: str, tmp_path: Path) -> AsyncIterator[Proxy]:
    await migrate(pg_dsn)
    upstream, _ = solo_upstream(own_pair, "solo")
    config = ProxyConfig(listen=ListenConfig(host="127.0.0.1", port=0), failover=FAILOVER,
                         upstreams=[upstream], metrics_port=None, spill_dir=tmp_path / "spill",
                         hash_processes=1, share_flush_s=0.5,
                         vardiff=VardiffConfig(initial=DIFFICULTY, minimum=1e-6, maximum=1e6,
                                               retarget_every_s=600))
    proxy = Proxy(config, pg_dsn)
    await proxy.start()
    try:
        await wait_until(lambda: proxy.router.active is not None, 60, "the solo upstream to have work")
        yield proxy
    finally:
        await proxy.close()


async def test_bfgminer_reported_hashrate_against_the_proxys_measure(
        proxy_on_postgres: Proxy, peers: PeerFactory, pg_dsn: str) -> None:
    import asyncpg

    proxy = proxy_on_postgres
    api_port = free_port()
    miner = await peers.start_bfgminer(f"stratum+tcp://127.0.0.1:{proxy.ports['tcp']}", WORKER, "x", extra=(
        "--api-listen", "--api-allow", "W:127.0.0.1", "--api-port", str(api_port)))
    await miner.wait_for(lambda: miner.accepted >= 2, 60, "BFGMiner's first accepted shares")

    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    metrics = FleetMetrics()
    config = FleetConfig(poll_s=POLL_S, timeout_s=3.0, window_s=WINDOW_S, share_lag_s=2.0, devices=(
        DeviceConfig(name="bfgminer", host="127.0.0.1", port=api_port, worker=WORKER),))
    poller = Poller(config, metrics, pool)
    stop = asyncio.Event()
    running = asyncio.create_task(poller.run(stop))
    try:
        began = time.monotonic()
        # The window fills once the polls span it and the last of them is share_lag_s old.
        def spanned() -> float:
            state = poller.states.get("bfgminer")
            samples = state.samples if state is not None else []
            return samples[-1].at - samples[0].at if len(samples) > 1 else 0.0

        await wait_until(lambda: spanned() >= WINDOW_S + config.share_lag_s + POLL_S, WINDOW_S + 40,
                         "the poller to read BFGMiner over a whole window", miner)
        await asyncio.sleep(POLL_S)
        # Stopped before anything is read: a poll between reading the row and the gauge would
        # move one and not the other.
        stop.set()
        await running
        state = poller.states["bfgminer"]
        assert state.error is None, state.error
        reading = state.reading
        assert reading is not None
        assert reading.family == "bfgminer" and reading.firmware.startswith("bfgminer")
        # BFGMiner reports MHS: a CPU core's 3-4 kH/s is 0.003-0.004 of them.
        assert reading.rate_unit == "MH" and 300 < (reading.hashrate_avg_hs or 0) < 100_000, reading
        assert reading.total_hashes and reading.elapsed_s
        assert reading.pools and reading.pools[0].user == WORKER and reading.pools[0].active
        assert (reading.accepted or 0) >= 2

        row = await pool.fetchrow("SELECT * FROM asic_readings WHERE device = 'bfgminer'")
        assert row is not None and row["ok"] and row["disagreement"] is not None, dict(row or {})
        device_hs, proxy_hs, shares = row["device_window_hs"], row["proxy_hs"], row["window_shares"]
        # The proxy counts shares, a random process: with n of them its figure is good to about
        # 1/sqrt(n). Four of those, plus 10 % for BFGMiner's own counting (work abandoned at each
        # new block, every share being a regtest block), is the band a correct normalisation stays in;
        # an MHS read as H/s or kH/s would be off by a factor of a thousand.
        assert shares >= 15, f"only {shares} shares in {row['window_s']:.0f} s"
        band = 4 / math.sqrt(shares) + 0.1
        ratio = proxy_hs / device_hs
        print(f"\nBFGMiner over {row['window_s']:.1f} s: reports {device_hs:,.0f} H/s (its hash counter; "
              f"{reading.hashrate_hs:,.0f} H/s now), the proxy measured {proxy_hs:,.0f} H/s from {shares} "
              f"shares: ratio {ratio:.3f}, disagreement {row['disagreement']:+.3f} (band ±{band:.2f}); "
              f"{time.monotonic() - began:.0f} s of polling")
        assert abs(ratio - 1) <= band, (device_hs, proxy_hs, shares)
        gauge = metrics.disagreement.labels("bfgminer")._value.get()
        assert gauge == pytest.approx(row["disagreement"])
    finally:
        stop.set()
        await running
        await pool.close()
        await miner.stop()
