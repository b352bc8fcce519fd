"""The operator's bans (table `bans`, set from the dashboard's admin page) through a real proxy:
a banned worker or account is refused at authorize and its connection closed, a banned IP is
refused at connect; lifting the ban lets them in again. Plus the pure matching rules."""

import asyncio

import asyncpg
import pytest

from proxy.bans import BanList
from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer

POLL_S = 0.2


def test_a_name_without_a_dot_bans_the_whole_account() -> None:
    bans = BanList.of([("worker", "mallory"), ("worker", "alice.rig2"), ("ip", "10.0.0.1"), ("other", "x")])
    assert bans.refuses_worker("mallory") and bans.refuses_worker("mallory.rig9")
    assert bans.refuses_worker("alice.rig2") and not bans.refuses_worker("alice.rig1")
    assert not bans.refuses_worker("alice") and not bans.refuses_worker("malloryx.rig1")
    assert bans.refuses_ip("10.0.0.1") and not bans.refuses_ip("10.0.0.2")


async def test_banned_worker_and_ip_are_refused_and_unbanned_ones_accepted(
    pool: PoolServer, make_proxy, miners, pg_dsn: str
) -> None:
    proxy = await make_proxy([pool_upstream(pool, "p1")], dsn=pg_dsn, bans_poll_s=POLL_S)
    conn = await asyncpg.connect(pg_dsn)
    try:
        online = await miners(proxy.ports["tcp"])
        await online.subscribe()
        assert (await online.authorize("mallory.rig1", "x")).result is True

        ban_id = await conn.fetchval(
            "INSERT INTO bans (kind, value, reason) VALUES ('worker', 'mallory', 'test') RETURNING id"
        )
        await wait_for(lambda: proxy.operator_bans.refuses_worker("mallory"), "the ban to be polled")
        # Already connected: closed. A new connection: refused at authorize, for every rig of the account.
        await wait_for(online.closed.is_set, "the banned worker's connection to close")
        miner = await miners(proxy.ports["tcp"])
        await miner.subscribe()
        assert (await miner.authorize("mallory.rig1", "x")).result is False
        assert (await miner.authorize("mallory.rig2", "x")).result is False
        assert (await miner.authorize("alice.rig1", "x")).result is True

        await conn.execute("DELETE FROM bans WHERE id = $1", ban_id)
        await wait_for(
            lambda: not proxy.operator_bans.refuses_worker("mallory"), "the lifted ban to be polled"
        )
        assert (await miner.authorize("mallory.rig1", "x")).result is True

        # An IP ban closes what is connected from it and refuses new connections.
        await conn.execute("INSERT INTO bans (kind, value) VALUES ('ip', '127.0.0.1')")
        await wait_for(lambda: proxy.operator_bans.refuses_ip("127.0.0.1"), "the IP ban to be polled")
        await wait_for(miner.closed.is_set, "the banned IP's connection to close")
        refused = await miners(proxy.ports["tcp"])
        with pytest.raises(ConnectionError):
            await refused.subscribe()
        await asyncio.wait_for(refused.closed.wait(), 5)

        # An expired ban is no ban.
        await conn.execute("UPDATE bans SET expires_at = now() - interval '1 second' WHERE kind = 'ip'")
        await wait_for(lambda: not proxy.operator_bans.refuses_ip("127.0.0.1"), "the expired ban to lapse")
        again = await miners(proxy.ports["tcp"])
        await again.subscribe()
        assert (await again.authorize("alice.rig3", "x")).result is True
    finally:
        await conn.close()
