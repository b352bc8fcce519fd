"""Query parameters, parsed strictly: a bad value is a 400 naming the parameter, and so is a
parameter the endpoint does not take (a misspelt filter must not silently return everything)."""

import math
import re
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from multidict import MultiDictProxy

from api.problems import invalid

TEXT_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"
"""Free-form names (pools, sources, cursors): no control characters, which PostgreSQL text
cannot hold (NUL) or which only make trouble in logs."""
_STEP = re.compile(r"^([0-9]{1,9})([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
STEP_PATTERN = _STEP.pattern


def text(name: str, value: str, pattern: str = TEXT_PATTERN) -> str:
    """`value` if it matches `pattern` and is valid Unicode (a JSON "\\ud800" is not), else a 400."""
    if not re.fullmatch(pattern, value):
        raise invalid(name, f"{value!r} does not match {pattern}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise invalid(name, "is not valid Unicode text") from None
    return value


class Query:
    def __init__(self, query: MultiDictProxy[str], known: Collection[str]) -> None:
        for name in query:
            if name not in known:
                raise invalid(
                    name, f"unknown parameter (this endpoint takes: {', '.join(sorted(known)) or 'none'})"
                )
            if len(query.getall(name)) > 1:
                raise invalid(name, "given more than once")
        self._query = query

    def string(self, name: str, pattern: str = TEXT_PATTERN, default: str | None = None) -> str | None:
        value = self._query.get(name)
        return default if value is None else text(name, value, pattern)

    def choice(self, name: str, allowed: Collection[str]) -> str | None:
        value = self._query.get(name)
        if value is not None and value not in allowed:
            raise invalid(name, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def number(self, name: str, low: float, high: float, *, exclusive_min: bool = False) -> float | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise invalid(name, f"must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value < low or value > high or (exclusive_min and value == low):
            bound = ">" if exclusive_min else ">="
            raise invalid(name, f"must be {bound} {low:g} and <= {high:g}, got {raw!r}")
        return value

    def integer(self, name: str, low: int, high: int, default: int | None = None) -> int | None:
        raw = self._query.get(name)
        if raw is None:
            return default
        if not re.fullmatch(r"-?[0-9]{1,19}", raw):
            raise invalid(name, f"must be an integer, got {raw!r}")
        value = int(raw)
        if not low <= value <= high:
            raise invalid(name, f"must be between {low} and {high}, got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._query.get(name)
        if raw is None:
            return default
        if raw not in ("true", "false"):
            raise invalid(name, f"must be true or false, got {raw!r}")
        return raw == "true"

    def timestamp(self, name: str) -> datetime | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise invalid(
                name, f"must be an RFC 3339 date-time such as 2026-01-01T00:00:00Z, got {raw!r}"
            ) from None
        if value.tzinfo is None:
            raise invalid(name, "needs a time zone offset (Z or +HH:MM)")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0 in UTC
            raise invalid(name, f"{raw!r} is out of range") from None

    def step(self, name: str) -> timedelta | None:
        """A bucket width: seconds, or a number with unit s, m, h or d ("300", "5m", "1h")."""
        raw = self._query.get(name)
        if raw is None:
            return None
        match = _STEP.fullmatch(raw)
        if match is None or int(match[1]) == 0:
            raise invalid(name, f"must be a positive number of seconds or look like 5m, 1h, 1d, got {raw!r}")
        return timedelta(seconds=int(match[1]) * _UNIT_S[match[2]])
