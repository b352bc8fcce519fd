"""The dashboard's read endpoints and bans over HTTP, on shares written as the proxy writes them
(COPY into `shares`; the rollup trigger fills the buckets) and rows of the other tables."""

from datetime import UTC, datetime, timedelta

import asyncpg

from proxy import db as proxy_db
from tests.api.conftest import AUTH, ClientFactory, FakeClock
from tests.api.test_openapi import _validator


def _documented(path: str, body: object) -> None:
    """`body` (an answer with data in it) is valid against the OpenAPI document."""
    errors = [e.message for e in _validator(path, "get", 200, "application/json").iter_errors(body)]
    assert not errors, (path, errors)

COLUMNS = ("ts", "worker", "upstream", "job_id", "difficulty", "share_diff", "result", "reason")


async def _fill(conn: asyncpg.Connection, now: datetime) -> None:
    await proxy_db.ensure_share_partitions(conn, (now - timedelta(days=2)).date(), 3)
    rows = []
    for minutes in range(0, 120, 2):  # alice.rig1: a share of difficulty 64 every 2 minutes for 2 h
        rows.append(
            (
                now - timedelta(minutes=minutes, seconds=1),
                "alice.rig1",
                "pool-a",
                "j",
                64.0,
                70.0,
                "accepted",
                None,
            )
        )
    rows.append(
        (now - timedelta(minutes=3), "alice.rig1", "pool-a", "j", 64.0, None, "rejected", "low difficulty")
    )
    rows.append((now - timedelta(minutes=4), "alice.rig2", "pool-a", "j", 32.0, 40.0, "accepted", None))
    rows.append((now - timedelta(minutes=5), "alice.rig2", "pool-a", "j", 32.0, None, "stale", "stale job"))
    # The same reason under two results: counted together per reason.
    rows.append(
        (now - timedelta(minutes=6), "alice.rig2", "pool-a", "j", 32.0, None, "rejected", "stale job")
    )
    rows.append((now - timedelta(days=3), "bob.x", "pool-b", "j", 8.0, 9.0, "accepted", None))  # too old
    await conn.copy_records_to_table("shares", records=rows, columns=COLUMNS)
    await proxy_db.add_worker_totals(
        conn,
        [
            ("alice.rig1", 60, 1, 0, now - timedelta(seconds=1), None, None),
            ("alice.rig2", 1, 0, 1, now - timedelta(minutes=4), None, None),
            ("alice.rig3", 0, 0, 0, now - timedelta(days=5), None, None),
            ("bob.x", 1, 0, 0, now - timedelta(days=3), None, None),
        ],
    )
    await conn.execute(
        "INSERT INTO blocks (coin, height, hash, worker, status) VALUES"
        " ('LTC', 1, repeat('a', 64), 'alice.rig1', 'pending'),"
        " ('LTC', 2, repeat('b', 64), 'alice.rig1', 'accepted'),"
        " ('LTC', 3, repeat('c', 64), 'alice.rig1', 'accepted')"
    )
    await proxy_db.insert_upstream_event(conn, "pool-a", "up", {})
    await proxy_db.insert_upstream_event(conn, "pool-b", "up", {})
    await proxy_db.insert_upstream_event(conn, "pool-b", "down", {})
    await proxy_db.insert_upstream_event(conn, "pool-a", "failover", {"from": "pool-b", "to": "pool-a"})
    await proxy_db.insert_switch_event(conn, "default", 3, "pool-b", "pool-a", "more profitable", 7.5)


async def test_pool_and_account_pages_show_what_the_database_holds(
    pg_dsn: str, pg_conn: asyncpg.Connection, make_client: ClientFactory
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await _fill(pg_conn, now)
    client = await make_client(pg_dsn, clock=FakeClock(now))

    response = await client.get("/v1/overview")
    assert response.status == 200
    body = await response.json()
    _documented("/v1/overview", body)
    # The last hour: 30 accepted shares of 64 on rig1 (one every 2 minutes; edges by bucket) + 32 on rig2.
    hour = await pg_conn.fetchval(
        "SELECT sum(difficulty) FROM shares WHERE result = 'accepted' AND ts >= date_bin('5 minutes',"
        " $1::timestamptz, TIMESTAMPTZ 'epoch') + interval '5 minutes' - interval '1 hour'",
        now,
    )
    assert body["hashrate_1h_hs"] > 0
    assert abs(body["hashrate_1h_hs"] - hour * 65536 / 3600) / body["hashrate_1h_hs"] < 0.1
    assert (body["workers_online"], body["miners_online"]) == (2, 1)
    shares = {(s["result"], s["reason"]): s["shares"] for s in body["shares_24h"]}
    assert shares == {
        ("accepted", ""): 61,
        ("rejected", "low difficulty"): 1,
        ("stale", "stale job"): 1,
        ("rejected", "stale job"): 1,
    }
    assert body["blocks"] == {"pending": 1, "accepted": 2}
    assert {u["upstream"]: u["event"] for u in body["upstreams"]} == {"pool-a": "failover", "pool-b": "down"}
    assert [f["event"] for f in body["failovers"]] == ["failover"]
    assert body["switches"][0]["to_upstream"] == "pool-a"
    etag = response.headers["ETag"]
    assert (await client.get("/v1/overview", headers={"If-None-Match": etag})).status == 304

    series = await (await client.get("/v1/hashrate?window=24h")).json()
    _documented("/v1/hashrate", series)
    assert series["step_s"] == 900
    assert sum(p["accepted"] for p in series["points"]) == 61
    total = sum(p["hashrate_hs"] * 900 / 65536 for p in series["points"])
    assert abs(total - (60 * 64 + 32)) < 1e-6

    workers = await (await client.get("/v1/accounts/alice/workers")).json()
    _documented("/v1/accounts/{account}/workers", workers)
    by_name = {w["name"]: w for w in workers["items"]}
    assert list(by_name) == ["alice.rig1", "alice.rig2", "alice.rig3"]
    assert (by_name["alice.rig1"]["accepted"], by_name["alice.rig1"]["rejected"]) == (60, 1)
    assert by_name["alice.rig1"]["rejected_by_reason"] == {"low difficulty": 1}
    assert by_name["alice.rig2"]["rejected_by_reason"] == {"stale job": 2}
    assert by_name["alice.rig3"]["accepted"] == 0 and by_name["alice.rig3"]["hashrate_hs"] == 0
    page = await (await client.get("/v1/accounts/alice/workers?limit=2")).json()
    assert [w["name"] for w in page["items"]] == ["alice.rig1", "alice.rig2"]
    rest = await (await client.get(f"/v1/accounts/alice/workers?limit=2&after={page['next_after']}")).json()
    assert [w["name"] for w in rest["items"]] == ["alice.rig3"] and rest["next_after"] is None

    account = await (await client.get("/v1/accounts/alice/hashrate?window=1h")).json()
    _documented("/v1/accounts/{account}/hashrate", account)
    assert all(p["ts"].endswith("+00:00") for w in account["workers"] for p in w["points"])
    assert {w["worker"] for w in account["workers"]} == {"alice.rig1", "alice.rig2"}
    summed = sum(p["hashrate_hs"] for p in account["total"])
    assert abs(summed - sum(p["hashrate_hs"] for w in account["workers"] for p in w["points"])) < 1e-6
    nobody = await (await client.get("/v1/accounts/nobody/workers")).json()
    assert nobody["items"] == []


async def test_bans_need_the_token_and_round_trip(pg_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(pg_dsn)
    assert (await client.get("/v1/bans")).status == 401
    assert (await client.post("/v1/bans", json={"kind": "ip", "value": "1.2.3.4"})).status == 401
    bad = await client.post("/v1/bans", json={"kind": "ip", "value": "not-an-ip"}, headers=AUTH)
    assert bad.status == 400
    assert (await bad.json())["invalid-params"][0]["name"] == "value"
    made = await client.post(
        "/v1/bans", json={"kind": "worker", "value": "mallory", "reason": "abuse"}, headers=AUTH
    )
    assert made.status == 201
    ban = await made.json()
    assert (ban["kind"], ban["value"], ban["reason"], ban["expires_at"]) == (
        "worker",
        "mallory",
        "abuse",
        None,
    )
    timed = await (
        await client.post("/v1/bans", json={"kind": "ip", "value": "::1", "expires_in_s": 60}, headers=AUTH)
    ).json()
    assert timed["expires_at"] is not None
    listed = await (await client.get("/v1/bans", headers=AUTH)).json()
    assert [b["value"] for b in listed["items"]] == ["mallory", "::1"]
    assert (await client.delete(f"/v1/bans/{ban['id']}", headers=AUTH)).status == 204
    assert (await client.delete(f"/v1/bans/{ban['id']}", headers=AUTH)).status == 404
    listed = await (await client.get("/v1/bans", headers=AUTH)).json()
    assert [b["value"] for b in listed["items"]] == ["::1"]
