"""Merge-mined Dogecoin blocks paid by the same schemes, settled on Dogecoin's own chain: a real
`dogecoind -regtest` node (Dogecoin Core 1.14.7, built without a wallet) holds the blocks, and
`[payouts.coins.DOGE]` points at it. A DOGE block recorded as the proxy records an aux block
(`blocks.coin = 'DOGE'`, the Litecoin upstream's name) is credited immature, becomes payable at
Dogecoin's own coinbase maturity (regtest 60 confirmations; main 240), and is reversed when
`invalidateblock` takes it off the main chain. The node has no wallet, so paying stops at
`sendmany`: the daemon refuses it, the batch is `failed` and the amount is owed again."""

import argparse
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg
import pytest

import payouts.cli
from payouts import db
from payouts.config import CoinPayouts, PayoutsConfig, to_units
from payouts.run import RunReport, run_payouts
from proxy import db as proxy_db
from qscrypt.devnet.dogecoind import DogecoinNode, regtest_address
from qscrypt.settings import ConfigError, load_section
from tests.payouts.support import balance

DOGE = "DOGE"


def _section(node: DogecoinNode, **keys: Any) -> dict[str, Any]:
    coin = {
        "mode": "solo", "scheme": "solo", "network": "regtest", "minimum": 0.001, "fee_percent": 1.0,
        "rpc_url": node.rpc_url, "rpc_user": node.user, "rpc_password": node.password,
    } | keys  # fmt: skip
    return {"coins": {DOGE: coin}}


async def _record(conn: asyncpg.Connection, node: DogecoinNode, block_hash: str, worker: str) -> int:
    """A `blocks` row for a real Dogecoin block, as the proxy writes an aux block it won (coin
    DOGE, the Litecoin upstream's name, the reward createauxblock offered); the reward in koinu."""
    block = await node.acall("getblock", block_hash, 2)
    reward = sum(Decimal(str(out["value"])) for out in block["tx"][0]["vout"])
    await conn.execute(
        "INSERT INTO blocks (coin, height, hash, worker, upstream, reward, status, found_at) "
        "VALUES ($1, $2, $3, $4, 'ltc-solo', $5, 'accepted', $6)",
        DOGE,
        block["height"],
        block_hash,
        worker,
        reward,
        datetime.fromtimestamp(block["time"], UTC),
    )
    return to_units(reward)


async def _run(
    pool: asyncpg.Pool, config: CoinPayouts, node: DogecoinNode, *, send: bool = False
) -> RunReport:
    return await run_payouts(pool, DOGE, config, node.rpc, datetime.now(UTC), send=send)


async def _confirmations(node: DogecoinNode, block_hash: str) -> int:
    return int((await node.acall("getblock", block_hash, True))["confirmations"])


async def test_doge_blocks_are_credited_mature_at_dogecoins_maturity_and_reversed(
    dogecoin_node: DogecoinNode, pg_dsn: str
) -> None:
    node = dogecoin_node
    config = load_section(PayoutsConfig, _section(node), "payouts").coin(DOGE)
    assert config.maturity == 0 and config.maturity_of(DOGE) == 60  # Dogecoin Core's regtest value
    alice = regtest_address(b"alice's dogecoin payout address")  # registered: pays alice.rig1's blocks
    bob = regtest_address(b"bob mines as his own address")  # mines as ADDRESS.RIG
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=3)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await db.register(conn, "alice", None, "0" * 64, {DOGE: alice})
        first, second = await node.acall("generatetoaddress", 2, node.mining_address)
        alice_reward = await _record(conn, node, first, "alice.rig1")
        bob_reward = await _record(conn, node, second, f"{bob}.rig1")
        alice_owed = alice_reward - alice_reward // 100  # the 1 % fee, rounded down to the koinu
        bob_owed = bob_reward - bob_reward // 100
        # The LTC rows of the same database are not this coin's: a DOGE run leaves them alone.
        await conn.execute(
            "INSERT INTO blocks (coin, height, hash, worker, upstream, reward, status) "
            "VALUES ('LTC', 7, repeat('a', 64), 'alice.rig1', 'ltc-solo', 50, 'accepted')"
        )

        found = await _run(pool, config, node)
        assert sorted(found.settled.found) == sorted([first, second]) and found.created == 0, found.summary()
        assert await balance(conn, "alice", "immature", DOGE) == alice_owed
        assert await balance(conn, bob, "immature", DOGE) == bob_owed
        assert await balance(conn, "alice", "immature", "LTC") == 0

        # One confirmation short of Dogecoin's maturity: still immature.
        await node.acall("generatetoaddress", 60 - await _confirmations(node, first) - 1, node.mining_address)
        assert await _confirmations(node, first) == 59
        early = await _run(pool, config, node)
        assert early.settled.matured == [] and early.created == 0, early.summary()
        assert await balance(conn, "alice", "balance", DOGE) == 0

        # The 60th: alice's block matures and she is owed; bob's, one younger, waits.
        await node.acall("generatetoaddress", 1, node.mining_address)
        mature = await _run(pool, config, node)
        assert mature.settled.matured == [first] and mature.created == 1, mature.summary()
        assert await balance(conn, "alice", "immature", DOGE) == 0
        assert await balance(conn, "alice", "paid", DOGE) == alice_owed  # moved by the payout row
        payout = await conn.fetchrow("SELECT id, address, amount, status FROM payouts WHERE coin = $1", DOGE)
        assert (payout["address"], payout["amount"], payout["status"]) == (alice, alice_owed, "pending")

        # Bob's block leaves Dogecoin's main chain before it matures: his credit is reversed.
        await node.acall("invalidateblock", second)
        assert await _confirmations(node, second) == -1
        gone = await _run(pool, config, node)
        assert gone.settled.orphaned == [second], gone.summary()
        assert (
            await balance(conn, bob, "immature", DOGE) == 0 and await balance(conn, bob, "balance", DOGE) == 0
        )
        assert await conn.fetchval("SELECT status FROM blocks WHERE hash = $1", second) == "orphaned"
        again = await _run(pool, config, node)  # nothing left to settle: nothing moves
        assert again.summary() | {"coin": DOGE} == RunReport(DOGE).summary()

        # Paying: Dogecoin Core built without a wallet has no sendmany. The run gets that far, the
        # batch is failed and alice is owed her DOGE again (nothing sent, nothing lost).
        refused = await _run(pool, config, node, send=True)
        assert len(refused.failed) == 1 and refused.sent == [], refused.summary()
        assert await conn.fetchval("SELECT status FROM payouts WHERE id = $1", payout["id"]) == "failed"
        assert await balance(conn, "alice", "balance", DOGE) == alice_owed
        assert await balance(conn, "alice", "paid", DOGE) == 0
        entries = await conn.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE coin = $1", DOGE
        )
        assert entries == 0  # double entry: every txn sums to zero
    finally:
        await conn.close()
        await pool.close()


async def test_pplns_splits_a_doge_block_over_the_merged_shares_by_dogecoins_difficulty(
    dogecoin_node: DogecoinNode, pg_dsn: str
) -> None:
    """The shares that won the Litecoin work are the Dogecoin work too: a DOGE block is split over
    the last shares whose difficulties add up to factor x D x 65536, D Dogecoin's difficulty
    (from dogecoind's getblock), not Litecoin's."""
    node = dogecoin_node
    (block_hash,) = await node.acall("generatetoaddress", 1, node.mining_address)
    difficulty = float((await node.acall("getblock", block_hash, True))["difficulty"])
    factor = 4.5 / (difficulty * 65536)  # the window: 4.5 share difficulty's worth
    config = load_section(PayoutsConfig, _section(node, scheme="pplns", pplns_factor=factor), "payouts").coin(
        DOGE
    )
    conn = await asyncpg.connect(pg_dsn)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=3)
    try:
        reward = await _record(conn, node, block_hash, "dave.rig1")  # the finder gets no more than his shares
        found_at = await conn.fetchval("SELECT found_at FROM blocks WHERE hash = $1", block_hash)
        await proxy_db.ensure_share_partitions(conn, (found_at - timedelta(days=1)).date(), 3)
        workers = ["carol.a", "alice.b", "bob.c", "alice.b", "alice.b"]  # oldest first, difficulty 1 each
        rows = [
            (found_at - timedelta(seconds=10 - k), w, "ltc-solo", "j", 1.0, 1.5, "accepted", None)
            for k, w in enumerate(workers)
        ]
        rows.append(
            (found_at + timedelta(seconds=1), "dave.rig1", "ltc-solo", "j", 1.0, 1.5, "accepted", None)
        )
        await conn.copy_records_to_table("shares", records=rows, columns=proxy_db.SHARE_COLUMNS[:8])

        report = await _run(pool, config, node)
        assert report.settled.found == [block_hash], report.summary()
        after_fee = Fraction(reward) * Fraction(99, 100)
        expected = {"alice": after_fee * 3 / Fraction(9, 2), "bob": after_fee / Fraction(9, 2)}
        expected["carol"] = after_fee * Fraction(1, 2) / Fraction(9, 2)  # the share the boundary crosses
        for account, exact in expected.items():
            assert abs(await balance(conn, account, "immature", DOGE) - exact) <= 1, account
        assert await balance(conn, "dave", "immature", DOGE) == 0  # his share came after the block
        total = "SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE coin = $1"
        assert await conn.fetchval(total, DOGE) == 0
    finally:
        await pool.close()
        await conn.close()


def test_doge_maturity_defaults_to_the_coins_own() -> None:
    def maturity(network: str, **keys: Any) -> int:
        coin = {"network": network} | keys
        return load_section(PayoutsConfig, {"coins": {DOGE: coin}}, "payouts").coin(DOGE).maturity_of(DOGE)

    assert (maturity("main"), maturity("test"), maturity("regtest")) == (240, 240, 60)
    assert maturity("main", maturity=300) == 300
    ltc = load_section(PayoutsConfig, {"coins": {"LTC": {"network": "regtest"}}}, "payouts").coin("LTC")
    assert ltc.maturity_of("LTC") == 100
    with pytest.raises(ConfigError) as err:
        load_section(PayoutsConfig, {"coins": {"XMY": {}}}, "payouts")
    assert "payouts.coins.XMY.maturity" in str(err.value) and "coinbase maturity" in str(err.value)


async def test_a_solo_coin_without_its_daemon_is_refused_even_with_no_send() -> None:
    args = argparse.Namespace(
        section={"coins": {DOGE: {"network": "regtest"}}},
        payouts_command="run",
        coin=[DOGE],
        every=None,
        no_send=True,
        dsn="postgresql://unused",
        database=None,
    )
    with pytest.raises(ConfigError) as err:
        await payouts.cli.main(args)
    assert "payouts.coins.DOGE.rpc_url" in str(err.value) and "settles its blocks" in str(err.value)


def test_pps_on_doge_needs_dogecoins_subsidy_schedule() -> None:
    with pytest.raises(ConfigError) as err:
        load_section(PayoutsConfig, {"coins": {DOGE: {"mode": "pool", "scheme": "pps"}}}, "payouts")
    assert "payouts.coins.DOGE.halving_interval" in str(err.value) and "initial_subsidy" in str(err.value)
    keys = {"mode": "pool", "scheme": "fpps", "initial_subsidy": 10000.0, "halving_interval": 10**9}
    doge = load_section(PayoutsConfig, {"coins": {DOGE: keys}}, "payouts").coin(DOGE)
    assert doge.subsidy(5_000_000) == 10_000 * 10**8
