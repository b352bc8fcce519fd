"""Two proxy hosts mining solo on one Litecoin Core daemon to one payout address: their coinbases
differ by the host's mark (even were their random extranonce1 to meet), both hosts' blocks are
accepted by the daemon, and each `blocks` row names the host that found it."""

import hashlib
from pathlib import Path

from proxy.upstream.daemon import host_mark
from qscrypt.devnet.litecoind import RegtestPair
from tests.solo.support import (
    TAG,
    block_row,
    connected_miner,
    daemon_config,
    daemon_of,
    mine_block,
    running_proxy,
)


def test_the_host_mark_is_a_short_hash_of_the_name() -> None:
    assert host_mark("edge-a") == hashlib.sha256(b"edge-a").hexdigest()[:8].encode() + b"/"
    assert host_mark("edge-a") != host_mark("edge-b")
    assert host_mark(None) == b"" and host_mark("") == b""


async def test_two_hosts_on_one_daemon_build_different_coinbases_and_record_their_blocks(
    litecoin_pair: RegtestPair, pg_dsn: str, tmp_path: Path
) -> None:
    pair = litecoin_pair
    address = pair.wallet.call("getnewaddress", "", "legacy")
    upstream = daemon_config(pair, address)
    async with (
        running_proxy(upstream, pg_dsn, tmp_path / "a", host_name="edge-a") as a,
        running_proxy(upstream, pg_dsn, tmp_path / "b", host_name="edge-b") as b,
        connected_miner(a, "farm.rig-a") as miner_a,
        connected_miner(b, "farm.rig-b") as miner_b,
    ):
        work_a, work_b = daemon_of(a).work, daemon_of(b).work
        assert work_a is not None and work_b is not None
        # Same template, same payout: only the host mark tells the two coinbases apart, so the same
        # extranonce1 and extranonce2 on both hosts would still make two different coinbases.
        coinbase_a = work_a.job.coinb1 + work_a.job.coinb2
        coinbase_b = work_b.job.coinb1 + work_b.job.coinb2
        assert coinbase_a != coinbase_b
        mark_a, mark_b = TAG.encode() + host_mark("edge-a"), TAG.encode() + host_mark("edge-b")
        assert coinbase_a.count(mark_a) == 1 and coinbase_b.count(mark_b) == 1
        assert coinbase_a.replace(mark_a, mark_b) == coinbase_b
        for miner, host in ((miner_a, "edge-a"), (miner_b, "edge-b")):
            solution = await mine_block(miner, pair, "two hosts on one daemon")
            block = await pair.arpc(0, "getblock", solution.block_hash, 2)
            assert host_mark(host).hex() in block["tx"][0]["vin"][0]["coinbase"]
            row = await block_row(pg_dsn, solution.block_hash)
            assert (row["worker"], row["host"], row["status"]) == (miner.worker, host, "accepted")
