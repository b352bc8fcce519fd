"""Helpers every parser shares: JSON decoding with clear errors and tolerant number reading.

APIs answer with HTML error pages behind a 200, cut bodies short, send numbers as strings
("150.0"), use null or -1 for "unknown". Each helper turns one of those into either a value or a
`ParseError` that says what was wrong, so no parser crashes on a malformed answer.
"""

import json
import math
import re
from typing import Any

from aggregator.model import ParseError

_SNIPPET = 120
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def decode_json(body: bytes, content_type: str = "") -> Any:
    """The JSON value in `body`, or ParseError naming HTML pages, empty and truncated bodies."""
    stripped = body.lstrip()
    if not stripped:
        raise ParseError("empty body where JSON was expected")
    if "html" in content_type.lower() or stripped[:1] == b"<":
        title = _TITLE.search(stripped)
        what = title.group(1).decode("utf-8", "replace").strip() if title else _snippet(stripped)
        raise ParseError(f"HTML page where JSON was expected: {what!r}")
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise ParseError(f"body is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        if exc.pos >= len(body.rstrip()) - 1 or exc.msg.startswith("Unterminated"):
            raise ParseError(f"truncated JSON ({len(body)} bytes): {exc.msg}") from None
        raise ParseError(f"invalid JSON at byte {exc.pos}: {exc.msg}: {_snippet(body)!r}") from None


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…"


def number(value: Any) -> float | None:
    """A finite float from a JSON number or numeric string; None for null, "" and non-numbers."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "")
        if not text:
            return None
        try:
            result = float(text)
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def positive(value: Any) -> float | None:
    """`number`, keeping only values > 0: sources write 0 or -1 for "no data"."""
    result = number(value)
    return result if result is not None and result > 0 else None


def expect_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ParseError(f"{what}: expected a JSON object, got {_json_type(value)}")
    return value


def expect_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ParseError(f"{what}: expected a JSON array, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
