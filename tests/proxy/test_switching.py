"""Profile-based switching in the proxy: decisions move a profile's miners, and only theirs.

The decisions come from a real HTTP server speaking the decision API's `/v1/decisions` format
(with ETags); the API itself is tested in tests/api against PostgreSQL.
"""

import asyncio
from dataclasses import replace

import asyncpg
from aiohttp import web

from proxy.config import SwitchingConfig
from tests.proxy.conftest import pool_upstream, wait_for
from tests.stratum_peers import PoolServer


class DecisionServer:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, object]] = {}
        self.version = 0
        self.requests = 0
        self.not_modified = 0
        self.down = False
        self.runner: web.AppRunner | None = None
        self.url = ""

    def decide(self, profile: str, coin: str, pool: str, reason: str = "test") -> None:
        self.items[profile] = {"profile": profile, "choice": {"coin": coin, "pool": pool,
                                                              "stratum_url": None, "endpoints": []},
                               "reason": reason, "margin_pct": 12.5, "stale": False}
        self.version += 1

    async def handler(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.down:
            return web.Response(status=503)
        etag = f'W/"{self.version}"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.json_response({"items": list(self.items.values())}, headers={"ETag": etag})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/decisions", self.handler)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def test_decisions_move_only_the_profiles_miners(make_proxy, miners, pg_dsn: str) -> None:
    ltc, doge = PoolServer(), PoolServer()
    await ltc.start()
    await doge.start()
    api = DecisionServer()
    api.decide("maxusd", "LTC", "ltc-pool")
    api.decide("fixed", "LTC", "ltc-pool")
    await api.start()
    try:
        upstreams = [pool_upstream(ltc, "ltc-pool", priority=0),
                     replace(pool_upstream(doge, "doge-pool", priority=1), coin="DOGE")]
        proxy = await make_proxy(upstreams, dsn=pg_dsn,
                                 switching=SwitchingConfig(api_url=api.url, poll_s=0.3, stagger_miners=1,
                                                           stagger_interval_s=0.05))
        await wait_for(lambda: proxy.upstream("doge-pool").healthy, "doge pool")
        await wait_for(lambda: "maxusd" in proxy.router.routes, "the first decisions")

        chaser = await miners(proxy.ports["tcp"])
        await chaser.subscribe()
        await chaser.authorize("w1+maxusd", "d=0.001")
        pinned = await miners(proxy.ports["tcp"])
        await pinned.subscribe()
        await pinned.authorize("w2", "x,profile=fixed,d=0.001")
        stranger = await miners(proxy.ports["tcp"])
        await stranger.subscribe()
        await stranger.authorize("w3+nosuchprofile")
        await wait_for(lambda: any(n.method == "client.show_message" for n in stranger.notifications),
                       "the unknown-profile message")
        assert "unknown profile 'nosuchprofile'" in next(n for n in stranger.notifications
                                                     if n.method == "client.show_message").params[0]

        ltc_en1 = proxy.upstream("ltc-pool").extranonce1
        assert chaser.extranonce1[:4] == ltc_en1 and pinned.extranonce1[:4] == ltc_en1
        assert (await chaser.mine_one("w1+maxusd")).result is True
        old_job = chaser.jobs[-1]

        api.decide("maxusd", "DOGE", "doge-pool", reason="DOGE pays 12.5 % more")
        doge_en1 = proxy.upstream("doge-pool").extranonce1
        await wait_for(lambda: chaser.extranonce1[:4] == doge_en1, "the maxusd miner to move", timeout=5)
        assert pinned.extranonce1[:4] == ltc_en1  # the fixed profile stays
        assert stranger.extranonce1[:4] == ltc_en1  # default profile: no decision, no move
        assert not chaser.closed.is_set()

        # a share for the old upstream's job, inside the grace window, still reaches the old pool
        before = len(ltc.submissions)
        en2 = b"\x00\x05"
        old_extranonce1 = ltc_en1 + chaser.extranonce1[4:]  # the prefix is kept on a move
        chaser_en1, chaser.extranonce1 = chaser.extranonce1, old_extranonce1
        nonce = await asyncio.to_thread(chaser.find_share, old_job, en2)
        chaser.extranonce1 = chaser_en1
        assert (await chaser.submit("w1+maxusd", old_job, en2, nonce)).result is True
        await wait_for(lambda: len(ltc.submissions) > before, "the grace-window share at the old pool")

        chaser.jobs = [j for j in chaser.jobs if j.job.job_id != old_job.job.job_id]
        assert (await chaser.mine_one("w1+maxusd", extranonce2=b"\x00\x06")).result is True
        await wait_for(lambda: any(s.accepted for s in doge.submissions), "a share at the DOGE pool")

        async def events() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(pg_dsn)
            try:
                return await conn.fetch("SELECT * FROM switch_events WHERE profile = 'maxusd'")
            finally:
                await conn.close()

        rows: list[asyncpg.Record] = []
        for _ in range(50):
            rows = await events()
            if rows:
                break
            await asyncio.sleep(0.1)
        assert len(rows) == 1
        row = rows[0]
        assert (row["from_upstream"], row["to_upstream"], row["worker_count"]) == ("ltc-pool", "doge-pool", 1)
        assert row["reason"] == "DOGE pays 12.5 % more" and row["expected_gain_pct"] == 12.5
        assert proxy.metrics.switches.labels("maxusd")._value.get() == 1
        # unchanged decisions cost a 304
        await asyncio.sleep(0.8)
        assert api.not_modified >= 1

        # the API goes away: the last decision stays in force
        api.down = True
        await wait_for(lambda: proxy.decisions.failures >= 2, "failed polls")
        assert proxy.router.routes["maxusd"].active == "doge-pool"
        assert chaser.extranonce1[:4] == doge_en1
    finally:
        await api.stop()
        await ltc.stop()
        await doge.stop()
