"""The payouts endpoints over real HTTP against embedded PostgreSQL: registration (token shown once,
kept hashed; a bad address is a 400 naming the field), balances and payouts in the shapes the
dashboard reads, cursors, ETags, the admin token, approval and fees."""

import hashlib

import asyncpg

from api.config import ApiConfig
from payouts import db
from payouts.accounts import POOL_ACCOUNT
from tests.api.conftest import AUTH, CONFIG, ClientFactory

ADDRESS = "LKh8pxsZwbSEz9PUbMUx1NX26eWsPprcsz"  # mainnet P2PKH (shared vectors)
OTHER = "Ldeev14xTEj6EVEPFpRHQntJqkKEc6Tfeg"


async def test_registration_shows_the_token_once_and_keeps_its_hash(
    pg_dsn: str, make_client: ClientFactory
) -> None:
    client = await make_client(pg_dsn)
    body = {"name": "carol", "payout_addresses": {"ltc": ADDRESS}, "email": "carol@example.org"}
    response = await client.post("/v1/accounts", json=body)
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["name"] == "carol" and created["payout_addresses"] == {"LTC": ADDRESS}
    assert response.headers["Location"] == "/v1/accounts/carol/balances"
    conn = await asyncpg.connect(pg_dsn)
    try:
        stored = await conn.fetchval("SELECT token_hash FROM accounts WHERE name = 'carol'")
        assert stored == hashlib.sha256(created["token"].encode()).hexdigest() != created["token"]
        assert await db.payout_addresses(conn, "LTC", ["carol"]) == {"carol": ADDRESS}
    finally:
        await conn.close()
    again = await client.post("/v1/accounts", json=body)
    assert again.status == 409 and "taken" in (await again.json())["detail"]


async def test_a_bad_registration_is_a_400_naming_the_field(pg_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(pg_dsn)
    cases = [
        (
            {"name": "dave", "payout_addresses": {"LTC": ADDRESS[:-1] + "t"}},
            "payout_addresses.LTC",
            "checksum",
        ),
        ({"name": "dave", "payout_addresses": {"BTC": ADDRESS}}, "payout_addresses.BTC", "unknown coin"),
        ({"name": "d" * 33, "payout_addresses": {"LTC": ADDRESS}}, "name", "must match"),
        ({"name": "da.ve", "payout_addresses": {"LTC": ADDRESS}}, "name", "must match"),
        ({"name": "dave", "payout_addresses": {}}, "payout_addresses", "at least 1"),
        ({"name": "dave", "payout_addresses": {"LTC": ADDRESS}, "extra": 1}, "extra", "unknown field"),
    ]
    for body, field, words in cases:
        response = await client.post("/v1/accounts", json=body)
        problem = await response.json()
        assert response.status == 400, (body, problem)
        assert response.content_type == "application/problem+json"
        assert problem["invalid-params"][0]["name"] == field, problem
        assert words in problem["invalid-params"][0]["reason"], problem


async def test_balances_and_payouts_in_the_dashboards_shapes(pg_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(pg_dsn)
    assert (
        await client.post("/v1/accounts", json={"name": "erin", "payout_addresses": {"LTC": OTHER}})
    ).status == 201
    conn = await asyncpg.connect(pg_dsn)
    try:
        await db.post(conn, [
            ("LTC", "t:1", "erin", "immature", 12_500_000), ("LTC", "t:1", "erin", "balance", 3),
            ("LTC", "t:1", ADDRESS, "balance", 7 * 10**8),
            ("LTC", "t:1", POOL_ACCOUNT, "income", -(12_500_003 + 7 * 10**8)),
        ])  # fmt: skip
        # An older payout the daemon refused (its amount back in the balance), then one waiting.
        await db.insert_payouts(conn, "LTC", [(ADDRESS, ADDRESS, 10**8, "failed")])
        ((pid, _, units),) = await db.insert_payouts(
            conn, "LTC", [(ADDRESS, ADDRESS, 2 * 10**8, "awaiting_approval")]
        )
        await db.post(conn, [("LTC", f"payout:{pid}", ADDRESS, "balance", -units),
                             ("LTC", f"payout:{pid}", ADDRESS, "paid", units)])  # fmt: skip
    finally:
        await conn.close()

    response = await client.get("/v1/accounts/erin/balances")
    assert await response.json() == {
        "account": "erin",
        "balances": [
            {"coin": "LTC", "immature": "0.12500000", "pending": "0.00000003", "paid": "0.00000000"}
        ],
    }
    etag = response.headers["ETag"]
    unchanged = await client.get("/v1/accounts/erin/balances", headers={"If-None-Match": etag})
    assert unchanged.status == 304
    # Open payouts are still pending to the miner; nothing was paid yet.
    body = await (await client.get(f"/v1/accounts/{ADDRESS}/balances")).json()
    assert body["balances"] == [
        {"coin": "LTC", "immature": "0.00000000", "pending": "7.00000000", "paid": "0.00000000"}
    ]

    first = await (await client.get(f"/v1/accounts/{ADDRESS}/payouts?limit=1")).json()
    assert [(i["amount"], i["status"], i["txid"], i["sent_at"]) for i in first["items"]] == [
        ("2.00000000", "awaiting_approval", None, None)
    ]
    assert set(first["items"][0]) == {
        "id",
        "coin",
        "amount",
        "status",
        "txid",
        "created_at",
        "sent_at",
        "confirmed_at",
    }
    second = await (await client.get(f"/v1/accounts/{ADDRESS}/payouts?limit=1&cursor={first['next']}")).json()
    assert [i["amount"] for i in second["items"]] == ["1.00000000"]
    last = await (await client.get(f"/v1/accounts/{ADDRESS}/payouts?limit=1&cursor={second['next']}")).json()
    assert last == {"items": [], "next": None}
    assert (await client.get("/v1/accounts/nobody/payouts")).status == 404
    # A valid address that never mined has no balances yet, which is no error.
    never = await client.get(f"/v1/accounts/{OTHER}/balances")
    assert never.status == 200 and (await never.json())["balances"] == []

    # Admin: the list needs the token; approval moves the payout to pending, once.
    assert (await client.get("/v1/payouts")).status == 401
    waiting = await (await client.get("/v1/payouts?status=awaiting_approval", headers=AUTH)).json()
    assert [(i["account"], i["amount"]) for i in waiting["items"]] == [(ADDRESS, "2.00000000")]
    payout_id = waiting["items"][0]["id"]
    assert (await client.post(f"/v1/payouts/{payout_id}/approve")).status == 401
    approved = await client.post(f"/v1/payouts/{payout_id}/approve", headers=AUTH)
    assert approved.status == 200 and (await approved.json())["status"] == "pending"
    assert (await client.post("/v1/payouts/999999/approve", headers=AUTH)).status == 404
    assert (await (await client.get("/v1/payouts?status=awaiting_approval", headers=AUTH)).json())[
        "items"
    ] == []


async def test_the_operator_fee_is_set_per_coin(pg_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(pg_dsn)
    assert (await client.put("/v1/fees/LTC", json={"fee_percent": 2.5})).status == 401
    response = await client.put("/v1/fees/ltc", json={"fee_percent": 2.5}, headers=AUTH)
    assert response.status == 200 and (await response.json())["fee_percent"] == 2.5
    bad = await client.put("/v1/fees/LTC", json={"fee_percent": 101}, headers=AUTH)
    assert bad.status == 400 and (await bad.json())["invalid-params"][0]["name"] == "fee_percent"
    response = await client.get("/v1/fees")
    listed = await response.json()
    assert [(f["coin"], f["fee_percent"]) for f in listed["items"]] == [("LTC", 2.5)]
    assert (await client.get("/v1/fees", headers={"If-None-Match": response.headers["ETag"]})).status == 304


async def test_regtest_addresses_are_accounts_on_a_regtest_api(
    pg_dsn: str, make_client: ClientFactory
) -> None:
    client = await make_client(
        pg_dsn, config=ApiConfig(token=CONFIG.token, rate_limit_per_s=0, payout_network="regtest")
    )
    regtest = "n4F91DYwr3Y9spXpzeBERMVmuNqpChHCtr"  # regtest P2PKH (shared vectors)
    response = await client.post("/v1/accounts", json={"name": "frank", "payout_addresses": {"LTC": regtest}})
    assert response.status == 201, await response.text()
    mainnet = await client.post("/v1/accounts", json={"name": "gina", "payout_addresses": {"LTC": ADDRESS}})
    assert mainnet.status == 400 and "litecoin regtest" in (await mainnet.json())["detail"]


async def test_a_pool_payment_is_recorded_once_for_the_next_run_to_split(
    pg_dsn: str, make_client: ClientFactory
) -> None:
    client = await make_client(pg_dsn)
    body = {
        "coin": "ltc",
        "pool": "pool-a",
        "amount": "0.5",
        "earned_at": "2026-12-01T10:00:00Z",
        "reference": "tx9",
    }
    assert (await client.post("/v1/pool-payments", json=body)).status == 401
    response = await client.post("/v1/pool-payments", json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    recorded = await response.json()
    assert (recorded["coin"], recorded["amount"], recorded["split"]) == ("LTC", "0.50000000", False)
    again = await client.post("/v1/pool-payments", json=body, headers=AUTH)
    assert again.status == 409 and f"pool payment {recorded['id']}" in (await again.json())["detail"]
    for field, value in (("amount", "0.123456789"), ("amount", "0"), ("earned_at", "yesterday")):
        bad = await client.post(
            "/v1/pool-payments", json={**body, field: value, "reference": "x"}, headers=AUTH
        )
        assert bad.status == 400 and (await bad.json())["invalid-params"][0]["name"] == field
