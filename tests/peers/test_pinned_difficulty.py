"""cpuminer with a pinned difficulty far too low for it (`-p x,d=0.0001`: thousands of shares a
second). Issue 14: it was honoured as given and cpuminer, sending more than the message-rate limit,
was disconnected three times in three seconds. The proxy raises the pin to what the limit allows,
at once, tells the miner why, and the miner stays connected."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

from proxy.config import LimitsConfig, UpstreamConfig
from tests.peers.support import RunningProxy, running_proxy
from tests.services.peers import PeerFactory
from tests.stratum_peers import PoolServer

PINNED = 0.0001  # ~6.5 hashes a share: ~3,000 shares a second from cpuminer's 20 kH/s
WATCH_S = 20.0


async def test_a_pin_that_would_flood_is_raised_and_the_miner_stays(peers: PeerFactory,
                                                                    tmp_path: Path) -> None:
    # A pool far harder than the miner: nothing is forwarded, the proxy alone answers the shares.
    async with PoolServer(difficulty=1000.0, job_interval_s=None) as pool:
        upstream = UpstreamConfig(name="pool", url=pool.url, user="acct.proxy")
        limits = LimitsConfig()
        async with running_proxy(tmp_path / "spill", [upstream], limits=limits) as run:
            miner = await peers.start_cpuminer(run.url, "pinned.rig1", f"x,d={PINNED}")
            await miner.wait_for(lambda: miner.accepted >= 10, 30, "cpuminer's first shares")
            began = asyncio.get_running_loop().time()
            await asyncio.sleep(WATCH_S)
            await miner.stop()
            disconnects = {labels["reason"]: value
                           for labels, value in _samples(run, "qscrypt_disconnects_total")}
        sent = [value for _, value in miner.difficulties]
        raised = [text for _, text in miner.messages if "raised to" in text]
        print(f"\ncpuminer pinned at {PINNED}: sent difficulties {sent}, told {raised}, "
              f"{miner.accepted} accepted over ~{WATCH_S:.0f} s, connected {len(miner.subscribes)} times; "
              f"disconnects by reason {disconnects}")
        assert sent[0] == PINNED and max(sent) > PINNED
        assert raised, miner.messages
        assert len(miner.subscribes) == 1, miner.errors
        assert not disconnects.get("message rate limit exceeded"), disconnects
        late = [v for v in miner.results if v.at >= began]
        assert len(late) / WATCH_S <= limits.messages_per_second / 2 * 1.5, len(late)
        assert miner.rejected == 0, miner.describe()


def _samples(run: RunningProxy, name: str) -> Iterator[tuple[dict[str, str], float]]:
    for metric in run.proxy.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                yield sample.labels, sample.value
