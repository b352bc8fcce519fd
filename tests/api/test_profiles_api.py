"""Profiles over HTTP: bearer-token writes, validation naming the field, CRUD."""

import asyncpg
import pytest

from api.config import ApiConfig
from tests.api.conftest import AUTH, ClientFactory
from tests.api.test_read_endpoints import assert_problem

LTC_ONLY = {
    "name": "ltc-only",
    "strategy": "max_coin",
    "params": {"coin": "ltc", "hashrate_hs": 9.4e9},
    "deny_pools": ["nanopool-etc"],
    "max_fee_pct": 1.5,
    "power_cost_kwh": 0.05,
}


async def test_create_read_replace_delete(market_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(market_dsn)
    assert [p["name"] for p in (await (await client.get("/v1/profiles")).json())["items"]] == ["default"]

    created = await client.post("/v1/profiles", json=LTC_ONLY, headers=AUTH)
    assert created.status == 201, await created.text()
    assert created.headers["Location"] == "/v1/profiles/ltc-only"
    body = await created.json()
    assert body["params"] == {"coin": "LTC", "hashrate_hs": 9.4e9}
    assert (body["strategy"], body["max_fee_pct"], body["deny_pools"], body["allow_coins"]) == (
        "max_coin",
        1.5,
        ["nanopool-etc"],
        [],
    )
    # Its decision exists at once: 2miners (1 % fee) is the only LTC pool under the 1.5 % cap.
    decision = await (await client.get("/v1/decisions/ltc-only")).json()
    assert (decision["choice"]["coin"], decision["choice"]["pool"]) == ("LTC", "2miners-ltc")

    again = await client.post("/v1/profiles", json=LTC_ONLY, headers=AUTH)
    assert again.status == 409
    assert_problem(await again.json(), 409)

    replaced = await client.put(
        "/v1/profiles/ltc-only",
        json={"strategy": "fixed", "params": {"coin": "LTC", "pool": "merged-ltc-doge"}},
        headers=AUTH,
    )
    assert replaced.status == 200, await replaced.text()
    assert (await replaced.json())["max_fee_pct"] is None  # PUT replaces the whole profile
    fetched = await (await client.get("/v1/profiles/ltc-only")).json()
    assert fetched["params"] == {"coin": "LTC", "pool": "merged-ltc-doge"}
    # Pinned elsewhere: the profile moves at once, whatever the dwell.
    decision = await (await client.get("/v1/decisions/ltc-only")).json()
    assert decision["choice"]["pool"] == "merged-ltc-doge"

    assert (await client.delete("/v1/profiles/ltc-only", headers=AUTH)).status == 204
    assert (await client.get("/v1/profiles/ltc-only")).status == 404
    assert (await client.get("/v1/decisions/ltc-only")).status == 404
    assert (await client.delete("/v1/profiles/ltc-only", headers=AUTH)).status == 404
    refused = await client.delete("/v1/profiles/default", headers=AUTH)
    assert refused.status == 409
    assert "fall back" in (await refused.json())["detail"]
    # PUT to a name nobody has yet creates the profile (README's example does exactly that).
    created = await client.put("/v1/profiles/nobody", json={"strategy": "max_usd"}, headers=AUTH)
    assert created.status == 201 and created.headers["Location"] == "/v1/profiles/nobody"
    assert (await client.get("/v1/profiles/nobody")).status == 200
    body = {"strategy": "max_usd", "max_fee_pct": 1}
    again = await client.put("/v1/profiles/nobody", json=body, headers=AUTH)
    assert again.status == 200 and (await again.json())["max_fee_pct"] == 1
    assert (await client.delete("/v1/profiles/nobody", headers=AUTH)).status == 204


async def test_writes_need_the_bearer_token(market_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(market_dsn)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}):
        for method, path in (
            ("POST", "/v1/profiles"),
            ("PUT", "/v1/profiles/default"),
            ("DELETE", "/v1/profiles/default"),
        ):
            response = await client.request(method, path, json={"strategy": "max_usd"}, headers=headers)
            assert response.status == 401, (method, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.content_type == "application/problem+json"
    assert [p["name"] for p in (await (await client.get("/v1/profiles")).json())["items"]] == ["default"]


async def test_the_token_can_come_from_the_environment(
    market_dsn: str, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QSCRYPT_API_TOKEN", raising=False)
    client = await make_client(market_dsn, config=ApiConfig(rate_limit_per_s=0))
    refused = await client.put("/v1/profiles/default", json={"strategy": "max_usd"}, headers=AUTH)
    assert refused.status == 401
    assert "no API token is configured" in (await refused.json())["detail"]
    monkeypatch.setenv("QSCRYPT_API_TOKEN", "from-env")
    accepted = await client.put(
        "/v1/profiles/default", json={"strategy": "max_usd"}, headers={"Authorization": "Bearer from-env"}
    )
    assert accepted.status == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "strategy": "max_usd", "colour": "red"}, "colour"),
        ({"name": "x", "strategy": "max_profit"}, "strategy"),
        ({"name": "x"}, "strategy"),
        ({"strategy": "max_usd"}, "name"),
        ({"name": "bad name!", "strategy": "max_usd"}, "name"),
        ({"name": 7, "strategy": "max_usd"}, "name"),
        ({"name": "x", "strategy": "max_usd", "max_fee_pct": "1"}, "max_fee_pct"),
        ({"name": "x", "strategy": "max_usd", "max_fee_pct": 101}, "max_fee_pct"),
        ({"name": "x", "strategy": "max_usd", "min_pool_hashrate": True}, "min_pool_hashrate"),
        ({"name": "x", "strategy": "max_usd", "allow_coins": "LTC"}, "allow_coins"),
        ({"name": "x", "strategy": "max_usd", "deny_coins": ["LTC", 5]}, "deny_coins[1]"),
        ({"name": "x", "strategy": "max_usd", "deny_pools": [""]}, "deny_pools[0]"),
        ({"name": "x", "strategy": "max_usd", "params": []}, "params"),
        ({"name": "x", "strategy": "max_usd", "params": {"coin": "LTC"}}, "params.coin"),
        ({"name": "x", "strategy": "max_coin"}, "params.coin"),
        ({"name": "x", "strategy": "max_coin", "params": {"coin": "L T C"}}, "params.coin"),
        ({"name": "x", "strategy": "fixed", "params": {"coin": "LTC"}}, "params.pool"),
        ({"name": "x", "strategy": "max_usd", "params": {"hashrate_hs": 0}}, "params.hashrate_hs"),
        ({"name": "x", "strategy": "max_usd", "params": {"power_w": -1}}, "params.power_w"),
        ({"name": "x", "strategy": "max_usd", "params": {"include_solo": "yes"}}, "params.include_solo"),
        ({"name": "x", "strategy": "max_usd", "params": {"algorithm": "Scrypt"}}, "params.algorithm"),
        (
            {"name": "x", "strategy": "fixed", "params": {"coin": "LTC", "pool": None, "include_solo": True}},
            "params.include_solo",
        ),
        (["max_usd"], "body"),
    ],
)
async def test_bad_bodies_name_the_field(
    market_dsn: str, make_client: ClientFactory, body: object, field: str
) -> None:
    client = await make_client(market_dsn)
    response = await client.post("/v1/profiles", json=body, headers=AUTH)
    assert response.status == 400
    assert response.content_type == "application/problem+json"
    assert_problem(await response.json(), 400, field)


async def test_every_field_at_fault_is_named_and_what_a_strategy_takes_is_said(
    market_dsn: str, make_client: ClientFactory
) -> None:
    client = await make_client(market_dsn)
    body = {
        "name": "x",
        "strategy": "fixed",
        "params": {"coin": "LTC", "pool": None, "include_solo": True},
        "max_fee_pct": 101,
        "deny_coins": ["L T C"],
    }
    response = await client.post("/v1/profiles", json=body, headers=AUTH)
    problem = await response.json()
    reasons = {p["name"]: p["reason"] for p in problem["invalid-params"]}
    assert set(reasons) == {"params.include_solo", "max_fee_pct", "deny_coins[0]"}
    assert reasons["params.include_solo"] == (
        "not a parameter of strategy fixed (it takes: algorithm, coin, hashrate_hs, pool, power_w)"
    )
    assert reasons["max_fee_pct"] == "must be <= 100, got 101"
    assert (
        problem["detail"]
        == f"{problem['invalid-params'][0]['name']}: {problem['invalid-params'][0]['reason']}"
    )


async def test_bodies_that_are_not_json(market_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(market_dsn)
    for raw in (b"{", b'{"name": "x", "strategy": "max_usd", "max_fee_pct": NaN}', b""):
        response = await client.post("/v1/profiles", data=raw, headers=AUTH)
        assert_problem(await response.json(), 400, "body")
    renamed = await client.put(
        "/v1/profiles/default", json={"name": "other", "strategy": "max_usd"}, headers=AUTH
    )
    assert_problem(await renamed.json(), 400, "name")
    too_big = await client.post("/v1/profiles", data=b" " * 70_000, headers=AUTH)
    assert too_big.status == 413
    assert too_big.content_type == "application/problem+json"


async def test_a_profile_written_invalid_by_hand_is_refused_not_guessed(
    market_dsn: str, make_client: ClientFactory, pg_conn: asyncpg.Connection
) -> None:
    await pg_conn.execute(
        "INSERT INTO profiles (name, strategy, params) VALUES ('by-hand', 'max_usd', $1::jsonb)",
        '{"hashrate_hs": "fast"}',
    )
    try:
        client = await make_client(market_dsn)
        assert "by-hand" not in [
            p["name"] for p in (await (await client.get("/v1/profiles")).json())["items"]
        ]
        assert (await client.get("/v1/decisions/default")).status == 200  # the others are decided
        for path in ("/v1/profiles/by-hand", "/v1/decisions/by-hand"):
            response = await client.get(path)
            assert response.status == 409
            assert "params.hashrate_hs: must be a number" in (await response.json())["detail"]
        # A valid PUT repairs it.
        fixed = await client.put("/v1/profiles/by-hand", json={"strategy": "max_usd"}, headers=AUTH)
        assert fixed.status == 200
        assert (await client.get("/v1/decisions/by-hand")).status == 200
    finally:
        await pg_conn.execute("DELETE FROM profiles WHERE name = 'by-hand'")
