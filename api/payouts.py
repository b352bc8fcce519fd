"""The payouts endpoints: register an account, an account's balances and payouts, and the admin's
payout list, approval and operator fees. Registered on the API's routes by `api/app.py`; the SQL
is the payouts package's (`payouts/db.py`)."""

from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import web

from api import payout_models as m
from api.models import NoParams
from api.problems import Problem, invalid, not_found
from api.routes import CONFIG, POOL, etagged, json_response, route
from mining.coins import COINS, Coin
from mining.coins import coin as coin_by_symbol
from payouts import db
from payouts.accounts import address_problem, is_address, name_problem, new_token
from payouts.config import to_coins, to_units


def _chains(request: web.Request) -> list[Coin]:
    """The coins whose addresses are accounts: each configured coin on the payout network."""
    network = request.app[CONFIG].payout_network
    return [c for c in COINS if c.network == network]


def _item(row: asyncpg.Record, *, account: bool = False) -> dict[str, Any]:
    item = {
        "id": row["id"],
        "coin": row["coin"],
        "amount": to_coins(row["amount"]),
        "status": row["status"],
        "txid": row["txid"],
        "created_at": row["created_at"],
        "sent_at": row["sent_at"],
        "confirmed_at": row["confirmed_at"],
    }
    if account:
        item["account"] = row["account"]
    return item


def _page(rows: list[asyncpg.Record], limit: int, *, account: bool = False) -> dict[str, Any]:
    return {
        "items": [_item(r, account=account) for r in rows],
        "next": str(rows[-1]["id"]) if len(rows) == limit else None,
    }


def _cursor(value: str | None) -> int | None:
    return None if value is None else int(value)


async def _known_account(request: web.Request, conn: asyncpg.Connection, account: str) -> None:
    if is_address(account, _chains(request)) or await db.account_exists(conn, account):
        return
    raise not_found(f"no account {account!r}: neither a registered user name nor a payout address")


@route(
    "POST",
    "/v1/accounts",
    "Register a user name with its payout addresses; the answer's token is shown once",
    answer=m.AccountCreated,
    status=201,
    errors=(409, 413, 503),
)
async def create_account(request: web.Request, p: NoParams, body: m.AccountCreate) -> web.Response:
    network = request.app[CONFIG].payout_network
    problem = name_problem(body.name, _chains(request))
    if problem is not None:
        raise invalid("name", problem)
    for symbol, address in body.payout_addresses.items():
        try:
            chain = coin_by_symbol(symbol, network)
        except ValueError:
            known = ", ".join(sorted({c.symbol for c in COINS if c.network == network}))
            raise invalid(f"payout_addresses.{symbol}", f"unknown coin (known: {known})") from None
        problem = address_problem(address, chain)
        if problem is not None:
            raise invalid(f"payout_addresses.{symbol}", f"not a {chain.label} payout address: {problem}")
    token, digest = new_token()
    async with request.app[POOL].acquire() as conn:
        row = await db.register(conn, body.name, body.email, digest, dict(body.payout_addresses))
    if row is None:
        raise Problem(409, "Conflict", f"the name {body.name!r} is taken", kind="conflict")
    answer = {
        "name": row["name"],
        "payout_addresses": dict(sorted(body.payout_addresses.items())),
        "email": row["email"],
        "token": token,
        "created_at": row["created_at"],
    }
    return json_response(answer, status=201, headers={"Location": f"/v1/accounts/{row['name']}/balances"})


@route(
    "GET",
    "/v1/accounts/{account}/balances",
    "An account's balances per coin: immature, pending (owed) and paid",
    answer=m.Balances,
    errors=(404, 503),
    etag=True,
)
async def account_balances(request: web.Request, p: m.AccountParams) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        await _known_account(request, conn, p.account)
        rows = await db.balances(conn, p.account)
    body = {
        "account": p.account,
        "balances": [
            {
                "coin": r["coin"],
                "immature": to_coins(r["immature"]),
                "pending": to_coins(r["pending"]),
                "paid": to_coins(r["paid"]),
            }
            for r in rows
        ],
    }
    return etagged(request, body)


@route(
    "GET",
    "/v1/accounts/{account}/payouts",
    "An account's payouts, newest first",
    answer=m.PayoutPage,
    errors=(404, 503),
    etag=True,
)
async def account_payouts(request: web.Request, p: m.AccountPayoutsParams) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        await _known_account(request, conn, p.account)
        rows = await db.payouts_page(conn, p.account, None, _cursor(p.cursor), p.limit)
    body = _page(rows, p.limit)
    return etagged(request, body)


@route(
    "GET",
    "/v1/payouts",
    "Every account's payouts, newest first (admin)",
    answer=m.AdminPayoutPage,
    errors=(503,),
    write=True,
    etag=True,
)
async def list_payouts(request: web.Request, p: m.PayoutsParams) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        rows = await db.payouts_page(conn, None, p.status, _cursor(p.cursor), p.limit)
    body = _page(rows, p.limit, account=True)
    return etagged(request, body)


@route(
    "POST",
    "/v1/payouts/{id}/approve",
    "Approve a payout awaiting approval: the next payout run sends it (admin; again: no change)",
    answer=m.AdminPayoutItem,
    errors=(404, 409),
    write=True,
)
async def approve_payout(request: web.Request, p: m.PayoutParams) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = await db.approve(conn, p.id)
    if row is None:
        raise not_found(f"no payout {p.id}")
    if row["status"] == "failed":
        raise Problem(409, "Conflict", f"payout {p.id} failed: nothing to approve", kind="conflict")
    return json_response(_item(row, account=True))


@route(
    "POST",
    "/v1/pool-payments",
    "Record what an upstream pool paid (pool mode, admin); the next payout run splits it by the "
    "coin's scheme. A reference is recorded once (409 after)",
    answer=m.PoolPayment,
    status=201,
    errors=(409, 413, 503),
    write=True,
)
async def record_pool_payment(request: web.Request, p: NoParams, body: m.PoolPaymentCreate) -> web.Response:
    amount = to_units(body.amount)
    if amount <= 0:
        raise invalid("amount", "must be more than 0")
    async with request.app[POOL].acquire() as conn:
        payment_id = await db.add_pool_payment(
            conn, body.coin, body.pool, amount, body.earned_at, body.reference
        )
        if payment_id is None:
            existing = await db.pool_payment_by_reference(conn, body.coin, body.reference)
            assert existing is not None
            raise Problem(
                409,
                "Conflict",
                f"{body.coin} payment {body.reference!r} was recorded before: pool payment {existing['id']}",
                kind="conflict",
            )
        row = await db.pool_payment(conn, payment_id)
    assert row is not None
    answer = {
        "id": row["id"],
        "coin": row["coin"],
        "pool": row["pool"],
        "amount": to_coins(row["amount"]),
        # As given: PostgreSQL keeps the instant, but asyncpg reads year 1 back without its zone.
        "earned_at": body.earned_at,
        "reference": row["reference"],
        "created_at": row["created_at"],
        "split": row["split"],
    }
    return json_response(answer, status=201)


@route(
    "GET", "/v1/fees", "The operator's fee per coin, as set here", answer=m.FeeList, errors=(503,), etag=True
)
async def list_fees(request: web.Request, p: NoParams) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        rows = await db.fees(conn)
    body = {"items": [_fee(r) for r in rows]}
    return etagged(request, body)


@route(
    "PUT",
    "/v1/fees/{coin}",
    "Set the operator's fee for a coin, in percent (admin); payout runs use it from then on",
    answer=m.Fee,
    errors=(413,),
    write=True,
)
async def set_fee(request: web.Request, p: m.FeeParams, body: m.FeeSet) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = await db.set_fee(conn, p.coin, Decimal(str(body.fee_percent)))
    return json_response(_fee(row))


def _fee(row: asyncpg.Record) -> dict[str, Any]:
    return {"coin": row["coin"], "fee_percent": float(row["fee_percent"]), "updated_at": row["updated_at"]}
