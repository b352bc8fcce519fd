"""cpuminer on a chain with no new block for five minutes stays connected and keeps hashing.

The watch itself (tests/peers/quiet.py) runs beside the other tests of this folder; this test,
the last of them, waits for what is left of the five minutes and judges what happened.
"""

from __future__ import annotations

import itertools

import pytest

from tests.peers.quiet import CPU_WINDOW_S, KEEPALIVE_S, KEEPALIVE_SLACK_S, QUIET_S, QuietWatch


@pytest.mark.timeout(QUIET_S + 180)
async def test_cpuminer_on_a_quiet_chain_stays_connected_and_keeps_hashing(
    quiet_chain: QuietWatch | None,
) -> None:
    watch = quiet_chain
    assert watch is not None, "the quiet-chain watch starts when this test is selected"
    assert watch.error is None, f"the quiet-chain watch did not start: {watch.error}"
    await watch.finish()
    assert watch.miner is not None and watch.began is not None and watch.ended is not None
    miner, began, ended = watch.miner, watch.began, watch.ended

    heights = {height for _, height in watch.heights}
    assert heights == {watch.height}, f"the chain moved: heights {sorted(heights)}"
    notifies = [n for n in miner.notifies if began <= n.at <= ended]
    moments = [began, *(n.at for n in notifies), ended]
    gaps = [b - a for a, b in itertools.pairwise(moments)]
    hashes = miner.hashes_between(began, ended)
    cpu = watch.cpu_in_windows()
    print(f"\nquiet chain for {ended - began:.0f} s at height {watch.height}: {len(notifies)} jobs re-sent "
          f"(longest silence {max(gaps):.1f} s), cpuminer connected {len(miner.subscribes)} times, "
          f"timeouts at {[round(t - began) for t in miner.timeouts]} s, {hashes} hashes reported, CPU per "
          f"{CPU_WINDOW_S:.0f} s: {[round(c, 1) for _, c in cpu]}")

    assert not miner.timeouts, (
        f"cpuminer timed out the silent proxy {len(miner.timeouts)} times, at "
        f"{[round(t - began) for t in miner.timeouts]} s; longest silence {max(gaps):.1f} s "
        f"(cpuminer's output: {miner.log_path})")
    assert len(miner.subscribes) == 1, f"cpuminer connected {len(miner.subscribes)} times: {miner.errors}"
    assert not miner.errors, miner.errors
    assert max(gaps) <= KEEPALIVE_S + KEEPALIVE_SLACK_S, (
        f"the proxy was silent for {max(gaps):.1f} s (keep-alive every {KEEPALIVE_S:.0f} s)")
    assert notifies[-1].ntime > notifies[0].ntime, "each re-sent job carries a fresh ntime"
    assert not [n for n in notifies if n.clean], "keep-alive jobs do not make miners drop their work"
    idle = [(round(start), round(seconds, 1)) for start, seconds in cpu if seconds < 1.0]
    assert len(cpu) >= int(QUIET_S // CPU_WINDOW_S) and not idle, f"cpuminer stopped hashing: {idle}"
