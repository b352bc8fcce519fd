"""Authorization by token (config and the workers table) and a pool's client.reconnect."""

import hashlib

import asyncpg

from mining import stratum
from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer


async def test_token_mode_accepts_config_and_database_tokens(pool: PoolServer, make_proxy, miners,
                                                             pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("INSERT INTO workers (name, token_hash) VALUES ('rig-db', $1)",
                           hashlib.sha256(b"db-secret").hexdigest())
    finally:
        await conn.close()
    proxy = await make_proxy([pool_upstream(pool, "p1")], dsn=pg_dsn, auth_mode="tokens",
                             tokens=["config-secret"])
    await wait_for(lambda: len(proxy._token_hashes) == 2, "the workers table tokens")
    miner = await miners(proxy.ports["tcp"])
    await miner.subscribe()
    assert (await miner.authorize("rig1", "config-secret")).result is True
    assert (await miner.authorize("rig2", "db-secret,d=0.5")).result is True
    assert (await miner.authorize("rig3", "guess")).result is False
    assert (await miner.authorize("", "config-secret")).result is False  # no worker name
    r = await miner.call("mining.submit", ["rig3", "1", "0000", "00000000", "00000000"])
    assert r.error[0] == stratum.UNAUTHORIZED


async def test_pool_client_reconnect_is_followed(pool: PoolServer, make_proxy) -> None:
    proxy = await make_proxy([pool_upstream(pool, "p1")])
    other = PoolServer()
    await other.start()
    try:
        upstream = proxy.upstream("p1")
        assert pool.connections == 1
        pool.broadcast(stratum.notify("client.reconnect", ["127.0.0.1", other.port, 0]))
        await wait_for(lambda: other.connections == 1 and upstream.healthy, "the move to the new address")
        assert upstream.port == other.port
        assert other.authorized_users == ["acct.p1"]
    finally:
        await other.stop()
