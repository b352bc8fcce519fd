"""The OpenAPI 3.1 document served at /openapi.json. Tests hold it to the router (every route
documented, nothing documented that does not exist) and hold every answer to its schema."""

import functools
from typing import Any

from api.config import TOKEN_ENV
from api.params import TEXT_PATTERN
from api.profiles import (
    ALGORITHM_PATTERN,
    MAX_HASHRATE_HS,
    MAX_POWER_W,
    NAME_PATTERN,
    STRATEGIES,
    SYMBOL_PATTERN,
)

_SLUG = r"^[a-z0-9][a-z0-9\-]{0,127}$"
_STEP = r"^([0-9]{1,9})([smhd]?)$"
_MAX_LIMIT = 1000

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _obj(properties: dict[str, Schema], *, required: tuple[str, ...] | None = None) -> Schema:
    """An object whose every listed property is always present (unless `required` says otherwise)
    and nothing else: an answer that drifts from the document fails its schema."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else list(required),
        "additionalProperties": False,
    }


def _items(name: str, **extra: Schema) -> Schema:
    return _obj({"items": {"type": "array", "items": _ref(name)}, **extra})


_TS = {"type": "string", "format": "date-time"}
_TS_OR_NULL = _nullable("string", format="date-time")
_NUM_OR_NULL = _nullable("number")
_STRINGS = {"type": "array", "items": {"type": "string"}}

_EARNING: dict[str, Schema] = {
    "coin": {"type": "string"},
    "pool": _nullable("string", description="null: solo mining on the coin's own daemon"),
    "stratum_url": _nullable("string"),
    "endpoints": _STRINGS,
    "fee_pct": _NUM_OR_NULL,
    "pool_hashrate_hs": _NUM_OR_NULL,
    "hashrate_hs": _NUM_OR_NULL,
    "coins_per_day": _nullable("number", description="of the coin mined, before the pool fee"),
    "payouts": {
        "type": "array",
        "items": _ref("Payout"),
        "description": "every coin paid: a merged-mining pool pays several for the same hashes",
    },
    "missing": {**_STRINGS, "description": "coins paid without fresh data, left out of the sums"},
    "usd_per_day": _nullable("number", description="gross: every coin paid, before fee and power"),
    "usd_per_day_after_fee": _NUM_OR_NULL,
    "power_usd_per_day": _NUM_OR_NULL,
    "usd_per_day_net": _nullable("number", description="after fee and power; negative when losing"),
}

SCHEMAS: dict[str, Schema] = {
    "Problem": _obj(
        {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "invalid-params": {
                "type": "array",
                "items": _obj({"name": {"type": "string"}, "reason": {"type": "string"}}),
            },
        },
        required=("type", "title", "status", "detail"),
    ),
    "Health": _obj({"status": {"const": "ok"}}),
    "Ready": _obj(
        {
            "status": {"const": "ready"},
            "database": {"const": "ok"},
            "last_pass_s": {"type": "number"},
            "data": {
                "type": "object",
                "additionalProperties": _obj(
                    {
                        "data_as_of": _TS_OR_NULL,
                        "data_age_s": _NUM_OR_NULL,
                        "stale": {"type": "boolean"},
                    }
                ),
            },
        }
    ),
    "Coin": _obj(
        {
            "symbol": {"type": "string"},
            "algorithm": {"type": "string"},
            "name": {"type": "string"},
            "price_usd": _NUM_OR_NULL,
            "difficulty": _NUM_OR_NULL,
            "block_reward": _NUM_OR_NULL,
            "block_time_s": _NUM_OR_NULL,
            "network_hashrate_hs": _NUM_OR_NULL,
            "height": _nullable("integer"),
            "stale": {"type": "boolean"},
            "updated_at": _TS_OR_NULL,
            "sources": {"type": "object", "description": "which sources supplied each field, and when"},
        }
    ),
    "CoinList": _items("Coin"),
    "CoinHistoryPoint": _obj(
        {
            "ts": _TS,
            "price_usd": _NUM_OR_NULL,
            "difficulty": _NUM_OR_NULL,
            "block_reward": _NUM_OR_NULL,
            "network_hashrate_hs": _NUM_OR_NULL,
            "height": _nullable("integer"),
            "samples": {"type": "integer"},
        }
    ),
    "CoinHistory": _obj(
        {
            "symbol": {"type": "string"},
            "algorithm": {"type": "string"},
            "source": {"type": "string"},
            "from": _TS,
            "to": _TS,
            "step_s": {"type": "number"},
            "points": {"type": "array", "items": _ref("CoinHistoryPoint")},
        }
    ),
    "Pool": _obj(
        {
            "name": {"type": "string"},
            "coin": {"type": "string"},
            "algorithm": {"type": "string"},
            "url": _nullable("string"),
            "endpoints": {
                "type": "array",
                "items": {"type": "object"},
                "description": 'Stratum endpoints, e.g. [{"url": "stratum+tcp://host:3333"}]',
            },
            "fee_pct": _NUM_OR_NULL,
            "payout_scheme": _nullable("string"),
            "hashrate_hs": _NUM_OR_NULL,
            "miners": _nullable("integer"),
            "merged_coins": _STRINGS,
            "source": _nullable("string"),
            "stale": {"type": "boolean"},
            "updated_at": _TS_OR_NULL,
        }
    ),
    "PoolList": _items("Pool"),
    "PoolHistoryPoint": _obj(
        {
            "ts": _TS,
            "hashrate_hs": _NUM_OR_NULL,
            "miners": _NUM_OR_NULL,
            "fee_pct": _NUM_OR_NULL,
            "samples": {"type": "integer"},
        }
    ),
    "PoolHistory": _obj(
        {
            "name": {"type": "string"},
            "coin": {"type": "string"},
            "from": _TS,
            "to": _TS,
            "step_s": {"type": "number"},
            "points": {"type": "array", "items": _ref("PoolHistoryPoint")},
        }
    ),
    "HardwareMining": _obj(
        {
            "algorithm": {"type": "string"},
            "hashrate_hs": {"type": "number"},
            "power_w": _NUM_OR_NULL,
            "joules_per_mh": _NUM_OR_NULL,
            "source": _nullable("string"),
            "stale": {"type": "boolean"},
            "updated_at": _TS,
        }
    ),
    "Hardware": _obj(
        {
            "slug": _nullable("string"),
            "name": {"type": "string"},
            "vendor": _nullable("string"),
            "kind": {"enum": ["asic", "gpu", "cpu"]},
            "mining": {"type": "array", "items": _ref("HardwareMining")},
        }
    ),
    "HardwareList": _items("Hardware"),
    "Payout": _obj(
        {"coin": {"type": "string"}, "coins_per_day": {"type": "number"}, "usd_per_day": _NUM_OR_NULL}
    ),
    "Earning": _obj(_EARNING),
    "RankedEarning": _obj({"rank": {"type": "integer", "minimum": 1}, **_EARNING}),
    "Profitability": _obj(
        {
            "algorithm": {"type": "string"},
            "hashrate_hs": _NUM_OR_NULL,
            "power_w": {"type": "number"},
            "power_cost_kwh": {"type": "number"},
            "power_usd_per_day": {"type": "number"},
            "hardware": _nullable("string"),
            "data_as_of": _TS_OR_NULL,
            "data_age_s": _NUM_OR_NULL,
            "stale": {"type": "boolean"},
            "items": {"type": "array", "items": _ref("RankedEarning")},
        }
    ),
    "ProfileParams": {
        "type": "object",
        "description": "max_usd: algorithm, hashrate_hs, power_w, include_solo; max_coin: those and coin "
        "(required); fixed: algorithm, hashrate_hs, power_w, coin and pool (both required, "
        "pool null for solo)",
        "properties": {
            "algorithm": {"type": "string", "pattern": ALGORITHM_PATTERN, "default": "scrypt"},
            "hashrate_hs": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_HASHRATE_HS,
                "description": "default: the aggregator's reference hashrate",
            },
            "power_w": {"type": "number", "minimum": 0, "maximum": MAX_POWER_W},
            "include_solo": {"type": "boolean", "default": False},
            "coin": {"type": "string", "pattern": SYMBOL_PATTERN},
            "pool": _nullable("string", pattern=TEXT_PATTERN),
        },
        "additionalProperties": False,
    },
    "ProfileInput": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "strategy": {"enum": list(STRATEGIES)},
            "params": _ref("ProfileParams"),
            "allow_coins": {
                "type": "array",
                "items": {"type": "string", "pattern": SYMBOL_PATTERN},
                "maxItems": 256,
                "description": "empty: every coin not denied",
            },
            "deny_coins": {
                "type": "array",
                "items": {"type": "string", "pattern": SYMBOL_PATTERN},
                "maxItems": 256,
            },
            "allow_pools": {
                "type": "array",
                "items": {"type": "string", "pattern": TEXT_PATTERN},
                "maxItems": 256,
            },
            "deny_pools": {
                "type": "array",
                "items": {"type": "string", "pattern": TEXT_PATTERN},
                "maxItems": 256,
            },
            "max_fee_pct": _nullable("number", minimum=0, maximum=100),
            "min_pool_hashrate": _nullable("number", minimum=0, maximum=MAX_HASHRATE_HS),
            "power_cost_kwh": _nullable("number", minimum=0, maximum=1e6, description="USD per kWh"),
        },
        "required": ["strategy"],
        "additionalProperties": False,
    },
    "Profile": _obj(
        {
            "name": {"type": "string"},
            "strategy": {"enum": list(STRATEGIES)},
            "params": {"type": "object"},
            "allow_coins": _STRINGS,
            "deny_coins": _STRINGS,
            "allow_pools": _STRINGS,
            "deny_pools": _STRINGS,
            "max_fee_pct": _NUM_OR_NULL,
            "min_pool_hashrate": _NUM_OR_NULL,
            "power_cost_kwh": _NUM_OR_NULL,
            "updated_at": _TS_OR_NULL,
        }
    ),
    "ProfileList": _items("Profile"),
    "Decision": _obj(
        {
            "profile": {"type": "string"},
            "strategy": {"enum": list(STRATEGIES)},
            "algorithm": {"type": "string"},
            "hashrate_hs": _NUM_OR_NULL,
            "choice": {
                "oneOf": [_ref("Earning"), {"type": "null"}],
                "description": "what to mine now; null when nothing could ever be chosen",
            },
            "since": _TS_OR_NULL,
            "held_s": _NUM_OR_NULL,
            "expected_usd_per_day_net": _NUM_OR_NULL,
            "runner_up": {"oneOf": [_ref("Earning"), {"type": "null"}]},
            "margin_usd_per_day": _NUM_OR_NULL,
            "margin_pct": _NUM_OR_NULL,
            "stale": {"type": "boolean", "description": "the data is too old to act on: the choice is kept"},
            "data_as_of": _TS_OR_NULL,
            "data_age_s": _NUM_OR_NULL,
            "max_data_age_s": {"type": "number"},
            "reason": {"type": "string"},
            "evaluated_at": _TS,
        }
    ),
    "DecisionList": _items("Decision"),
    "Worker": _obj(
        {
            "name": {"type": "string"},
            "profile": {"type": "string"},
            "accepted": {"type": "integer"},
            "rejected": {"type": "integer"},
            "stale": {"type": "integer"},
            "hashrate_hs": {"type": "number"},
            "last_share_at": _TS_OR_NULL,
            "last_seen": _TS_OR_NULL,
            "created_at": _TS,
        }
    ),
    "WorkerList": _items("Worker", next_after=_nullable("string")),
    "Block": _obj(
        {
            "id": {"type": "integer"},
            "coin": {"type": "string"},
            "height": {"type": "integer"},
            "hash": {"type": "string"},
            "worker": _nullable("string"),
            "upstream": _nullable("string"),
            "reward": _NUM_OR_NULL,
            "status": {"enum": ["pending", "accepted", "rejected", "orphaned"]},
            "reason": _nullable("string"),
            "found_at": _TS,
        }
    ),
    "BlockList": _items("Block", next_before=_nullable("integer")),
    "SwitchEvent": _obj(
        {
            "id": {"type": "integer"},
            "ts": _TS,
            "profile": {"type": "string"},
            "worker_count": {"type": "integer"},
            "from_upstream": _nullable("string"),
            "to_upstream": {"type": "string"},
            "reason": _nullable("string"),
            "expected_gain_pct": _NUM_OR_NULL,
        }
    ),
    "SwitchEventList": _items("SwitchEvent", next_before=_nullable("integer")),
}

_ERRORS = {
    400: "a parameter or body field is invalid (named in invalid-params)",
    401: "a bearer token is missing or wrong",
    404: "no such resource",
    413: "the body is larger than 64 KiB",
    409: "conflicts with the current state (a name taken, the default profile, an invalid stored profile)",
    429: "rate limited: retry after the Retry-After header's seconds",
    503: "the database is unreachable or decisions are not being evaluated",
}


def _problem(status: int) -> Schema:
    response: Schema = {
        "description": _ERRORS[status],
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    return response


def _ok(schema: str, description: str = "OK", headers: Schema | None = None) -> Schema:
    response: Schema = {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}
    if headers:
        response["headers"] = headers
    return response


def _param(name: str, where: str, schema: Schema, description: str = "") -> Schema:
    param: Schema = {"name": name, "in": where, "schema": schema, "required": where == "path"}
    if description:
        param["description"] = description
    return param


_ALGORITHM = _param("algorithm", "query", {"type": "string", "pattern": ALGORITHM_PATTERN})
_ALGORITHM_SCRYPT = _param(
    "algorithm", "query", {"type": "string", "pattern": ALGORITHM_PATTERN, "default": "scrypt"}
)
_COIN_FILTER = _param("coin", "query", {"type": "string", "pattern": SYMBOL_PATTERN}, "coin symbol")
_POOL_COIN = _param(
    "coin",
    "query",
    {"type": "string", "pattern": SYMBOL_PATTERN},
    "the pool's coin, needed when pools of several coins share the name",
)
_FROM = _param("from", "query", _TS, "start, inclusive (RFC 3339)")
_TO = _param("to", "query", _TS, "end, exclusive (RFC 3339)")
_HISTORY = [
    _param("from", "query", _TS, "start, inclusive (RFC 3339); default: a day before to"),
    _param("to", "query", _TS, "end, exclusive (RFC 3339); default: now"),
    _param(
        "step",
        "query",
        {"type": "string", "pattern": _STEP},
        "bucket width: seconds or a number with unit s, m, h, d (5m, 1h); default: about 500 buckets; "
        "at most 10000 buckets",
    ),
]
_LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": _MAX_LIMIT, "default": 100})
_BEFORE = _param(
    "before",
    "query",
    {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    "page: items with an id below this (the previous page's next_before)",
)
_PROFILE_PATH = _param("name", "path", {"type": "string", "pattern": NAME_PATTERN})
_AUTH = [{"bearer": []}]
_ETAG = {"ETag": {"schema": {"type": "string"}, "description": "weak validator; send it in If-None-Match"}}
_IF_NONE_MATCH = _param("If-None-Match", "header", {"type": "string"}, "a 304 answers an unchanged decision")


def _get(
    summary: str,
    schema: str,
    params: list[Schema] | None = None,
    errors: tuple[int, ...] = (),
    *,
    etag: bool = False,
) -> Schema:
    responses: Schema = {"200": _ok(schema, headers=_ETAG if etag else None)}
    if etag:
        responses["304"] = {"description": "unchanged since the ETag given", "headers": _ETAG}
    for status in sorted({400, 429, *errors}):
        responses[str(status)] = _problem(status)
    return {"summary": summary, "parameters": params or [], "responses": responses}


def _write(
    summary: str,
    status: int,
    schema: str | None,
    params: list[Schema],
    errors: tuple[int, ...],
    *,
    body: bool,
    headers: Schema | None = None,
) -> Schema:
    responses: Schema = {str(status): _ok(schema, headers=headers) if schema else {"description": "done"}}
    for code in sorted({400, 401, 429, 503, *errors}):
        responses[str(code)] = _problem(code)
    op: Schema = {"summary": summary, "parameters": params, "security": _AUTH, "responses": responses}
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref("ProfileInput")}},
        }
    return op


def _put_profile() -> Schema:
    """PUT creates the profile when there is none of that name (201), else replaces it (200)."""
    op = _write("Create or replace a profile (not rename it)", 200, "Profile", [_PROFILE_PATH], (413,),
                body=True)
    op["responses"]["201"] = _ok("Profile", headers={"Location": {"schema": {"type": "string"}}})
    return op


@functools.cache
def document() -> Schema:
    paths: Schema = {
        "/healthz": {"get": _get("The process is up", "Health")},
        "/readyz": {
            "get": _get(
                "The database answers and decisions are being evaluated; data age per algorithm",
                "Ready",
                errors=(503,),
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "parameters": [],
                "responses": {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "400": _problem(400),
                    "429": _problem(429),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "parameters": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "400": _problem(400),
                    "429": _problem(429),
                },
            }
        },
        "/v1/coins": {"get": _get("Coins as the aggregator last saw them", "CoinList", [_ALGORITHM], (503,))},
        "/v1/coins/{symbol}": {
            "get": _get(
                "One coin",
                "Coin",
                [_param("symbol", "path", {"type": "string", "pattern": SYMBOL_PATTERN}), _ALGORITHM_SCRYPT],
                (404, 503),
            )
        },
        "/v1/coins/{symbol}/history": {
            "get": _get(
                "A coin's history, averaged per step",
                "CoinHistory",
                [
                    _param("symbol", "path", {"type": "string", "pattern": SYMBOL_PATTERN}),
                    _ALGORITHM_SCRYPT,
                    *_HISTORY,
                    _param(
                        "source",
                        "query",
                        {"type": "string", "pattern": TEXT_PATTERN, "default": "consensus"},
                        "whose figures: consensus (the reconciled ones) or one source's name",
                    ),
                ],
                (404, 503),
            )
        },
        "/v1/pools": {"get": _get("Pools", "PoolList", [_COIN_FILTER, _ALGORITHM], (503,))},
        "/v1/pools/{name}": {
            "get": _get(
                "One pool",
                "Pool",
                [_param("name", "path", {"type": "string", "pattern": TEXT_PATTERN}), _POOL_COIN],
                (404, 503),
            )
        },
        "/v1/pools/{name}/history": {
            "get": _get(
                "A pool's history, averaged per step",
                "PoolHistory",
                [
                    _param("name", "path", {"type": "string", "pattern": TEXT_PATTERN}),
                    _POOL_COIN,
                    *_HISTORY,
                ],
                (404, 503),
            )
        },
        "/v1/hardware": {
            "get": _get(
                "Mining hardware and its figures per algorithm",
                "HardwareList",
                [_ALGORITHM, _param("kind", "query", {"enum": ["asic", "gpu", "cpu"]})],
                (503,),
            )
        },
        "/v1/hardware/{slug}": {
            "get": _get(
                "One device",
                "Hardware",
                [_param("slug", "path", {"type": "string", "pattern": _SLUG})],
                (404, 503),
            )
        },
        "/v1/profitability": {
            "get": _get(
                "What a hashrate earns on each coin and pool, best net first (latest aggregator run)",
                "Profitability",
                [
                    _ALGORITHM_SCRYPT,
                    _param(
                        "hashrate",
                        "query",
                        {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_HASHRATE_HS},
                        "H/s; default: the aggregator's reference hashrate",
                    ),
                    _param("watts", "query", {"type": "number", "minimum": 0, "maximum": MAX_POWER_W}),
                    _param(
                        "power_cost", "query", {"type": "number", "minimum": 0, "maximum": 1e6}, "USD per kWh"
                    ),
                    _param(
                        "hardware",
                        "query",
                        {"type": "string", "pattern": _SLUG},
                        "a device's slug: its hashrate and power instead of hashrate and watts",
                    ),
                    _param(
                        "include_solo",
                        "query",
                        {"type": "boolean", "default": True},
                        "also list solo mining on each coin's daemon",
                    ),
                ],
                (503,),
            )
        },
        "/v1/profiles": {
            "get": _get("Profiles", "ProfileList", errors=(503,)),
            "post": _write(
                "Create a profile",
                201,
                "Profile",
                [],
                (409, 413),
                body=True,
                headers={"Location": {"schema": {"type": "string"}}},
            ),
        },
        "/v1/profiles/{name}": {
            "get": _get("One profile", "Profile", [_PROFILE_PATH], (404, 409, 503)),
            "put": _put_profile(),
            "delete": _write(
                "Delete a profile (its workers fall back to default)",
                204,
                None,
                [_PROFILE_PATH],
                (404, 409),
                body=False,
            ),
        },
        "/v1/decisions": {
            "get": _get(
                "Every profile's decision",
                "DecisionList",
                [_IF_NONE_MATCH],
                etag=True,
            )
        },
        "/v1/decisions/{profile}": {
            "get": _get(
                "What a profile's miners should mine now, and why",
                "Decision",
                [_param("profile", "path", {"type": "string", "pattern": NAME_PATTERN}), _IF_NONE_MATCH],
                (404, 409, 503),
                etag=True,
            )
        },
        "/v1/workers": {
            "get": _get(
                "Workers, by name",
                "WorkerList",
                [
                    _param("profile", "query", {"type": "string", "pattern": NAME_PATTERN}),
                    _param(
                        "after",
                        "query",
                        {"type": "string", "pattern": TEXT_PATTERN},
                        "page: workers named after this (the previous page's next_after)",
                    ),
                    _LIMIT,
                ],
                (503,),
            )
        },
        "/v1/blocks": {
            "get": _get(
                "Blocks found, newest first",
                "BlockList",
                [
                    _COIN_FILTER,
                    _param("status", "query", {"enum": ["pending", "accepted", "rejected", "orphaned"]}),
                    _FROM,
                    _TO,
                    _BEFORE,
                    _LIMIT,
                ],
                (503,),
            )
        },
        "/v1/switch-events": {
            "get": _get(
                "Moves of miners between upstreams, newest first",
                "SwitchEventList",
                [
                    _param("profile", "query", {"type": "string", "pattern": NAME_PATTERN}),
                    _FROM,
                    _TO,
                    _BEFORE,
                    _LIMIT,
                ],
                (503,),
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Qscrypt decision API",
            "version": "1",
            "description": "Market data, profitability and per-profile mining decisions. Errors are RFC 9457 "
            "problem details. Profile writes need a bearer token (config api.token or "
            f"{TOKEN_ENV}). A decision changing is also announced by PostgreSQL "
            "NOTIFY on channel qscrypt_decisions with the profile name as payload.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
