"""What every endpoint module of the API shares: the application's keys, JSON answers, conditional
GETs, and `route`, which registers a handler on OPERATIONS (served and documented by api.app).
Endpoint modules (api.app's own handlers, api.payouts) import from here, never from api.app."""

import functools
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar, Unpack

import asyncpg
from aiohttp import web

from api.config import ApiConfig
from api.decider import Decider
from api.metrics import ApiMetrics
from api.openapi import Details, Operation

CONFIG = web.AppKey("config", ApiConfig)
POOL = web.AppKey("pool", asyncpg.Pool)
DECIDER = web.AppKey("decider", Decider)
METRICS = web.AppKey("metrics", ApiMetrics)

def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


dumps = functools.partial(json.dumps, default=json_default, allow_nan=False, separators=(",", ":"))


def json_response(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def not_modified(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    # Weak comparison (RFC 9110 §13.1.2): validators match whatever their W/ prefixes.
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


def conditional(request: web.Request, etag: str, body: Callable[[], Any]) -> web.Response:
    """For an endpoint that knows its validator before its body: the body is built only when sent."""
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    return json_response(body(), headers=headers)


def etagged(request: web.Request, body: Any) -> web.Response:
    """The body with a validator of its content: a poll that finds it unchanged gets a 304."""
    return etagged_text(request, dumps(body))


def etagged_text(request: web.Request, text: str) -> web.Response:
    """`text` (JSON) as the body, serialised once, its digest the ETag."""
    data = text.encode()
    etag = 'W/"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type="application/json", headers=headers)


OPERATIONS: list[Operation] = []
"""Every route, in the order served and documented."""
Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[web.StreamResponse]])


def route(method: str, path: str, summary: str, **details: Unpack[Details]) -> Callable[[Endpoint], Endpoint]:
    """Serve the decorated handler as `method` on `path`, documented with `summary` and `details`."""

    def register(handler: Endpoint) -> Endpoint:
        OPERATIONS.append(Operation.of(handler, method, path, summary, **details))
        return handler

    return register
