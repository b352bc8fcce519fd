"""The OpenAPI document against the real API: every route documented and every documented one
served, answers valid against their schemas, and schemathesis let loose on it."""

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app, document
from api.config import ApiConfig
from tests.api.conftest import AUTH, CONFIG, ClientFactory


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    app = create_app(CONFIG, "postgresql://unused")
    served = {(r.resource.canonical, r.method.lower()) for r in app.router.routes() if r.resource is not None}
    documented = {(path, method) for path, ops in document()["paths"].items() for method in ops}
    assert served == documented


def _validator(path: str, method: str, status: int, content_type: str) -> jsonschema_rs.Validator:
    doc = document()
    response = doc["paths"][path][method]["responses"][str(status)]
    schema = response["content"][content_type]["schema"]
    # The document is the root the schemas' #/components/... references resolve against.
    return jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]})


LTC_ADDRESS = "LKh8pxsZwbSEz9PUbMUx1NX26eWsPprcsz"  # a mainnet address from the shared vectors
POOL_PAYMENT = {"coin": "LTC", "pool": "p", "amount": "0.5", "earned_at": "2026-12-01T00:00:00Z",
                "reference": "r"}
# (method, URL, documented path, status); the body where a write needs one.
EXCHANGES: list[tuple[str, str, str, int, Any]] = [
    ("GET", "/healthz", "/healthz", 200, None),
    ("GET", "/readyz", "/readyz", 200, None),
    ("GET", "/v1/coins", "/v1/coins", 200, None),
    ("GET", "/v1/coins?algorithm=x!", "/v1/coins", 400, None),
    ("GET", "/v1/coins/LTC", "/v1/coins/{symbol}", 200, None),
    ("GET", "/v1/coins/ETC?algorithm=etchash", "/v1/coins/{symbol}", 200, None),
    ("GET", "/v1/coins/XYZ", "/v1/coins/{symbol}", 404, None),
    ("GET", "/v1/coins/LTC/history?step=1h", "/v1/coins/{symbol}/history", 200, None),
    ("GET", "/v1/pools", "/v1/pools", 200, None),
    ("GET", "/v1/pools/merged-ltc-doge", "/v1/pools/{name}", 200, None),
    ("GET", "/v1/pools/merged-ltc-doge/history", "/v1/pools/{name}/history", 200, None),
    ("GET", "/v1/hardware", "/v1/hardware", 200, None),
    ("GET", "/v1/hardware/elphapex-dg1", "/v1/hardware/{slug}", 200, None),
    ("GET", "/v1/profitability?hashrate=1e12&watts=100&power_cost=0.1", "/v1/profitability", 200, None),
    ("GET", "/v1/profitability?algorithm=etchash", "/v1/profitability", 200, None),
    ("GET", "/v1/profitability?hashrate=-1", "/v1/profitability", 400, None),
    ("GET", "/v1/profiles", "/v1/profiles", 200, None),
    (
        "POST",
        "/v1/profiles",
        "/v1/profiles",
        201,
        {"name": "doc", "strategy": "fixed", "params": {"coin": "LTC", "pool": None}},
    ),
    ("POST", "/v1/profiles", "/v1/profiles", 409, {"name": "doc", "strategy": "max_usd"}),
    ("GET", "/v1/profiles/doc", "/v1/profiles/{name}", 200, None),
    ("PUT", "/v1/profiles/doc", "/v1/profiles/{name}", 200, {"strategy": "max_usd", "power_cost_kwh": 0.1}),
    ("GET", "/v1/decisions", "/v1/decisions", 200, None),
    ("GET", "/v1/decisions/doc", "/v1/decisions/{profile}", 200, None),
    ("GET", "/v1/decisions/nobody", "/v1/decisions/{profile}", 404, None),
    ("DELETE", "/v1/profiles/doc", "/v1/profiles/{name}", 204, None),
    ("GET", "/v1/workers", "/v1/workers", 200, None),
    ("GET", "/v1/blocks", "/v1/blocks", 200, None),
    ("GET", "/v1/switch-events", "/v1/switch-events", 200, None),
    ("PUT", "/v1/devices/l3.rack1", "/v1/devices/{name}", 201, {"host": "192.0.2.7", "worker": "farm.l3"}),
    ("PUT", "/v1/devices/l3.rack1", "/v1/devices/{name}", 200, {"host": "192.0.2.7", "port": 4029}),
    ("PUT", "/v1/devices/l3.rack1", "/v1/devices/{name}", 400, {"host": "192.0.2.7", "port": 0}),
    ("GET", "/v1/devices", "/v1/devices", 200, None),
    ("GET", "/v1/devices/l3.rack1", "/v1/devices/{name}", 200, None),
    ("GET", "/v1/devices/nothing", "/v1/devices/{name}", 404, None),
    ("DELETE", "/v1/devices/l3.rack1", "/v1/devices/{name}", 204, None),
    ("DELETE", "/v1/devices/l3.rack1", "/v1/devices/{name}", 404, None),
    # payouts (api/payouts.py)
    ("POST", "/v1/accounts", "/v1/accounts", 201, {"name": "doc", "payout_addresses": {"LTC": LTC_ADDRESS}}),
    ("POST", "/v1/accounts", "/v1/accounts", 400, {"name": "doc2", "payout_addresses": {"LTC": "L1"}}),
    ("GET", "/v1/accounts/doc/balances", "/v1/accounts/{account}/balances", 200, None),
    ("GET", "/v1/accounts/nobody/balances", "/v1/accounts/{account}/balances", 404, None),
    ("GET", f"/v1/accounts/{LTC_ADDRESS}/payouts", "/v1/accounts/{account}/payouts", 200, None),
    ("GET", "/v1/payouts?status=pending", "/v1/payouts", 200, None),
    ("POST", "/v1/payouts/999999/approve", "/v1/payouts/{id}/approve", 404, None),
    ("PUT", "/v1/fees/LTC", "/v1/fees/{coin}", 200, {"fee_percent": 1.5}),
    ("GET", "/v1/fees", "/v1/fees", 200, None),
    ("POST", "/v1/pool-payments", "/v1/pool-payments", 201, POOL_PAYMENT),
    ("POST", "/v1/pool-payments", "/v1/pool-payments", 409, POOL_PAYMENT),
    ("GET", "/v1/overview", "/v1/overview", 200, None),
    ("GET", "/v1/hashrate?window=7d", "/v1/hashrate", 200, None),
    ("GET", "/v1/hashrate?window=2d", "/v1/hashrate", 400, None),
    ("GET", "/v1/accounts/alice/workers", "/v1/accounts/{account}/workers", 200, None),
    ("GET", "/v1/accounts/alice/hashrate?window=1h", "/v1/accounts/{account}/hashrate", 200, None),
    ("POST", "/v1/bans", "/v1/bans", 201, {"kind": "ip", "value": "10.0.0.1", "expires_in_s": 60}),
    ("POST", "/v1/bans", "/v1/bans", 400, {"kind": "ip", "value": "10.0.0.x"}),
    ("GET", "/v1/bans", "/v1/bans", 200, None),
    ("DELETE", "/v1/bans/999999", "/v1/bans/{id}", 404, None),
    ("GET", "/dashboard/app.js", "/dashboard/{file}", 200, None),
    ("GET", "/dashboard/nope.js", "/dashboard/{file}", 400, None),
]


async def test_answers_validate_against_the_document(market_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(market_dsn)
    seen = set()
    for method, url, path, status, body in EXCHANGES:
        response = await client.request(method, url, json=body, headers=AUTH)
        assert response.status == status, (method, url, await response.text())
        documented = document()["paths"][path][method.lower()]["responses"][str(status)]
        seen.add((path, method.lower()))
        if "content" not in documented or response.content_type not in (
            "application/json",
            "application/problem+json",
        ):
            continue
        content_type = response.content_type
        assert content_type in documented["content"], (url, content_type)
        errors = [
            e.message
            for e in _validator(path, method.lower(), status, content_type).iter_errors(await response.json())
        ]
        assert not errors, (method, url, errors)
    documented_ops = {(p, m) for p, ops in document()["paths"].items() for m in ops}
    assert documented_ops - seen == {("/metrics", "get"), ("/openapi.json", "get"), ("/", "get")}


def _valid(schema: dict[str, Any], value: Any) -> bool:
    return jsonschema_rs.Draft202012Validator({**schema, "components": document()["components"]}).is_valid(
        value
    )


async def test_what_the_document_allows_the_checks_accept_and_what_it_refuses_they_refuse(
    market_dsn: str, make_client: ClientFactory
) -> None:
    """The requests schemathesis once found valid by the document yet refused by the checks."""
    client = await make_client(market_dsn)
    # A device's figures with the client's own: what it runs at wins (an undervolted L7).
    parameters = document()["paths"]["/v1/profitability"]["get"]["parameters"]
    assert {p["name"] for p in parameters} >= {"hardware", "hashrate", "watts"}
    both = await client.get("/v1/profitability?hardware=antminer-l7&hashrate=1e10&watts=3000")
    assert both.status == 200
    assert ((body := await both.json())["hashrate_hs"], body["power_w"]) == (1e10, 3000.0)
    # A fixed profile weighs no solo mining: the document refuses include_solo there, and so does the API.
    fixed = {
        "name": "pinned",
        "strategy": "fixed",
        "params": {"coin": "LTC", "pool": None, "include_solo": True},
    }
    for method, path in (("post", "/v1/profiles"), ("put", "/v1/profiles/{name}")):
        schema = document()["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        assert not _valid(schema, fixed)
        assert _valid(schema, {**fixed, "params": {"coin": "LTC", "pool": None}})
        response = await client.request(method, path.format(name="pinned"), json=fixed, headers=AUTH)
        assert response.status == 400
        assert (await response.json())["invalid-params"][0]["name"] == "params.include_solo"


class LiveApi:
    """The API in a thread with its own event loop: schemathesis calls it synchronously."""

    def __init__(self, dsn: str, config: ApiConfig) -> None:
        self._dsn = dsn
        self._config = config
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.url = ""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    def __enter__(self) -> "LiveApi":
        self._thread.start()
        assert self._ready.wait(30), "the API did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        runner = web.AppRunner(create_app(self._config, self._dsn))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()


@pytest.fixture(scope="module")
def live_api(market_dsn: str) -> Iterator[str]:
    with LiveApi(market_dsn, CONFIG) as api:
        yield api.url


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
EXAMPLES = 100


def _renames_nothing(case: schemathesis.Case) -> schemathesis.Case:
    """A PUT body's name, when it has one, is the path's: the one rule of the API that OpenAPI has
    no way to state (a body field equal to a path parameter)."""
    if isinstance(case.body, dict) and case.body.get("name") is not None and case.path_parameters:
        case.body["name"] = case.path_parameters["name"]
    return case


def _pays_a_real_address(case: schemathesis.Case) -> schemathesis.Case:
    """A payout address matching the document's pattern is still only valid with its checksum,
    which OpenAPI cannot state: registrations pay a real one."""
    if isinstance(case.body, dict) and isinstance(case.body.get("payout_addresses"), dict):
        case.body["payout_addresses"] = {"LTC": LTC_ADDRESS}
    return case


# schemathesis' own pytest plugin does not run under pytest 9, so its strategies are driven here,
# derandomized: the same requests on every run.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_against_the_live_api(live_api: str, mode: GenerationMode) -> None:
    """Requests valid by the document are not refused by the checks (positive), invalid ones are
    (negative); nothing is a server error, and every answer is what the document says."""
    schema = schemathesis.openapi.from_dict(document())
    schema.config.update(base_url=live_api)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(ops) for ops in document()["paths"].values())
    failures = []
    for operation in operations:
        op = document()["paths"][operation.path][operation.method.lower()]
        negatable = "requestBody" in op or any(p["in"] != "header" for p in op["parameters"])
        if mode is GenerationMode.NEGATIVE and not negatable:
            continue  # any string is a valid header: nothing to get wrong
        strategy = operation.as_strategy(generation_mode=mode)
        if mode is GenerationMode.POSITIVE and operation.method.upper() == "PUT":
            strategy = strategy.map(_renames_nothing)
        if mode is GenerationMode.POSITIVE and operation.path == "/v1/accounts":
            strategy = strategy.map(_pays_a_real_address)

        # A negative case may leave out a required Authorization header on purpose: then none is
        # added, and the answer must be a refusal (401) like any other invalid request's.
        auth_required = any(p["in"] == "header" and p["name"] == "Authorization" and p.get("required")
                            for p in op["parameters"])

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exchange(case: schemathesis.Case) -> None:
            dropped = (mode is GenerationMode.NEGATIVE and auth_required  # noqa: B023 (run in this iteration)
                       and "Authorization" not in (case.headers or {}))
            case.call_and_validate(headers=None if dropped else AUTH, checks=CHECKS)

        try:
            exchange()
        except Exception as exc:  # every operation's failure, not only the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
