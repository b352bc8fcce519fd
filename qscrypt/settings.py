"""Typed configuration from TOML: unknown keys and bad values fail at start-up, naming the key.

Sections map onto frozen dataclasses. A string value `${NAME}` is read from the environment, so
secrets (DSNs, pool passwords, API keys) never need to live in the file.
"""

import dataclasses
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(ValueError):
    """A configuration problem, with the dotted key it concerns."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config key '{key}': {problem}")
        self.key = key
        self.problem = problem


def _expand_env(key: str, value: str, environ: typing.Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(key, f"environment variable {name} is not set")
        return environ[name]

    return _ENV_REF.sub(replace, value)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(key: str, tp: Any, value: Any, environ: typing.Mapping[str, str]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        errors = []
        for candidate in candidates:
            try:
                return _convert(key, candidate, value, environ)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(key, " or ".join(errors))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a table, got {type(value).__name__}")
        return load_section(tp, value, key, environ)  # type: ignore[arg-type]
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {type(value).__name__}")
        item_type = args[0] if args else Any
        items = [_convert(f"{key}[{i}]", item_type, v, environ) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a table, got {type(value).__name__}")
        return {k: _convert(f"{key}.{k}", args[1], v, environ) for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(key, f"must be one of {allowed}, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return _expand_env(key, value, environ)
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a path string, got {value!r}")
        return Path(_expand_env(key, value, environ)).expanduser()
    raise ConfigError(key, f"unsupported type {_type_name(tp)}")


def load_section(cls: type[T], data: dict[str, Any], prefix: str = "",
                 environ: typing.Mapping[str, str] | None = None) -> T:
    """Build dataclass `cls` from a TOML table; unknown keys and wrong types raise ConfigError."""
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in data:
        if name not in fields:
            key = f"{prefix}.{name}" if prefix else name
            known = ", ".join(sorted(fields))
            raise ConfigError(key, f"unknown key (known keys here: {known})")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(key, hints[name], data[name], env)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(key, "is required")
    try:
        obj = cls(**kwargs)
    except ValueError as exc:
        # __post_init__ validation raises ConfigError already; anything else gets the section name.
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(prefix or cls.__name__, str(exc)) from None
    return obj


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("<file>", f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", f"{path} is not valid TOML: {exc}") from None
