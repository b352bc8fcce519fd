"""BFGMiner 5.5.0 mining solo through the proxy on a Litecoin Core regtest pair.

Two habits of BFGMiner's that a scrypt proxy must meet (see shared/peers/README.md):
- on a `stratum+tcp://` URL it first sends a TLS ClientHello, and falls back to plain TCP only once
  the server ends that attempt: the proxy must end it at once, not after its handshake timeout;
- it reads `mining.set_difficulty` d ≥ 16 in the scrypt convention but d < 16 as SHA-256
  difficulty, 65,536 times harder: the proxy must send it the difficulty that makes it mine at the
  scrypt difficulty the proxy means (BFGMiner logs the target it settles on).
"""

from __future__ import annotations

import time
from pathlib import Path

from proxy.config import VardiffConfig
from qscrypt.devnet.litecoind import RegtestPair
from tests.peers.support import running_proxy, solo_upstream
from tests.services.peers import PeerFactory

# ~2,000 hashes a share at the scrypt difficulty the proxy means: about two a second from
# BFGMiner's 3-4 kH/s on one core (every one a regtest block).
DIFFICULTY = 0.03
TLS_FALLBACK_S = 3.0


async def test_bfgminer_falls_back_from_tls_at_once_mines_at_the_proxys_difficulty_and_is_accepted(
    litecoin_pair: RegtestPair, peers: PeerFactory, tmp_path: Path
) -> None:
    pair = litecoin_pair
    upstream, _ = solo_upstream(pair, "solo")
    vardiff = VardiffConfig(initial=DIFFICULTY, minimum=1e-6, maximum=1e6, retarget_every_s=600)
    async with running_proxy(tmp_path / "spill", [upstream], vardiff=vardiff) as run:
        started = time.monotonic()
        miner = await peers.start_bfgminer(run.url, "bfg.rig1", "x")
        subscribed = await miner.wait_for(lambda: miner.subscribes, 60, "BFGMiner to subscribe on plain TCP")
        assert miner.tls_failures, f"BFGMiner did not try TLS first\n{miner.describe()}"
        tls_ended = miner.tls_failures[0][0] - started
        assert subscribed < TLS_FALLBACK_S, (
            f"BFGMiner subscribed {subscribed:.1f} s after it started: its TLS probe was ended only after "
            f"{tls_ended:.1f} s ({miner.tls_failures[0][1]})")

        await miner.wait_for(lambda: miner.read_difficulties, 10, "BFGMiner to read its difficulty")
        sessions = [s for s in run.proxy.router.sessions() if s.user_agent.startswith("bfgminer")]
        assert len(sessions) == 1, [s.user_agent for s in run.proxy.router.sessions()]
        meant = sessions[0].difficulty
        sent = [value for _, value in miner.difficulties]
        mines_at = miner.scrypt_difficulties[-1][1]
        assert abs(mines_at - meant) <= 1e-3 * meant, (
            f"the proxy means scrypt difficulty {meant:g} and sent mining.set_difficulty {sent}; BFGMiner "
            f"read it as {miner.read_difficulties[-1][1]:g} and mines at scrypt difficulty {mines_at:g} "
            f"({mines_at / meant:g} times harder)")

        await miner.wait_for(lambda: miner.accepted >= 8, 90, "8 shares accepted")
        await miner.stop()
        await run.shares.settle()

    refused, stale = run.shares.refused_otherwise(), run.shares.stale()
    assert not refused, f"the proxy refused {len(refused)} of BFGMiner's shares: {refused[:5]}"
    assert miner.rejected == len(stale), miner.describe()
    accepted = run.shares.accepted()
    assert accepted and {a.worker for a in accepted} == {"bfg.rig1"}
    assert all(abs(a.difficulty - meant) <= 1e-9 * meant for a in accepted)
    assert len(accepted) >= miner.accepted
    not_blocks = [str(f) for f in run.shares.forwarded() if f.refused or f.outcome is None]
    assert not not_blocks, f"answered true, refused by litecoind: {not_blocks}"
    print(f"\nBFGMiner: TLS probe ended {tls_ended:.2f} s after start, subscribed on plain TCP at "
          f"{subscribed:.2f} s; the proxy means {meant:g} and sent {sent}, BFGMiner mines at {mines_at:g}; "
          f"{miner.accepted} shares accepted ({len(run.shares.forwarded())} blocks), {len(stale)} stale")
