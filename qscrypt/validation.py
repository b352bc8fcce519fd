"""How pydantic's validation errors are worded here, for the TOML configuration and the API alike.

pydantic validates; these helpers turn one of its errors into the house's words: where (`dotted`:
`proxy.upstreams[0].name`, `params.coin`), what is wrong (`describe`: "must be an integer, got
'many'"), and for an unknown key, which keys the place takes (`known_keys`).
"""

import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

# One phrase per pydantic error type; `{name}`s are filled from the error's context. A type not
# listed keeps pydantic's own message.
_PHRASES = {
    "missing": "is required",
    "unexpected_keyword_argument": "unknown key",
    "extra_forbidden": "unknown key",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_unicode": "is not valid Unicode text",
    "string_pattern_mismatch": "must match {pattern}",
    "literal_error": "must be one of {expected}",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be {mapping}",
    "model_type": "must be {mapping}",
    "model_attributes_type": "must be {mapping}",
    "dataclass_type": "must be {mapping}",
    "dataclass_args_type": "must be {mapping}",
    "path_type": "must be a path string",
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "too_long": "must have at most {max_length} entries",
    "timezone_aware": "needs a time zone offset (Z or +HH:MM)",
}
# Where the value given says nothing more than the phrase.
_NO_VALUE = {"missing", "unexpected_keyword_argument", "extra_forbidden"}
_SHOWN_CHARS = 80


def dotted(loc: Sequence[str | int]) -> str:
    """A location as a key path: ('upstreams', 0, 'name') -> 'upstreams[0].name'."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key


def _shown(value: Any, mapping: str) -> str:
    if isinstance(value, dict):
        return mapping
    if isinstance(value, list | tuple):
        return "a list"
    if value is None or isinstance(value, bool):  # as JSON and TOML write them
        return "null" if value is None else str(value).lower()
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def describe(error: ErrorDetails, mapping: str = "a JSON object") -> str:
    """What is wrong with the value, in words: our own validators' messages as they are written.
    `mapping` names what a JSON object is where the value comes from (a TOML file: "a table")."""
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "value_error" and isinstance(context.get("error"), Exception):
        return str(context["error"])
    phrase = _PHRASES.get(kind)
    if phrase is None:
        phrase = error["msg"][:1].lower() + error["msg"][1:]
    else:
        # A bound of a float field arrives as a float: 100 reads better than 100.0.
        shown = {k: f"{v:g}" if isinstance(v, float) else v for k, v in context.items()}
        phrase = phrase.format(**shown, mapping=mapping)
    return phrase if kind in _NO_VALUE else f"{phrase}, got {_shown(error['input'], mapping)}"


def unwrap(tp: Any) -> Any:
    """The type under Annotated and Optional (`X | None` is X): what a value of it is, when given."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return unwrap(members[0])
    return tp


def _fields(tp: Any) -> dict[str, Any] | None:
    """The keys a table of type `tp` takes and each one's type; None when `tp` is no table."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {field.alias or name: field.annotation for name, field in tp.model_fields.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        return {f.name: hints[f.name] for f in dataclasses.fields(tp) if f.init}
    return None


def step(tp: Any, part: str | int) -> Any:
    """The type of what key or index `part` holds inside a value of type `tp`; None when unknown."""
    tp = unwrap(tp)
    if tp is Any:
        return Any
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(part, int):
        return args[0] if origin in (list, tuple) and args else None
    if origin is dict:
        return args[1] if args else Any
    fields = _fields(tp)
    return None if fields is None else fields.get(part)


def known_keys(tp: Any, loc: Sequence[str | int]) -> list[str]:
    """The keys the table at `loc` inside a value of type `tp` takes, sorted."""
    for part in loc:
        tp = step(tp, part)
    return sorted(_fields(unwrap(tp)) or ())
