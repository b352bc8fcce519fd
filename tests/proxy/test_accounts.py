"""Accounts required (proxy.require_accounts): a worker named ACCOUNT.RIG mines when ACCOUNT is a
payout address of the upstream's coin or a registered user name; any other name is refused with a
client.show_message saying why. Off (the default), any printable name mines as before."""

import asyncpg

from payouts import db
from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer

ADDRESS = "LKh8pxsZwbSEz9PUbMUx1NX26eWsPprcsz"  # mainnet P2PKH (shared vectors): the pool upstream's chain


async def test_only_addresses_and_registered_names_mine_when_accounts_are_required(
    pool: PoolServer, make_proxy, miners, pg_dsn: str
) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await db.register(conn, "alice", None, "0" * 64, {"LTC": ADDRESS})
    finally:
        await conn.close()
    proxy = await make_proxy([pool_upstream(pool, "p1")], dsn=pg_dsn, require_accounts=True)
    await wait_for(lambda: "alice" in proxy._accounts, "the registered accounts")
    miner = await miners(proxy.ports["tcp"])
    await miner.subscribe()
    assert (await miner.authorize(f"{ADDRESS}.rig1")).result is True
    assert (await miner.authorize(ADDRESS)).result is True  # .RIG is optional
    assert (await miner.authorize("alice.rig2+default")).result is True  # a profile suffix is no part of it
    assert (await miner.authorize("nobody.rig1")).result is False
    assert (await miner.authorize(ADDRESS[:-1] + "t.rig1")).result is False  # a mistyped address
    await wait_for(
        lambda: len([n for n in miner.notifications if n.method == "client.show_message"]) >= 2, "the reasons"
    )
    shown = [n.params[0] for n in miner.notifications if n.method == "client.show_message"]
    assert any(
        "'nobody' is neither a litecoin mainnet payout address nor a registered user name" in s for s in shown
    ), shown
    assert any(ADDRESS[:-1] + "t" in s for s in shown), shown


async def test_any_name_mines_when_accounts_are_not_required(pool: PoolServer, make_proxy, miners) -> None:
    proxy = await make_proxy([pool_upstream(pool, "p1")])
    miner = await miners(proxy.ports["tcp"])
    await miner.subscribe()
    assert (await miner.authorize("nobody.rig1")).result is True
    assert not [n for n in miner.notifications if n.method == "client.show_message"]
