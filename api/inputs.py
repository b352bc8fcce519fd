"""A request's parameters and body, read into their models (`api/models.py`). Whatever pydantic
refuses is a 400 that names each parameter or field at fault (`params.coin`, `deny_coins[1]`)."""

import json
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from multidict import MultiMapping
from pydantic import BaseModel, Discriminator, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from api.models import IN_PATH, Params
from api.problems import invalid, rejected
from qscrypt.validation import describe, dotted, known_keys

P = TypeVar("P", bound=Params)
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")


def query_names(model: type[Params]) -> list[str]:
    """The query parameters `model` takes (its path segments come from the route)."""
    return [f.alias or n for n, f in model.model_fields.items() if IN_PATH not in f.metadata]


def read_params(model: type[P], query: MultiMapping[str], path: Mapping[str, str]) -> P:
    takes = ", ".join(sorted(query_names(model))) or "none"
    for name in query:
        if name in path:  # the route's own segment: not a query parameter, whatever the spelling
            raise invalid(name, f"unknown parameter (this endpoint takes: {takes})")
        if len(query.getall(name)) > 1:
            raise invalid(name, "given more than once")
    try:
        return model.model_validate({**query, **path})
    except ValidationError as exc:
        raise rejected(
            [
                (
                    dotted(e["loc"]),
                    f"unknown parameter (this endpoint takes: {takes})"
                    if e["type"] in _UNKNOWN
                    else describe(e),
                )
                for e in exc.errors()
            ]
        ) from None


def json_body(raw: bytes) -> Any:
    """The body as JSON; NaN and Infinity, which JSON does not have, are refused."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not a JSON number")

    try:
        return json.loads(raw, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise invalid("body", f"not valid JSON: {exc}") from None


class Body:
    """A request body type: one model, or a union of models told apart by one field (the
    discriminator)."""

    def __init__(self, tp: Any) -> None:
        self.adapter: TypeAdapter[Any] = TypeAdapter(tp)
        single = isinstance(tp, type) and issubclass(tp, BaseModel)
        self.model: type[BaseModel] | None = tp if single else None
        self.tag = ""
        self.variants: dict[str, type[BaseModel]] = {}
        if self.model is not None:
            return
        union, *metadata = typing.get_args(tp)
        self.tag = next(str(m.discriminator) for m in metadata if isinstance(m, Discriminator))
        self.variants: dict[str, type[BaseModel]] = {
            typing.get_args(m.model_fields[self.tag].annotation)[0]: m for m in typing.get_args(union)
        }

    def read(self, data: Any) -> Any:
        try:
            return self.adapter.validate_python(data, strict=True)
        except ValidationError as exc:
            raise rejected([self._named(e) for e in exc.errors()]) from None

    def _named(self, error: ErrorDetails) -> tuple[str, str]:
        if self.model is not None:
            loc = list(error["loc"])
            if not loc:
                return "body", describe(error)
            if error["type"] not in _UNKNOWN:
                return dotted(loc), describe(error)
            return dotted(loc), f"unknown field (known: {', '.join(known_keys(self.model, loc[:-1]))})"
        if not error["loc"]:  # refused before a variant was chosen
            if error["type"] == "union_tag_not_found":
                return self.tag, "is required"
            if error["type"] == "union_tag_invalid":
                given = error["input"][self.tag]
                return self.tag, f"must be one of {', '.join(self.variants)}, got {given!r}"
            return "body", describe(error)
        # Below the chosen variant pydantic's location starts with its tag: the client never wrote it.
        tag, *loc = error["loc"]
        variant = self.variants[str(tag)]
        if error["type"] not in _UNKNOWN:
            return dotted(loc), describe(error)
        known = ", ".join(known_keys(variant, loc[:-1]))
        if loc[:-1] == ["params"]:
            return dotted(loc), f"not a parameter of strategy {tag} (it takes: {known})"
        return dotted(loc), f"unknown field (known: {known})"
