"""Vardiff: converges to the target interval within bounds and does not oscillate."""

import asyncio
import random

from proxy.vardiff import Vardiff
from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer

HASHES_PER_DIFF1 = 65536


def simulate(hashrate: float, start_difficulty: float, seconds: float, seed: int = 7) -> list[float]:
    """A miner of `hashrate` H/s finding shares as a Poisson process, one retarget window at a time
    (shares inside a window only matter by their count); returns the difficulties it was given."""
    rng = random.Random(seed)
    window = 30.0
    vardiff = Vardiff(start_difficulty, 0.0001, 1e6, target_interval_s=10.0, retarget_every_s=window,
                      variance=0.3)
    vardiff.start(0.0)
    now, history = 0.0, [start_difficulty]
    while now < seconds:
        expected = window * hashrate / (vardiff.difficulty * HASHES_PER_DIFF1)
        # Poisson count: exact for small means, its normal limit for huge ones
        count = _poisson(rng, expected)
        vardiff.shares += count
        now += window
        changed = vardiff.maybe_retarget(now)
        if changed is not None:
            history.append(changed)
    return history


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 1000:
        return max(0, round(rng.gauss(mean, mean**0.5)))
    count, total = 0, rng.expovariate(1.0)
    while total < mean:
        count += 1
        total += rng.expovariate(1.0)
    return count


def test_converges_from_far_too_easy_and_far_too_hard() -> None:
    hashrate = 500e6  # a 500 MH/s scrypt ASIC: the ideal difficulty is 500e6 * 10 / 65536 ≈ 76,294
    ideal = hashrate * 10 / HASHES_PER_DIFF1
    for start in (0.001, 1e6):
        history = simulate(hashrate, start, seconds=2 * 3600)
        # within the first hour it has arrived, and it stays near the ideal from then on
        assert len(history) < 120
        settled = history[-5:]
        assert all(ideal / 2 < d < ideal * 2 for d in settled), (start, settled, ideal)


def test_settled_difficulty_does_not_flap() -> None:
    hashrate = 2e6
    ideal = hashrate * 10 / HASHES_PER_DIFF1
    history = simulate(hashrate, ideal, seconds=4 * 3600, seed=11)
    # starting at the ideal, changes are rare (a few in four hours) and stay near it
    assert len(history) <= 8
    assert all(ideal / 2.5 < d < ideal * 2.5 for d in history)


def test_bounds_and_fixed_difficulty() -> None:
    vardiff = Vardiff(1.0, 0.5, 2.0, 10.0, 30.0, 0.3)
    vardiff.start(0.0)
    for i in range(1000):  # far too fast
        vardiff.record_share(i * 0.1)
    assert vardiff.difficulty == 2.0
    vardiff.fixed = True
    vardiff.start(1000.0)
    assert vardiff.maybe_retarget(5000.0) is None and vardiff.difficulty == 2.0
    assert vardiff.suggest(100.0, 0.0) == 2.0  # clamped to the bounds


async def test_proxy_raises_difficulty_with_set_difficulty_before_the_next_notify(
        pool: PoolServer, make_proxy, miners) -> None:
    from proxy.config import VardiffConfig

    proxy = await make_proxy([pool_upstream(pool, "p1")],
                             vardiff=VardiffConfig(initial=0.0005, minimum=0.0001, maximum=10.0,
                                                   target_interval_s=10.0, retarget_every_s=1.0))
    miner = await miners(proxy.ports["tcp"])
    await miner.subscribe()
    await miner.authorize("fast")
    mjob = await miner.wait_job()
    for i in range(6):  # six shares in about a second: far faster than one per 10 s
        en2 = i.to_bytes(2, "big")
        nonce = await asyncio.to_thread(miner.find_share, mjob, en2)
        assert (await miner.submit("fast", mjob, en2, nonce)).result is True
    await asyncio.sleep(1.1)
    seen = len(miner.notifications)
    pool.new_job(clean=False)
    await wait_for(lambda: any(n.method == "mining.notify" for n in miner.notifications[seen:]), "next job")
    after = [n.method for n in miner.notifications[seen:]]
    assert after[:2] == ["mining.set_difficulty", "mining.notify"]
    assert miner.difficulty > 0.0005
    assert miner.jobs[-1].difficulty == miner.difficulty
