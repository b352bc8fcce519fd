"""Errors as RFC 9457 problem details (`application/problem+json`)."""

import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

CONTENT_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:qscrypt:problem:"


class Problem(Exception):
    """An error answer. `invalid_params` name the request fields at fault (RFC 9457 §3's
    "invalid-params" extension), so a client can point at the bad one."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str = "",
        invalid_params: tuple[tuple[str, str], ...] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind
        self.invalid_params = invalid_params
        self.headers = headers or {}

    def body(self, instance: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": _TYPE_PREFIX + self.kind if self.kind else "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.invalid_params:
            body["invalid-params"] = [{"name": n, "reason": r} for n, r in self.invalid_params]
        return body

    def response(self, instance: str) -> web.Response:
        return web.Response(
            status=self.status,
            text=json.dumps(self.body(instance)),
            content_type=CONTENT_TYPE,
            headers=self.headers,
        )


def rejected(invalid_params: Sequence[tuple[str, str]]) -> Problem:
    """A 400 naming every query parameter or body field at fault, the first in `detail`."""
    name, reason = invalid_params[0]
    return Problem(
        400,
        "Invalid request",
        f"{name}: {reason}",
        kind="invalid-parameter",
        invalid_params=tuple(invalid_params),
    )


def invalid(name: str, reason: str) -> Problem:
    """A 400 naming the query parameter or body field `name`."""
    return rejected([(name, reason)])


def not_found(detail: str, parameter: str | None = None) -> Problem:
    """A 404; `parameter` names the query parameter that points at nothing, where one does."""
    if parameter is None:
        return Problem(404, "Not Found", detail, kind="not-found")
    return Problem(
        404, "Not Found", f"{parameter}: {detail}", kind="not-found", invalid_params=((parameter, detail),)
    )
