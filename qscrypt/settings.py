"""Typed configuration from TOML: unknown keys and bad values fail at start-up, naming the key.

Sections map onto frozen dataclasses, which pydantic validates (strictly: "80" is no port) and
builds, running their `__post_init__` checks. A string value `${NAME}` is read from the
environment, so secrets (DSNs, pool passwords, API keys) never need to live in the file.
"""

import json
import os
import re
import tomllib
import typing
from datetime import date, time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from qscrypt.validation import describe, dotted, known_keys, step, unwrap

T = TypeVar("T")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(ValueError):
    """A configuration problem, with the dotted key it concerns."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config key '{key}': {problem}")
        self.key = key
        self.problem = problem


def _join(prefix: str, part: str | int) -> str:
    return dotted([prefix, part]) if prefix else dotted([part])


def _expand(value: Any, tp: Any, key: str, environ: typing.Mapping[str, str]) -> Any:
    """`value` with `${NAME}` in its strings read from `environ`, and `~` in its paths expanded.

    Values typed Any are left as they are: such a table travels whole to the loader of its own
    section, which expands it then (once: a secret may itself contain `${`). So are keys the type
    does not have, which validation then reports as unknown."""
    if tp is None or tp is Any:
        return value
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(1) not in environ:
                raise ConfigError(key, f"environment variable {match.group(1)} is not set")
            return environ[match.group(1)]

        value = _ENV_REF.sub(replace, value)
        return os.path.expanduser(value) if unwrap(tp) is Path else value
    if isinstance(value, dict):
        return {k: _expand(v, step(tp, k), _join(key, k), environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, step(tp, i), _join(key, i), environ) for i, v in enumerate(value)]
    if isinstance(value, date | time):  # a datetime is a date too
        raise ConfigError(key, f"a TOML date or time is not a valid value here, got {value}")
    return value


def _error(cls: type[Any], prefix: str, exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # a __post_init__ check that names its key itself
        return cause
    loc = error["loc"]
    key = _join(prefix, dotted(loc)) if loc else prefix or cls.__name__
    problem = describe(error, mapping="a table")
    if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        problem += f" (known keys here: {', '.join(known_keys(cls, loc[:-1]))})"
    return ConfigError(key, problem)


def load_section(cls: type[T], data: dict[str, Any], prefix: str = "",
                 environ: typing.Mapping[str, str] | None = None) -> T:
    """Build dataclass `cls` from a TOML table; unknown keys and wrong types raise ConfigError."""
    env = os.environ if environ is None else environ
    expanded = _expand(data, cls, prefix, env)
    try:
        # Validated as JSON, where strict mode still reads a list as a tuple and a string as a
        # Path, as TOML values must be read; in Python mode it would refuse both.
        return TypeAdapter(cls).validate_json(json.dumps(expanded), strict=True, extra="forbid")
    except ValidationError as exc:
        raise _error(cls, prefix, exc) from None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("<file>", f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", f"{path} is not valid TOML: {exc}") from None
