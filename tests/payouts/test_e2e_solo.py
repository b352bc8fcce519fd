"""End to end, solo: a real proxy that requires accounts mines on a real regtest pair; pooler's
cpuminer mines under ADDRESS.RIG and the test miner under a registered user's name; the blocks
mature (100 more), `qscrypt payouts run` sends one real transaction, and the receiving wallet sees
each account's reward less the fee. One more block confirms the payouts."""

import asyncio
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import asyncpg

from payouts import db
from payouts.config import to_units
from proxy.app import Proxy
from proxy.config import ListenConfig, ProxyConfig
from qscrypt.devnet.litecoind import MWEB_ACTIVATION_HEIGHT, RegtestPair
from tests.payouts.support import received, receiver, toml
from tests.peers.support import VARDIFF, solo_upstream
from tests.services.peers import PeerFactory
from tests.solo.support import connected_miner, eventually, mine_block

ROOT = Path(__file__).resolve().parents[2]


async def _blocks_of(dsn: str, account: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(
            await conn.fetch(
                "SELECT hash, reward FROM blocks WHERE status = 'accepted' "
                "AND split_part(split_part(worker, '+', 1), '.', 1) = $1",
                account,
            )
        )
    finally:
        await conn.close()


def _payouts_run(config: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "-c", str(config), "payouts", "run"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


async def test_miners_mine_blocks_mature_and_the_payout_run_pays_them(
    payouts_pair: RegtestPair, pg_dsn: str, peers: PeerFactory, tmp_path: Path
) -> None:
    pair = payouts_pair
    wallet = receiver(pair)
    alice = wallet.call("getnewaddress")  # mines as ADDRESS.RIG with cpuminer
    bob_address = wallet.call("getnewaddress")  # registered as bob, mines as bob.rig1
    conn = await asyncpg.connect(pg_dsn)
    try:
        await db.register(conn, "bob", None, "0" * 64, {"LTC": bob_address})
    finally:
        await conn.close()
    upstream, _pool_address = solo_upstream(pair)
    config = ProxyConfig(
        listen=ListenConfig(host="127.0.0.1", port=0),
        vardiff=VARDIFF,
        upstreams=[upstream],
        metrics_port=None,
        spill_dir=tmp_path / "spill",
        require_accounts=True,
    )
    proxy = Proxy(config, pg_dsn)
    await proxy.start()
    try:

        async def ready() -> bool:
            return proxy.router.active is not None and "bob" in proxy._accounts

        await eventually(ready, 30, "work from the daemon and the registered accounts")
        url = f"stratum+tcp://127.0.0.1:{proxy.ports['tcp']}"
        cpuminer = await peers.start_cpuminer(url, f"{alice}.cpu1", "x,d=0.5")
        await eventually(lambda: _blocks_of(pg_dsn, alice), 180, "a block of cpuminer's in the blocks table")
        await cpuminer.stop()
        async with connected_miner(proxy, "bob.rig1") as miner:
            await mine_block(miner, pair, "payouts e2e")
        await eventually(lambda: _blocks_of(pg_dsn, "bob"), 30, "bob's block in the blocks table")
    finally:
        await proxy.close()
    alice_blocks, bob_blocks = await _blocks_of(pg_dsn, alice), await _blocks_of(pg_dsn, "bob")
    assert alice_blocks and len(bob_blocks) == 1

    settings = tmp_path / "payouts.toml"
    settings.write_text(toml(pair, pg_dsn))
    immature = await asyncio.to_thread(_payouts_run, settings)
    assert immature["blocks_found"] == len(alice_blocks) + 1 and immature["sent"] == [], immature

    assert pair.height() + 100 < MWEB_ACTIVATION_HEIGHT
    await asyncio.to_thread(pair.generate, 100)
    paid = await asyncio.to_thread(_payouts_run, settings)
    assert paid["blocks_matured"] == len(alice_blocks) + 1 and len(paid["sent"]) == 1, paid
    (txid,) = paid["sent"]
    await asyncio.to_thread(pair.sync_mempools, [txid])

    def less_fee(rows: list[asyncpg.Record]) -> Decimal:  # 1 % per block, rounded down to the litoshi
        return Decimal(sum(to_units(r["reward"]) - to_units(r["reward"]) // 100 for r in rows)) / 10**8

    assert [(t["txid"], Decimal(str(t["amount"]))) for t in received(wallet, alice)] == [
        (txid, less_fee(alice_blocks))
    ]
    assert [(t["txid"], Decimal(str(t["amount"]))) for t in received(wallet, bob_address)] == [
        (txid, less_fee(bob_blocks))
    ]
    await asyncio.to_thread(pair.generate, 1)
    confirmed = await asyncio.to_thread(_payouts_run, settings)
    assert confirmed["confirmed"] == 1 and confirmed["sent"] == []
