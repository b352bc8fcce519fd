"""The solo upstream's merged mining on exact orderings, against real daemons: a Litecoin Core
regtest pair and a Dogecoin Core regtest node, the upstream driven directly (no miner), so the
order of events is the test's. cpuminer through the whole proxy: tests/peers/test_merged_mining.py."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from structlog.testing import capture_logs

from mining.hashing import hash_to_int
from mining.job import Job
from proxy.config import AuxChainConfig, FailoverConfig
from proxy.upstream.daemon import DaemonUpstream
from qscrypt.devnet.dogecoind import AUXPOW_START_HEIGHT, DogecoinNode, regtest_address
from qscrypt.devnet.litecoind import RegtestPair
from tests.solo.support import daemon_config, wait_until


def _solve(upstream: DaemonUpstream, job: Job, extranonce2: bytes) -> tuple[bytes, int]:
    """A header on `job` under regtest's target (half of all hashes are), and its nonce."""
    for nonce in range(1000):
        header = job.header(upstream.extranonce1, extranonce2, job.ntime, nonce)
        if hash_to_int(upstream.profile.pow_hash(header)) <= 0x7FFFFF << 232:
            return header, nonce
    raise AssertionError("no regtest block in 1000 nonces")


async def test_a_stale_aux_block_is_never_submitted_and_a_won_one_once(
        litecoin_pair: RegtestPair, dogecoin_node: DogecoinNode) -> None:
    pair, node = litecoin_pair, dogecoin_node
    aux = AuxChainConfig(name="doge", coin="DOGE", network="regtest", rpc_url=node.rpc_url,
                         rpc_user=node.user, rpc_password=node.password,
                         payout_address=regtest_address(b"stale test"), poll_s=0.1)
    config = replace(daemon_config(pair, pair.wallet.call("getnewaddress")), aux=[aux])
    upstream = DaemonUpstream(config, FailoverConfig())
    counted: list[tuple[str, str]] = []
    upstream.on_aux_block = lambda coin, status: counted.append((coin, status))
    chain = upstream.aux_chains[0]
    with capture_logs() as logs:
        await upstream.start()
        try:
            await wait_until(lambda: upstream.work is not None and chain.work is not None
                             and b"\xfa\xbe\x6d\x6d" + chain.work.hash[::-1] in upstream.work.job.coinb1, 30,
                             "a job committing to the aux block")
            assert upstream.work is not None and chain.work is not None
            stale_job, stale_block = upstream.work.job, chain.work
            assert upstream.work.target >= stale_block.target  # aux shares come here too
            # Another miner's Dogecoin block: the job's aux block is stale from the next poll on.
            external = node.generate(1)[0]
            await wait_until(lambda: chain.tip == external, 10, "the aux chain to see the new tip")
            header, nonce = _solve(upstream, stale_job, b"\x00\x00\x00\x01")
            outcome = await upstream.submit(stale_job.job_id, b"\x00\x00\x00\x01", stale_job.ntime, nonce,
                                            header, "stale.rig")
            assert outcome.accepted and outcome.status == "accepted", outcome  # the Litecoin block
            await asyncio.sleep(0.5)  # an aux submission, were there one, would be done by now
            assert node.height() == AUXPOW_START_HEIGHT and node.call("getbestblockhash") == external
            assert not counted
            stale = [e for e in logs if e["event"] == "daemon.aux_stale"]
            assert [e["hash"] for e in stale] == [stale_block.hash_hex]

            # Fresh work: two shares of one job both win its aux block; it is submitted once.
            def committed() -> bool:
                return (chain.work is not None and chain.work.prevhash_hex == external
                        and upstream.work is not None and chain.work.hash[::-1] in upstream.work.job.coinb1)

            await wait_until(committed, 30, "a job on the new aux block")
            assert upstream.work is not None and chain.work is not None
            job, block = upstream.work.job, chain.work
            shares = [(extranonce2, *_solve(upstream, job, extranonce2))
                      for extranonce2 in (b"\x00\x00\x00\x02", b"\x00\x00\x00\x03")]
            for extranonce2, header, nonce in shares:
                await upstream.submit(job.job_id, extranonce2, job.ntime, nonce, header, "fresh.rig")
            await wait_until(lambda: bool(counted), 10, "the aux block's verdict")
            await asyncio.sleep(0.5)
            assert counted == [("DOGE", "accepted")]
            assert node.call("getbestblockhash") == block.hash_hex
            assert node.call("getblock", block.hash_hex, True)["auxpow"]["parentblock"] == shares[0][1].hex()
        finally:
            await upstream.close()
