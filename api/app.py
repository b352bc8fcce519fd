"""The aiohttp application: routes under /v1, problem details, rate limit, metrics, the decider.

Every handler is a `route`: it is called with the request's parameters (and body) already validated
into the models its signature names (`api/models.py`), and the OpenAPI document is generated from
the same routes. Read handlers are one indexed query each, or memory (decisions,
profitability) kept fresh by the decider. JSON only; errors are RFC 9457 problem details naming the
parameter at fault.
"""

import asyncio
import contextlib
import functools
import hashlib
import hmac
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import db, models
from api.config import ApiConfig
from api.decider import Clock, Decider, DecisionView, utcnow
from api.decision import Choice, Rule
from api.inputs import json_body, read_params
from api.market import Figures, figures, power_cost_per_day
from api.metrics import ApiMetrics
from api.openapi import Operation
from api.openapi import document as openapi_document
from api.problems import Problem, invalid, not_found
from api.profiles import profile_from_input
from api.ratelimit import RateLimiter, retry_after_header
from api.routes import (
    CONFIG,
    DECIDER,
    METRICS,
    OPERATIONS,
    POOL,
    conditional,
    dumps,
    etagged,
    etagged_text,
    json_response,
    route,
)

DEFAULT_PROFILE = "default"
MAX_BUCKETS = 10_000
_HISTORY_POINTS = 500
_MAX_BODY = 64 * 1024

_TASK = web.AppKey("decider_task", asyncio.Task)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("api")


# --- middlewares ---------------------------------------------------------------------------------


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def _metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    started = time.perf_counter()
    response = await handler(request)
    route = _route_of(request)
    metrics.latency.labels(route).observe(time.perf_counter() - started)
    metrics.requests.labels(route, request.method, str(response.status)).inc()
    return response


def _rate_limit_middleware(
    limiter: RateLimiter,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        wait = limiter.take(request.remote or "unknown")
        if wait:
            request.app[METRICS].rate_limited.inc()
            return Problem(
                429,
                "Too Many Requests",
                f"more than {limiter.burst} requests at once or {limiter.rate:g} a second on average "
                f"from this address: retry after {wait:.2f} s",
                kind="rate-limited",
                headers={"Retry-After": retry_after_header(wait)},
            ).response(request.path)
        return await handler(request)

    return middleware


@web.middleware
async def _problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response(request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        detail = {
            404: f"no resource at {request.path}",
            405: f"{request.method} is not allowed here (allowed: {exc.headers.get('Allow', '')})",
            413: "request body too large",
        }.get(exc.status, exc.text or exc.reason)
        return Problem(exc.status, exc.reason, detail, headers=headers).response(request.path)
    except db.UNAVAILABLE as exc:
        log.warning("database unavailable", path=request.path, error=str(exc) or type(exc).__name__)
        return Problem(
            503,
            "Service Unavailable",
            "the database is unreachable; retry shortly",
            kind="database-unavailable",
            headers={"Retry-After": "5"},
        ).response(request.path)
    except Exception:
        log.exception("request failed", path=request.path, method=request.method)
        return Problem(500, "Internal Server Error", "the server failed to answer; this is a bug").response(
            request.path
        )


# --- helpers -------------------------------------------------------------------------------------


def _age_s(now: datetime, at: datetime | None) -> float | None:
    return None if at is None else (now - at).total_seconds()


def _time_range(q: models.HistoryRange, now: datetime) -> tuple[datetime, datetime, timedelta]:
    """from/to (default: the last 24 h) and the bucket width (default: about 500 buckets)."""
    end = q.to or now
    start = q.from_
    if start is None:
        try:
            start = end - timedelta(days=1)
        except OverflowError:  # within a day of year 1: the day back starts there
            start = datetime.min.replace(tzinfo=UTC)
    if start >= end:
        raise invalid("to", "must be later than from")
    span = end - start
    step = q.step or timedelta(seconds=max(1, math.ceil(span.total_seconds() / _HISTORY_POINTS)))
    buckets = span / step
    if buckets > MAX_BUCKETS:
        raise invalid(
            "step", f"makes {math.ceil(buckets)} buckets between from and to; at most {MAX_BUCKETS}"
        )
    return start, end, step


def _range_json(start: datetime, end: datetime, step: timedelta) -> dict[str, Any]:
    return {"from": start, "to": end, "step_s": step.total_seconds()}


def _rows(rows: Sequence[asyncpg.Record], drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


async def _require_token(request: web.Request) -> None:
    expected = request.app[CONFIG].write_token()
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="qscrypt"'}
    if not expected:
        raise Problem(
            401,
            "Unauthorized",
            "writes are disabled: no API token is configured (api.token or QSCRYPT_API_TOKEN)",
            kind="unauthorized",
            headers=challenge,
        )
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Problem(
            401,
            "Unauthorized",
            "a valid bearer token is required (Authorization: Bearer ...)",
            kind="unauthorized",
            headers=challenge,
        )


async def _after_profile_write(request: web.Request) -> None:
    """Decide for the changed profile now, so its decision is there when the client asks."""
    try:
        await request.app[DECIDER].refresh(reload=True)
    except db.UNAVAILABLE as exc:
        log.warning("decision pass after a profile write failed; the loop will retry", error=str(exc))


# --- rendering -----------------------------------------------------------------------------------


def earning_json(f: Figures) -> dict[str, Any]:
    c = f.candidate
    main = next((p for p in f.payouts if p.coin == c.coin), None)
    return {
        "coin": c.coin,
        "pool": c.pool,
        "stratum_url": c.endpoints[0] if c.endpoints else None,
        "endpoints": list(c.endpoints),
        "fee_pct": c.fee_pct,
        "pool_hashrate_hs": c.pool_hashrate_hs,
        "hashrate_hs": f.hashrate_hs,
        "coins_per_day": main.coins_per_day if main else None,
        "payouts": [
            {"coin": p.coin, "coins_per_day": p.coins_per_day, "usd_per_day": p.usd_per_day}
            for p in f.payouts
        ],
        "missing": list(c.missing),
        "usd_per_day": f.usd_per_day,
        "usd_per_day_after_fee": f.usd_per_day_after_fee,
        "power_usd_per_day": f.power_usd_per_day,
        "usd_per_day_net": f.usd_per_day_net,
    }


def _unpriced_json(choice: Choice, stratum_url: str | None) -> dict[str, Any]:
    """A held choice the current data has no figures for."""
    return {
        "coin": choice.coin,
        "pool": choice.pool,
        "stratum_url": stratum_url,
        "endpoints": [stratum_url] if stratum_url else [],
        "fee_pct": None,
        "pool_hashrate_hs": None,
        "hashrate_hs": None,
        "coins_per_day": None,
        "payouts": [],
        "missing": [],
        "usd_per_day": None,
        "usd_per_day_after_fee": None,
        "power_usd_per_day": None,
        "usd_per_day_net": None,
    }


def decision_json(view: DecisionView, now: datetime, max_age_s: float) -> dict[str, Any]:
    v = view.verdict

    def option(choice: Choice | None) -> dict[str, Any] | None:
        if choice is None:
            return None
        if choice in view.figures:
            return earning_json(view.figures[choice])
        held_url = view.held.stratum_url if view.held and view.held.held.choice == choice else None
        return _unpriced_json(choice, held_url)

    chosen = option(v.choice)
    return {
        "profile": view.profile.name,
        "strategy": view.profile.strategy,
        "algorithm": view.profile.algorithm,
        "hashrate_hs": view.hashrate_hs,
        "choice": chosen,
        "since": v.since,
        "held_s": _age_s(now, v.since),
        "expected_usd_per_day_net": chosen["usd_per_day_net"] if chosen else None,
        "runner_up": option(v.runner_up.choice) if v.runner_up else None,
        "margin_usd_per_day": v.margin_usd_per_day,
        "margin_pct": v.margin_pct,
        "stale": v.stale,
        "data_as_of": view.data_as_of,
        "data_age_s": _age_s(now, view.data_as_of),
        "max_data_age_s": max_age_s,
        "reason": v.reason,
        "evaluated_at": view.evaluated_at,
    }


def _coin_json(row: asyncpg.Record) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "id"}


def _hardware_json(rows: Sequence[asyncpg.Record]) -> list[dict[str, Any]]:
    devices: dict[str, dict[str, Any]] = {}
    for r in rows:
        device = devices.setdefault(
            r["name"],
            {
                "slug": r["slug"],
                "name": r["name"],
                "vendor": r["vendor"],
                "kind": r["kind"],
                "mining": [],
            },
        )
        if r["algorithm"] is not None:
            efficiency = r["power_w"] / (r["hashrate_hs"] / 1e6) if r["power_w"] is not None else None
            device["mining"].append(
                {
                    "algorithm": r["algorithm"],
                    "hashrate_hs": r["hashrate_hs"],
                    "power_w": r["power_w"],
                    "joules_per_mh": efficiency,
                    "source": r["source"],
                    "stale": r["stale"],
                    "updated_at": r["updated_at"],
                }
            )
    return list(devices.values())


# --- routes --------------------------------------------------------------------------------------

# --- handlers ------------------------------------------------------------------------------------


@route("GET", "/healthz", "The process is up", answer=models.Health)
async def healthz(request: web.Request, p: models.NoParams) -> web.Response:
    return json_response({"status": "ok"})


@route(
    "GET",
    "/readyz",
    "The database answers and decisions are being evaluated; data age per algorithm",
    answer=models.Ready,
    errors=(503,),
)
async def readyz(request: web.Request, p: models.NoParams) -> web.Response:
    decider = request.app[DECIDER]
    config = request.app[CONFIG]
    try:
        async with asyncio.timeout(2.0):
            await request.app[POOL].fetchval("SELECT 1")
    except db.UNAVAILABLE as exc:
        raise Problem(
            503,
            "Service Unavailable",
            f"the database is unreachable: {exc or type(exc).__name__}",
            kind="not-ready",
        ) from None
    now = decider.now()
    passed = _age_s(now, decider.last_pass)
    if passed is None or passed > max(30.0, 10 * config.evaluate_every_s):
        raise Problem(
            503,
            "Service Unavailable",
            "decisions are not being evaluated "
            f"(last pass: {'never' if passed is None else f'{passed:.0f} s ago'})",
            kind="not-ready",
        )
    data = {}
    for view in decider.views():
        age = _age_s(now, view.data_as_of)
        data[view.profile.algorithm] = {
            "data_as_of": view.data_as_of,
            "data_age_s": age,
            "stale": age is None or age > config.max_data_age_s,
        }
    return json_response({"status": "ready", "database": "ok", "last_pass_s": passed, "data": data})


@route("GET", "/metrics", "Prometheus metrics", content={"text/plain": {"schema": {"type": "string"}}})
async def metrics(request: web.Request, p: models.NoParams) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@route("GET", "/openapi.json", "This document", content={"application/json": {"schema": {"type": "object"}}})
async def openapi(request: web.Request, p: models.NoParams) -> web.Response:
    return json_response(document())


@route("GET", "/v1/coins", "Coins as the aggregator last saw them", answer=models.CoinList, errors=(503,))
async def list_coins(request: web.Request, p: models.AlgorithmFilter) -> web.Response:
    rows = await db.coins(request.app[POOL], p.algorithm)
    return json_response({"items": [_coin_json(r) for r in rows]})


async def _coin_or_404(request: web.Request, p: models.CoinParams) -> asyncpg.Record:
    row = await db.coin(request.app[POOL], p.symbol, p.algorithm)
    if row is None:
        raise not_found(f"no coin {p.symbol} mined with {p.algorithm}")
    return row


@route("GET", "/v1/coins/{symbol}", "One coin", answer=models.Coin, errors=(404, 503))
async def get_coin(request: web.Request, p: models.CoinParams) -> web.Response:
    return json_response(_coin_json(await _coin_or_404(request, p)))


@route(
    "GET",
    "/v1/coins/{symbol}/history",
    "A coin's history, averaged per step",
    answer=models.CoinHistory,
    errors=(404, 503),
)
async def coin_history(request: web.Request, p: models.CoinHistoryParams) -> web.Response:
    coin = await _coin_or_404(request, p)
    start, end, step = _time_range(p, request.app[DECIDER].now())
    rows = await db.coin_history(request.app[POOL], coin["id"], p.source, start, end, step)
    return json_response(
        {
            "symbol": coin["symbol"],
            "algorithm": coin["algorithm"],
            "source": p.source,
            **_range_json(start, end, step),
            "points": _rows(rows),
        }
    )


@route("GET", "/v1/pools", "Pools", answer=models.PoolList, errors=(503,))
async def list_pools(request: web.Request, p: models.PoolsParams) -> web.Response:
    rows = await db.pools(request.app[POOL], p.coin, p.algorithm)
    return json_response({"items": _rows(rows, drop=("id",))})


async def _pool_or_404(request: web.Request, p: models.PoolParams) -> asyncpg.Record:
    rows = await db.pools_named(request.app[POOL], p.name, p.coin)
    if not rows:
        raise not_found(f"no pool {p.name!r}" + (f" for {p.coin}" if p.coin else ""))
    if len(rows) > 1:
        raise invalid("coin", f"pool {p.name!r} exists for {', '.join(r['coin'] for r in rows)}: say which")
    return rows[0]


@route("GET", "/v1/pools/{name}", "One pool", answer=models.Pool, errors=(404, 503))
async def get_pool(request: web.Request, p: models.PoolParams) -> web.Response:
    row = await _pool_or_404(request, p)
    return json_response({k: v for k, v in row.items() if k != "id"})


@route(
    "GET",
    "/v1/pools/{name}/history",
    "A pool's history, averaged per step",
    answer=models.PoolHistory,
    errors=(404, 503),
)
async def pool_history(request: web.Request, p: models.PoolHistoryParams) -> web.Response:
    pool = await _pool_or_404(request, p)
    start, end, step = _time_range(p, request.app[DECIDER].now())
    rows = await db.pool_history(request.app[POOL], pool["id"], start, end, step)
    return json_response(
        {"name": pool["name"], "coin": pool["coin"], **_range_json(start, end, step), "points": _rows(rows)}
    )


@route(
    "GET",
    "/v1/hardware",
    "Mining hardware and its figures per algorithm",
    answer=models.HardwareList,
    errors=(503,),
)
async def list_hardware(request: web.Request, p: models.HardwareListParams) -> web.Response:
    rows = await db.hardware(request.app[POOL], p.algorithm, p.kind)
    return json_response({"items": _hardware_json(rows)})


@route("GET", "/v1/hardware/{slug}", "One device", answer=models.Hardware, errors=(404, 503))
async def get_hardware(request: web.Request, p: models.HardwareParams) -> web.Response:
    devices = _hardware_json(await db.hardware_by_slug(request.app[POOL], p.slug))
    if not devices:
        raise not_found(f"no hardware {p.slug!r}")
    return json_response(devices[0])


@route(
    "GET",
    "/v1/profitability",
    "What a hashrate earns on each coin and pool, best net first (latest aggregator run)",
    answer=models.Profitability,
    errors=(404, 503),
)
async def profitability(request: web.Request, p: models.ProfitabilityParams) -> web.Response:
    hashrate, watts = p.hashrate, p.watts
    if p.hardware is not None:
        device = await db.hardware_figures(request.app[POOL], p.hardware, p.algorithm)
        if device is None:
            raise not_found(f"no {p.algorithm} figures for hardware {p.hardware!r}", "hardware")
        # What the client says it runs at wins over the device's published figures.
        hashrate = device["hashrate_hs"] if hashrate is None else hashrate
        watts = device["power_w"] if watts is None else watts
    decider = request.app[DECIDER]
    market = await decider.market(p.algorithm)
    now = decider.now()
    power = power_cost_per_day(watts or 0.0, p.power_cost)
    items: list[dict[str, Any]] = []
    if market is not None:
        hashrate = hashrate or market.reference_hashrate_hs
        priced = [
            figures(c, hashrate, power) for c in market.candidates if p.include_solo or c.pool is not None
        ]
        priced.sort(
            key=lambda f: (
                f.usd_per_day_net is None,
                -(f.usd_per_day_net or 0.0),
                f.candidate.coin,
                f.candidate.pool or "",
            )
        )
        items = [{"rank": i, **earning_json(f)} for i, f in enumerate(priced, 1)]
    data_as_of = market.computed_at if market else None
    age = _age_s(now, data_as_of)
    return json_response(
        {
            "algorithm": p.algorithm,
            "hashrate_hs": hashrate,
            "power_w": watts or 0.0,
            "power_cost_kwh": p.power_cost,
            "power_usd_per_day": power,
            "hardware": p.hardware,
            "data_as_of": data_as_of,
            "data_age_s": age,
            "stale": age is None or age > decider.rule.max_data_age_s,
            "items": items,
        }
    )


@route("GET", "/v1/profiles", "Profiles", answer=models.ProfileList, errors=(503,))
async def list_profiles(request: web.Request, p: models.NoParams) -> web.Response:
    return json_response({"items": [profile.to_json() for profile in await db.profiles(request.app[POOL])]})


@route("GET", "/v1/profiles/{name}", "One profile", answer=models.StoredProfile, errors=(404, 409, 503))
async def get_profile(request: web.Request, p: models.ProfileParams) -> web.Response:
    profile = await db.profile(request.app[POOL], p.name)
    if profile is None:
        raise not_found(f"no profile {p.name!r}")
    return json_response(profile.to_json())


@route(
    "POST",
    "/v1/profiles",
    "Create a profile",
    answer=models.StoredProfile,
    status=201,
    errors=(409, 413),
    write=True,
    created=True,
)
async def create_profile(
    request: web.Request, p: models.NoParams, body: models.ProfileCreate
) -> web.Response:
    profile = profile_from_input(body, body.name)
    stored = await db.insert_profile(request.app[POOL], profile)
    if stored is None:
        raise Problem(
            409,
            "Conflict",
            f"profile {profile.name!r} exists: PUT /v1/profiles/{profile.name} replaces it",
            kind="conflict",
        )
    await _after_profile_write(request)
    return json_response(stored.to_json(), status=201, headers={"Location": f"/v1/profiles/{stored.name}"})


@route(
    "PUT",
    "/v1/profiles/{name}",
    "Create or replace a profile (not rename it)",
    answer=models.StoredProfile,
    errors=(413,),
    write=True,
    created=True,
)
async def replace_profile(
    request: web.Request,
    p: models.ProfileParams,
    body: models.ProfileReplace,
) -> web.Response:
    if body.name is not None and body.name != p.name:
        raise invalid("name", f"must be {p.name!r} as in the URL (profiles are not renamed)")
    stored, created = await db.upsert_profile(request.app[POOL], profile_from_input(body, p.name))
    await _after_profile_write(request)
    if created:
        return json_response(stored.to_json(), status=201,
                             headers={"Location": f"/v1/profiles/{stored.name}"})
    return json_response(stored.to_json())


@route(
    "DELETE",
    "/v1/profiles/{name}",
    "Delete a profile (its workers fall back to default)",
    status=204,
    errors=(404, 409),
    write=True,
)
async def delete_profile(request: web.Request, p: models.ProfileParams) -> web.Response:
    if p.name == DEFAULT_PROFILE:
        raise Problem(
            409, "Conflict", "the default profile cannot be deleted: workers fall back to it", kind="conflict"
        )
    if not await db.delete_profile(request.app[POOL], p.name):
        raise not_found(f"no profile {p.name!r}")
    await _after_profile_write(request)
    return web.Response(status=204)


@route("GET", "/v1/decisions", "Every profile's decision", answer=models.DecisionList, etag=True)
async def list_decisions(request: web.Request, p: models.NoParams) -> web.Response:
    decider = request.app[DECIDER]
    views = decider.views()
    etag = 'W/"' + hashlib.sha256(" ".join(v.etag for v in views).encode()).hexdigest()[:32] + '"'
    now, max_age = decider.now(), decider.rule.max_data_age_s
    return conditional(request, etag, lambda: {"items": [decision_json(v, now, max_age) for v in views]})


@route(
    "GET",
    "/v1/decisions/{profile}",
    "What a profile's miners should mine now, and why",
    answer=models.Decision,
    errors=(404, 409, 503),
    etag=True,
)
async def get_decision(request: web.Request, p: models.DecisionParams) -> web.Response:
    decider = request.app[DECIDER]
    view = decider.view(p.profile)
    if view is None and await db.profile(request.app[POOL], p.profile) is not None:
        # Created by another API process since this one's last pass.
        await decider.refresh(reload=True)
        view = decider.view(p.profile)
    if view is None:
        raise not_found(f"no profile {p.profile!r}")
    now, max_age = decider.now(), decider.rule.max_data_age_s
    return conditional(request, view.etag, lambda: decision_json(view, now, max_age))


@route("GET", "/v1/workers", "Workers, by name", answer=models.WorkerList, errors=(503,))
async def list_workers(request: web.Request, p: models.WorkersParams) -> web.Response:
    rows = await db.workers(request.app[POOL], p.profile, p.after, p.limit)
    return json_response({"items": _rows(rows),
                          "next_after": rows[-1]["name"] if len(rows) == p.limit else None})


@route("GET", "/v1/blocks", "Blocks found, newest first", answer=models.BlockList, errors=(503,))
async def list_blocks(request: web.Request, p: models.BlocksParams) -> web.Response:
    rows = await db.blocks(request.app[POOL], p.coin, p.status, p.from_, p.to, p.before, p.limit)
    return json_response({"items": _rows(rows),
                          "next_before": rows[-1]["id"] if len(rows) == p.limit else None})


@route(
    "GET",
    "/v1/switch-events",
    "Moves of miners between upstreams, newest first",
    answer=models.SwitchEventList,
    errors=(503,),
)
async def list_switch_events(request: web.Request, p: models.SwitchEventsParams) -> web.Response:
    rows = await db.switch_events(request.app[POOL], p.profile, p.from_, p.to, p.before, p.limit)
    return json_response({"items": _rows(rows),
                          "next_before": rows[-1]["id"] if len(rows) == p.limit else None})


_READING_KEYS = tuple(models.AsicReading.model_fields)


def _device_summary(row: asyncpg.Record) -> dict[str, Any]:
    reading = row["reading"] or {}
    return {
        "name": row["name"], "host": row["host"], "port": row["port"], "model": row["model"],
        "worker": row["worker"], "source": row["source"], "ok": row["ok"], "polled_at": row["polled_at"],
        "error": row["error"], "hashrate_hs": reading.get("hashrate_hs") if row["ok"] else None,
        "temp_max_c": reading.get("temp_max_c") if row["ok"] else None, "disagreement": row["disagreement"],
    }


def _device_json(row: asyncpg.Record) -> dict[str, Any]:
    reading = None
    if row["reading"] is not None:
        # The poller's reading, as documented: keys it may add later are not part of the answer.
        reading = {k: row["reading"].get(k) for k in _READING_KEYS if k != "read_at"}
        reading["read_at"] = row["read_at"]
        for key in ("fans_rpm", "chains", "pools", "problems"):
            reading[key] = reading[key] or []
        reading["chains"] = [{k: c.get(k) for k in models.AsicChain.model_fields} for c in reading["chains"]]
        reading["pools"] = [{k: p.get(k) for k in models.AsicPool.model_fields} for p in reading["pools"]]
    status = None
    if row["polled_at"] is not None:
        status = {"polled_at": row["polled_at"], "ok": row["ok"], "error": row["error"],
                  "failures": row["failures"]}
    comparison = None
    if row["window_s"] is not None:
        comparison = {"window_s": row["window_s"], "device_hashrate_hs": row["device_window_hs"],
                      "proxy_hashrate_hs": row["proxy_hs"], "shares": row["window_shares"],
                      "disagreement": row["disagreement"]}
    return {
        "name": row["name"], "host": row["host"], "port": row["port"], "model": row["model"],
        "worker": row["worker"], "rate_unit": row["rate_unit"], "source": row["source"],
        "created_at": row["created_at"], "updated_at": row["updated_at"], "status": status,
        "reading": reading, "comparison": comparison,
    }


def _config_device(name: str) -> Problem:
    return Problem(409, "Conflict", f"device {name!r} is registered in the config file ([[fleet.devices]]): "
                   "change or remove it there", kind="conflict")


@route("GET", "/v1/devices", "ASICs polled over the cgminer API, with their last poll",
       answer=models.DeviceList, errors=(503,))
async def list_devices(request: web.Request, p: models.NoParams) -> web.Response:
    return json_response({"items": [_device_summary(r) for r in await db.devices(request.app[POOL])]})


@route("GET", "/v1/devices/{name}", "One ASIC and its last reading", answer=models.Device, errors=(404, 503))
async def get_device(request: web.Request, p: models.DeviceParams) -> web.Response:
    row = await db.device(request.app[POOL], p.name)
    if row is None:
        raise not_found(f"no device {p.name!r}")
    return json_response(_device_json(row))


@route(
    "PUT",
    "/v1/devices/{name}",
    "Register an ASIC for polling, or replace one registered here",
    answer=models.Device,
    errors=(409, 413),
    write=True,
    created=True,
)
async def put_device(request: web.Request, p: models.DeviceParams, body: models.DeviceInput) -> web.Response:
    pool = request.app[POOL]
    created = await db.upsert_device(pool, p.name, body.host, body.port, body.model, body.worker,
                                     body.rate_unit)
    if created is None:
        raise _config_device(p.name)
    row = await db.device(pool, p.name)
    assert row is not None
    if created:
        return json_response(_device_json(row), status=201, headers={"Location": f"/v1/devices/{p.name}"})
    return json_response(_device_json(row))


@route("DELETE", "/v1/devices/{name}", "Stop polling an ASIC registered here", status=204, errors=(404, 409),
       write=True)
async def delete_device(request: web.Request, p: models.DeviceParams) -> web.Response:
    source = await db.delete_device(request.app[POOL], p.name)
    if source is None:
        raise not_found(f"no device {p.name!r}")
    if source == "config":
        raise _config_device(p.name)
    return web.Response(status=204)

# --- dashboard: pool and account pages, bans -------------------------------------------------------

ONLINE_WINDOW_S = 600.0
_RECENT = 10
# About a hundred points a chart: a page of ten workers' charts stays a few thousand points.
_SERIES_STEP_S = {"1h": 300.0, "24h": 900.0, "7d": 7200.0}
_SERIES_SPAN = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}


def _points(rows: Sequence[asyncpg.Record]) -> list[dict[str, Any]]:
    return [
        {
            "ts": r["ts"],
            "hashrate_hs": r["hashrate_hs"] or 0.0,
            "accepted": r["accepted"],
            "rejected": r["rejected"],
            "stale": r["stale"],
        }
        for r in rows
    ]


def _series_range(request: web.Request, window: str) -> tuple[datetime, datetime, float]:
    now = request.app[DECIDER].now()
    return now - _SERIES_SPAN[window], now, _SERIES_STEP_S[window]


@route(
    "GET",
    "/v1/overview",
    "The pool page: hashrate, miners online, shares, blocks, where each profile mines, upstreams",
    answer=models.Overview,
    errors=(503,),
    etag=True,
)
async def overview(request: web.Request, p: models.NoParams) -> web.Response:
    pool = request.app[POOL]
    now = request.app[DECIDER].now()
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    # Small indexed queries, on several of the pool's connections at once.
    (
        hashrate_1h,
        hashrate_24h,
        (workers_online, miners_online),
        shares,
        blocks,
        profiles,
        upstreams,
        switches,
        failovers,
    ) = await asyncio.gather(
        db.pool_hashrate(pool, hour, 3600.0),
        db.pool_hashrate(pool, day, 86400.0),
        db.online(pool, now - timedelta(seconds=ONLINE_WINDOW_S)),
        db.share_counts(pool, day),
        db.block_counts(pool),
        db.profiles_now(pool),
        db.upstream_states(pool),
        db.switch_events(pool, None, None, None, None, _RECENT),
        db.recent_failovers(pool, _RECENT),
    )
    body = {
        "hashrate_1h_hs": hashrate_1h,
        "hashrate_24h_hs": hashrate_24h,
        "online_window_s": ONLINE_WINDOW_S,
        "workers_online": workers_online,
        "miners_online": miners_online,
        "shares_24h": _rows(shares),
        "blocks": blocks,
        "profiles": _rows(profiles),
        "upstreams": _rows(upstreams),
        "switches": _rows(switches),
        "failovers": _rows(failovers),
    }
    return etagged(request, body)


@route(
    "GET",
    "/v1/hashrate",
    "The pool's hashrate and shares per step, from the 5-minute rollups",
    answer=models.HashrateSeries,
    errors=(503,),
    etag=True,
)
async def pool_hashrate(request: web.Request, p: models.HashrateParams) -> web.Response:
    start, end, step = _series_range(request, p.window)
    rows = await db.pool_series(request.app[POOL], start, end, step)
    return etagged(request, {"window": p.window, "step_s": step, "points": _points(rows)})


@route(
    "GET",
    "/v1/accounts/{account}/workers",
    "An account's workers: hashrate, last share, shares of the last day by result and reason",
    answer=models.AccountWorkerList,
    errors=(503,),
    etag=True,
)
async def account_workers(request: web.Request, p: models.AccountWorkersParams) -> web.Response:
    now = request.app[DECIDER].now()
    rows = await db.account_workers(
        request.app[POOL], p.account, now - timedelta(days=1), now - timedelta(hours=1), p.after, p.limit
    )
    body = {
        "account": p.account,
        "items": _rows(rows),
        "next_after": rows[-1]["name"] if len(rows) == p.limit else None,
    }
    return etagged(request, body)


@route(
    "GET",
    "/v1/accounts/{account}/hashrate",
    "An account's hashrate per worker and in total, per step, from the 5-minute rollups",
    answer=models.AccountHashrate,
    errors=(503,),
    etag=True,
)
async def account_hashrate(request: web.Request, p: models.AccountHashrateParams) -> web.Response:
    start, end, step = _series_range(request, p.window)
    total, workers = await db.account_series_json(request.app[POOL], p.account, start, end, step)
    # The points come as JSON from PostgreSQL (see db.account_series_json): spliced in as they are.
    head = dumps({"account": p.account, "window": p.window, "step_s": step})
    return etagged_text(request, f'{head[:-1]},"total":{total},"workers":{workers}}}')


@route("GET", "/v1/bans", "The operator's bans (admin)", answer=models.BanList, write=True)
async def list_bans(request: web.Request, p: models.BansParams) -> web.Response:
    rows = await db.bans(request.app[POOL], p.after, p.limit)
    return json_response({"items": _rows(rows),
                          "next_after": rows[-1]["id"] if len(rows) == p.limit else None})


@route(
    "POST",
    "/v1/bans",
    "Ban a worker (a name without a dot: its whole account) or an IP; proxies refuse it within seconds",
    answer=models.Ban,
    status=201,
    errors=(413,),
    write=True,
)
async def create_ban(request: web.Request, p: models.NoParams, body: models.BanCreate) -> web.Response:
    row = await db.insert_ban(request.app[POOL], body.kind, body.value, body.reason, body.expires_in_s)
    return json_response(dict(row.items()), status=201)


@route("DELETE", "/v1/bans/{id}", "Lift a ban", status=204, errors=(404,), write=True)
async def delete_ban(request: web.Request, p: models.BanParams) -> web.Response:
    if not await db.delete_ban(request.app[POOL], p.id):
        raise not_found(f"no ban {p.id}")
    return web.Response(status=204)


# --- the web dashboard (api/dashboard): static files, served as they are ---------------------------

_DASHBOARD = Path(__file__).parent / "dashboard"
_DASHBOARD_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# Everything the page loads comes from this server: the browser is told to fetch nothing else.
_CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


@functools.cache
def _dashboard_file(name: str) -> bytes:
    return (_DASHBOARD / name).read_bytes()


def _dashboard_response(name: str) -> web.Response:
    return web.Response(
        body=_dashboard_file(name),
        content_type=_DASHBOARD_TYPES[Path(name).suffix],
        charset="utf-8",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": _CSP,
            "X-Content-Type-Options": "nosniff",
        },
    )


@route(
    "GET",
    "/",
    "The web dashboard: pool, account and admin pages (it reads the endpoints below)",
    content={"text/html": {"schema": {"type": "string"}}},
)
async def dashboard(request: web.Request, p: models.DashboardParams) -> web.Response:
    return _dashboard_response("index.html")


@route(
    "GET",
    "/dashboard/{file}",
    "The dashboard's scripts and style sheet",
    content={"text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}}},
)
async def dashboard_asset(request: web.Request, p: models.DashboardFileParams) -> web.Response:
    return _dashboard_response(p.file)


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document of OPERATIONS."""
    return openapi_document(OPERATIONS)


def _bound(op: Operation) -> Handler:
    """The aiohttp handler of `op`: parameters first, then the token, then the body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        params = read_params(op.params, request.query, request.match_info)
        if op.write:
            await _require_token(request)
        if op.body is None:
            return await op.handler(request, params)
        return await op.handler(request, params, op.body.read(json_body(await request.read())))

    return handler


def create_app(
    config: ApiConfig,
    dsn: str,
    *,
    clock: Clock = utcnow,
    run_decider: bool = True,
) -> web.Application:
    """The API on the database at `dsn` (migrated by the caller). `run_decider` False leaves the
    decision passes to the caller (`app[DECIDER].refresh()`), for tests that move a fake clock."""
    metrics_ = ApiMetrics()
    middlewares: list[Any] = [_metrics_middleware]
    if config.rate_limit_per_s > 0:
        middlewares.append(
            _rate_limit_middleware(RateLimiter(config.rate_limit_per_s, config.rate_limit_burst))
        )
    middlewares.append(_problem_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=_MAX_BODY)
    app[CONFIG] = config
    app[METRICS] = metrics_
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, _bound(op))

    async def start(app: web.Application) -> None:
        pool = await db.create_pool(dsn, config.db_pool_size)
        app[POOL] = pool
        rule = Rule(config.switch_threshold_pct, config.min_dwell_s, config.max_data_age_s)
        app[DECIDER] = decider = Decider(pool, rule, metrics_, clock=clock, every_s=config.evaluate_every_s)
        await decider.refresh()
        if run_decider:
            app[_TASK] = asyncio.create_task(decider.run(), name="api-decider")

    async def stop(app: web.Application) -> None:
        task = app.get(_TASK)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await app[POOL].close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


# The payouts endpoints register themselves on OPERATIONS (api.routes), after this module's own.
from api import payouts as _payouts  # noqa: E402, F401
