"""The OpenAPI 3.1 document served at /openapi.json, generated from the operations the API serves
and the models in `api/models.py` that validate their requests: what is documented is what is
checked. Tests hold it to the router and hold every answer to its schema."""

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from api.config import TOKEN_ENV
from api.inputs import Body
from api.models import IN_PATH, NoParams, Params, ProblemDetails

Schema = dict[str, Any]
_REF = "#/components/schemas/{model}"
_ERRORS = {
    400: "a parameter or body field is invalid (named in invalid-params)",
    401: "a bearer token is missing or wrong",
    404: "no such resource",
    409: "conflicts with the current state (a name taken, the default profile, an invalid stored profile)",
    413: "the body is larger than 64 KiB",
    429: "rate limited: retry after the Retry-After header's seconds",
    503: "the database is unreachable or decisions are not being evaluated",
}
_ETAG = {"ETag": {"schema": {"type": "string"}, "description": "weak validator; send it in If-None-Match"}}
_LOCATION = {"Location": {"schema": {"type": "string"}}}


class Details(TypedDict, total=False):
    """What the document says of an operation beyond its handler's signature."""

    answer: type[BaseModel]
    """The JSON body of a success; left out: `content` says what it is, or there is none."""
    content: Schema
    status: int
    errors: tuple[int, ...]
    write: bool
    """Needs the bearer token."""
    created: bool
    """May answer 201 with a Location."""
    etag: bool
    """Answers 304 to an If-None-Match that matches its ETag."""


@dataclass(frozen=True)
class Operation:
    """One method on one path: its handler and everything the document says about it."""

    method: str
    path: str
    summary: str
    handler: Callable[..., Awaitable[web.StreamResponse]]
    """Called with the request and the validated params (and body, where there is one)."""
    params: type[Params] = NoParams
    body: Body | None = None
    answer: type[BaseModel] | None = None
    content: Schema | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    write: bool = False
    created: bool = False
    etag: bool = False

    @classmethod
    def of(
        cls,
        handler: Callable[..., Awaitable[web.StreamResponse]],
        method: str,
        path: str,
        summary: str,
        **details: Unpack[Details],
    ) -> "Operation":
        """`handler(request, params: SomeParams[, body: SomeBody])` served as `method` on `path`:
        the types it declares for its params and body are what requests are validated against."""
        hints = typing.get_type_hints(handler, include_extras=True)
        _request, params, *body = inspect.signature(handler).parameters
        return cls(
            method, path, summary, handler, hints[params], Body(hints[body[0]]) if body else None, **details
        )


def _parameter(name: str, where: str, schema: Schema) -> Schema:
    """A parameter from its model's property schema. A parameter is given or left out: null has no
    spelling in a URL, so `X | None` documents as X."""
    schema = {k: v for k, v in schema.items() if k != "title"}
    description = schema.pop("description", None)
    if "anyOf" in schema:
        (given,) = [s for s in schema.pop("anyOf") if s != {"type": "null"}]
        schema = {**given, **schema}
    if "default" in schema and schema["default"] is None:
        del schema["default"]
    parameter = {"name": name, "in": where, "required": where == "path", "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def _parameters(op: Operation) -> list[Schema]:
    properties = op.params.model_json_schema(ref_template=_REF)["properties"]
    parameters = [
        _parameter(key, "path" if IN_PATH in field.metadata else "query", properties[key])
        for name, field in op.params.model_fields.items()
        for key in [field.alias or name]
    ]
    if op.etag:
        parameters.append(
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "a 304 answers an unchanged decision",
            }
        )
    return parameters


def _problem(status: int) -> Schema:
    response: Schema = {
        "description": _ERRORS[status],
        "content": {"application/problem+json": {"schema": {"$ref": _REF.format(model="ProblemDetails")}}},
    }
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    return response


def _operation(op: Operation, schemas: dict[Any, Schema]) -> Schema:
    success: Schema = {"description": "OK" if op.status < 300 else "done"}
    if op.answer is not None:
        success["content"] = {"application/json": {"schema": schemas[op.answer]}}
    elif op.content is not None:
        success["content"] = op.content
    if op.etag:
        success["headers"] = _ETAG
    responses: Schema = {str(op.status): success}
    if op.created:
        responses["201"] = {**success, "description": "created", "headers": _LOCATION}
    if op.etag:
        responses["304"] = {"description": "unchanged since the ETag given", "headers": _ETAG}
    for status in sorted({400, 429, *op.errors, *((401, 503) if op.write else ())}):
        responses[str(status)] = _problem(status)
    document: Schema = {"summary": op.summary, "parameters": _parameters(op), "responses": responses}
    if op.write:
        document["security"] = [{"bearer": []}]
    if op.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas[op.body]}},
        }
    return document


def document(operations: Iterable[Operation]) -> Schema:
    operations = list(operations)
    # Every model the document refers to, generated together so they share one set of components.
    keyed: dict[Any, TypeAdapter[Any]] = {ProblemDetails: TypeAdapter(ProblemDetails)}
    for op in operations:
        if op.answer is not None:
            keyed[op.answer] = TypeAdapter(op.answer)
        if op.body is not None:
            keyed[op.body] = op.body.adapter
    generated, components = TypeAdapter.json_schemas(
        [(key, "validation", adapter) for key, adapter in keyed.items()], ref_template=_REF
    )
    schemas = {key: schema for (key, _), schema in generated.items()}
    paths: Schema = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schemas)
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
            "schemas": components["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
