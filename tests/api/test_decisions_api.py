"""Decisions over HTTP: what is chosen and why, ETags, dwell across restarts, stale data, NOTIFY.

Every test moves one shared clock forward and puts a new profitability run at that time, so
the tests can run in any order on the module's database.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from api.app import DECIDER
from api.config import ApiConfig
from api.decider import utcnow
from qscrypt.db.migrate import migrate
from tests.api.conftest import AUTH, ClientFactory, FakeClock
from tests.api.market import MERGED_NET, TWOMINERS_NET, new_run

POOLS_ONLY = {"strategy": "max_usd", "allow_pools": ["merged-ltc-doge", "2miners-ltc"]}


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def notifications(market_dsn: str) -> AsyncIterator[asyncio.Queue[str]]:
    """Payloads arriving on channel qscrypt_decisions."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(market_dsn)
    await conn.add_listener("qscrypt_decisions", lambda *args: queue.put_nowait(args[3]))
    yield queue
    await conn.close()


async def announced(queue: asyncio.Queue[str], name: str) -> None:
    """Wait for a NOTIFY about profile `name` (others' first choices may come before it)."""
    while await asyncio.wait_for(queue.get(), 5) != name:
        pass


def silent(queue: asyncio.Queue[str], name: str) -> bool:
    """True when nothing about `name` is waiting in the queue (drains it)."""
    payloads = []
    while not queue.empty():
        payloads.append(queue.get_nowait())
    return name not in payloads


async def fresh_market(pg_conn: asyncpg.Connection, clock: FakeClock, **changes: dict) -> None:
    clock.advance(1)
    await new_run(pg_conn, clock.now, **changes)


async def decision(client, name: str, status: int = 200) -> dict:
    response = await client.get(f"/v1/decisions/{name}")
    body = await response.json(content_type=None)
    assert response.status == status, body
    return body


async def create(client, name: str, body: dict) -> None:
    response = await client.post("/v1/profiles", json={"name": name, **body}, headers=AUTH)
    assert response.status == 201, await response.text()


async def test_a_decision_says_what_to_mine_and_why(
    market_dsn: str,
    make_client: ClientFactory,
    clock: FakeClock,
    pg_conn: asyncpg.Connection,
    notifications: asyncio.Queue[str],
) -> None:
    await fresh_market(pg_conn, clock)
    client = await make_client(market_dsn, clock=clock)
    await create(client, "why", POOLS_ONLY)
    await announced(notifications, "why")

    d = await decision(client, "why")
    choice = d["choice"]
    assert (choice["coin"], choice["pool"], choice["stratum_url"]) == (
        "LTC",
        "merged-ltc-doge",
        "stratum+tcp://merged.example:3333",
    )
    # Merged mining counts LTC and DOGE: (0.11749 + 2.12342) · 0.98 = 2.19608 USD/day.
    assert d["expected_usd_per_day_net"] == pytest.approx(MERGED_NET)
    assert [p["coin"] for p in choice["payouts"]] == ["LTC", "DOGE"]
    assert (d["runner_up"]["pool"], d["runner_up"]["usd_per_day_net"]) == (
        "2miners-ltc",
        pytest.approx(TWOMINERS_NET),
    )
    assert d["margin_usd_per_day"] == pytest.approx(MERGED_NET - TWOMINERS_NET)  # 2.07977
    assert d["margin_pct"] == pytest.approx((MERGED_NET / TWOMINERS_NET - 1) * 100)  # 1788.1 %
    assert (d["stale"], d["data_age_s"], d["held_s"], d["max_data_age_s"]) == (False, 0.0, 0.0, 1800.0)
    assert d["reason"] == "first choice: LTC on merged-ltc-doge at 2.1961 USD/day net"

    row = await pg_conn.fetchrow("SELECT * FROM decisions WHERE profile = 'why'")
    assert (row["coin"], row["pool"], row["stratum_url"], row["decided_at"]) == (
        "LTC",
        "merged-ltc-doge",
        "stratum+tcp://merged.example:3333",
        clock.now,
    )
    assert row["usd_per_day_net"] == pytest.approx(MERGED_NET)

    listed = await (await client.get("/v1/decisions")).json()
    assert "why" in [item["profile"] for item in listed["items"]]


async def test_etag_answers_304_until_the_decision_changes(
    market_dsn: str, make_client: ClientFactory, clock: FakeClock, pg_conn: asyncpg.Connection
) -> None:
    await fresh_market(pg_conn, clock)
    client = await make_client(market_dsn, clock=clock)
    await create(client, "etag", POOLS_ONLY)
    first = await client.get("/v1/decisions/etag")
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    unchanged = await client.get("/v1/decisions/etag", headers={"If-None-Match": etag})
    assert (unchanged.status, unchanged.headers["ETag"], await unchanged.read()) == (304, etag, b"")
    # Time alone changes nothing the validator covers.
    clock.advance(5)
    await client.app[DECIDER].refresh()
    assert (await client.get("/v1/decisions/etag", headers={"If-None-Match": etag})).status == 304
    every = await client.get("/v1/decisions")
    assert (await client.get("/v1/decisions", headers={"If-None-Match": every.headers["ETag"]})).status == 304
    # New prices: DOGE halves, the figures change, and so does the validator.
    await fresh_market(pg_conn, clock, prices={"DOGE": 0.19})
    await client.app[DECIDER].refresh()
    changed = await client.get("/v1/decisions/etag", headers={"If-None-Match": etag})
    assert changed.status == 200
    assert changed.headers["ETag"] != etag


async def test_dwell_and_threshold_hold_across_a_restart_then_it_switches(
    market_dsn: str,
    make_client: ClientFactory,
    clock: FakeClock,
    pg_conn: asyncpg.Connection,
    notifications: asyncio.Queue[str],
) -> None:
    await fresh_market(pg_conn, clock)
    client = await make_client(market_dsn, clock=clock)
    await create(client, "dwell", POOLS_ONLY)
    await announced(notifications, "dwell")
    chosen_at = clock.now

    # DOGE worthless and the merged pool's fee at 10 %: merged pays 0.117486 · 0.9 = 0.105738,
    # 2miners 0.116311, which beats it by 10.0 %: over the 5 % threshold, but held only 60 s.
    clock.advance(59)
    await fresh_market(pg_conn, clock, prices={"DOGE": 0.0}, fees={"merged-ltc-doge": 10.0})
    await client.app[DECIDER].refresh()
    d = await decision(client, "dwell")
    assert (d["choice"]["pool"], d["held_s"]) == ("merged-ltc-doge", 60.0)
    until = (chosen_at + timedelta(seconds=600)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert d["reason"] == (
        f"LTC on 2miners-ltc beats LTC on merged-ltc-doge by 10.00 %, but LTC on merged-ltc-doge is held "
        f"until {until} (600 s minimum): keeping LTC on merged-ltc-doge"
    )
    assert d["margin_pct"] == pytest.approx((0.1174863427877426 * 0.9 / TWOMINERS_NET - 1) * 100)  # -9.09 %

    # A restart: a new process reads the held choice and when it was made from the table.
    await client.close()
    client = await make_client(market_dsn, clock=clock)
    d = await decision(client, "dwell")
    assert (d["choice"]["pool"], d["since"], d["held_s"]) == ("merged-ltc-doge", chosen_at.isoformat(), 60.0)

    # Ten minutes on: the dwell is over. At a 3 % fee the merged pool pays 0.113962, which
    # 2miners beats by only 2.06 %: under the threshold, kept.
    clock.advance(540)
    await fresh_market(pg_conn, clock, prices={"DOGE": 0.0}, fees={"merged-ltc-doge": 3.0})
    await client.app[DECIDER].refresh()
    d = await decision(client, "dwell")
    assert d["choice"]["pool"] == "merged-ltc-doge"
    assert "by 2.06 %, under the 5 % threshold" in d["reason"]
    assert silent(notifications, "dwell")

    # Back to 10 %: 10.0 % better after 601 s held. It moves, persists and announces it.
    await fresh_market(pg_conn, clock, prices={"DOGE": 0.0}, fees={"merged-ltc-doge": 10.0})
    await client.app[DECIDER].refresh()
    await announced(notifications, "dwell")
    d = await decision(client, "dwell")
    assert (d["choice"]["pool"], d["choice"]["stratum_url"], d["held_s"]) == (
        "2miners-ltc",
        "stratum+tcp://ltc.2miners.com:8080",
        0.0,
    )
    assert d["reason"].startswith(
        "LTC on 2miners-ltc beats LTC on merged-ltc-doge by 10.00 % (threshold 5 %)"
    )
    row = await pg_conn.fetchrow("SELECT pool, gain_pct, decided_at FROM decisions WHERE profile = 'dwell'")
    assert (row["pool"], row["decided_at"]) == ("2miners-ltc", clock.now)
    assert row["gain_pct"] == pytest.approx((TWOMINERS_NET / (0.1174863427877426 * 0.9) - 1) * 100)  # 10.0 %


async def test_stale_data_keeps_the_choice_and_says_so(
    market_dsn: str,
    make_client: ClientFactory,
    clock: FakeClock,
    pg_conn: asyncpg.Connection,
    notifications: asyncio.Queue[str],
) -> None:
    await fresh_market(pg_conn, clock)
    client = await make_client(market_dsn, clock=clock)
    await create(client, "stale", POOLS_ONLY)
    await announced(notifications, "stale")
    # No new run for 1801 s. Even before the next pass, the answer must not look fresh.
    clock.advance(1801)
    d = await decision(client, "stale")
    assert (d["stale"], d["data_age_s"], d["choice"]["pool"]) == (True, 1801.0, "merged-ltc-doge")
    assert d["reason"].endswith("is older than 1800 s: keeping LTC on merged-ltc-doge")
    # Then a pass on stale data that would have moved on fresh data: it keeps, and tells nobody.
    await pg_conn.execute(
        "UPDATE profitability SET inputs = jsonb_set(inputs, '{coins,DOGE,price_usd}', '0')"
        " WHERE computed_at = (SELECT max(computed_at) FROM profitability)"
    )
    await client.app[DECIDER].refresh()
    d = await decision(client, "stale")
    assert (d["stale"], d["choice"]["pool"]) == (True, "merged-ltc-doge")
    ready = await (await client.get("/readyz")).json()
    assert ready["data"]["scrypt"]["stale"] is True
    assert silent(notifications, "stale")


async def test_a_profile_pinned_elsewhere_moves_at_once_and_one_gone_has_no_decision(
    market_dsn: str, make_client: ClientFactory, clock: FakeClock, pg_conn: asyncpg.Connection
) -> None:
    await fresh_market(pg_conn, clock)
    client = await make_client(market_dsn, clock=clock)
    await create(client, "pin", POOLS_ONLY)
    fixed = {"strategy": "fixed", "params": {"coin": "LTC", "pool": "2miners-ltc"}}
    assert (await client.put("/v1/profiles/pin", json=fixed, headers=AUTH)).status == 200
    d = await decision(client, "pin")
    assert (d["choice"]["pool"], d["runner_up"]) == ("2miners-ltc", None)
    assert d["reason"] == "pinned to LTC on 2miners-ltc by the profile: moving"
    # A pin is an instruction, not an estimate: a pool the market data does not have is pinned all
    # the same (the proxy finds it among its upstreams by name), without figures.
    gone = {"strategy": "fixed", "params": {"coin": "LTC", "pool": "closed-pool"}}
    assert (await client.put("/v1/profiles/pin", json=gone, headers=AUTH)).status == 200
    d = await decision(client, "pin")
    assert (d["choice"]["pool"], d["choice"]["usd_per_day_net"], d["choice"]["stratum_url"]) == (
        "closed-pool",
        None,
        None,
    )
    assert d["reason"] == "pinned to LTC on closed-pool by the profile: moving"
    assert (await client.delete("/v1/profiles/pin", headers=AUTH)).status == 204
    await decision(client, "pin", 404)
    assert await pg_conn.fetchval("SELECT count(*) FROM decisions WHERE profile = 'pin'") == 0


async def test_a_fixed_profile_pins_before_the_aggregator_ever_ran(
    pg_empty_dsn: str, make_client: ClientFactory, clock: FakeClock
) -> None:
    await migrate(pg_empty_dsn)
    client = await make_client(pg_empty_dsn, clock=clock)
    fixed = {"strategy": "fixed", "params": {"coin": "LTC", "pool": "2miners-ltc"}}
    assert (await client.put("/v1/profiles/pinned", json=fixed, headers=AUTH)).status == 201
    d = await decision(client, "pinned")
    assert (d["choice"]["coin"], d["choice"]["pool"], d["data_as_of"]) == ("LTC", "2miners-ltc", None), d
    assert d["reason"] == "pinned to LTC on 2miners-ltc by the profile: moving"
    # Other strategies still wait for data.
    assert (await client.put("/v1/profiles/greedy", json={"strategy": "max_usd"}, headers=AUTH)).status == 201
    d = await decision(client, "greedy")
    assert d["choice"] is None and d["stale"] is True, d


async def test_a_profile_made_by_another_process_is_decided_on_first_request(
    market_dsn: str, make_client: ClientFactory, clock: FakeClock, pg_conn: asyncpg.Connection
) -> None:
    await fresh_market(pg_conn, clock)
    client = await make_client(market_dsn, clock=clock)
    await pg_conn.execute(
        "INSERT INTO profiles (name, strategy, params) VALUES ('elsewhere', 'max_coin', $1::jsonb)",
        '{"coin": "LTC"}',
    )
    d = await decision(client, "elsewhere")
    assert d["choice"]["pool"] == "merged-ltc-doge"
    await decision(client, "nobody", 404)
    bad = await decision(client, "no%20such", 400)
    assert bad["invalid-params"][0]["name"] == "profile"


async def test_the_decider_runs_by_itself(
    market_dsn: str, make_client: ClientFactory, pg_conn: asyncpg.Connection
) -> None:
    """On the real clock with the background loop: a profile inserted behind the API's back is
    decided within a pass, without any request asking."""
    await new_run(pg_conn, utcnow())
    config = ApiConfig(rate_limit_per_s=0, evaluate_every_s=0.05)
    await make_client(market_dsn, config=config, clock=utcnow, run_decider=True)
    await pg_conn.execute("INSERT INTO profiles (name, strategy) VALUES ('unattended', 'max_usd')")
    for _ in range(100):
        pool = await pg_conn.fetchval("SELECT pool FROM decisions WHERE profile = 'unattended'")
        if pool is not None:
            break
        await asyncio.sleep(0.05)
    assert pool == "merged-ltc-doge"
