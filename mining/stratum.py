"""Stratum v1 codec, sans-I/O: feed bytes in, get typed messages or typed protocol errors out.

One JSON object per line. The codec never raises on input: garbage, invalid UTF-8, a line over the
limit, wrong types — each becomes a `ProtocolError` the caller answers and counts, so one bad line
costs one error reply and the connection lives. Messages are serialised with `encode`.
"""

import json
import json.scanner
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# JSON-RPC 2.0 codes for malformed input, and Stratum's own share codes (20–25).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
OTHER = 20
JOB_NOT_FOUND = 21
DUPLICATE_SHARE = 22
LOW_DIFFICULTY = 23
UNAUTHORIZED = 24
NOT_SUBSCRIBED = 25

DEFAULT_MAX_LINE = 16 * 1024

JsonId = int | str | None


# Not frozen: on the per-share path frozen construction costs ~1 µs more per object (measured);
# treat instances as immutable all the same.
@dataclass(slots=True)
class Request:
    id: JsonId
    method: str
    params: list[Any]


@dataclass(frozen=True, slots=True)
class Notification:
    """A request with a null id: the server's `mining.notify`, `mining.set_difficulty`, …"""

    method: str
    params: list[Any]


@dataclass(slots=True)
class Response:
    id: JsonId
    result: Any
    error: Any = None


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A line that could not be accepted. `id` is set when the line carried one, so the error
    can be answered to the request that caused it."""

    code: int
    message: str
    id: JsonId = None
    # The line exceeded the limit: the caller may treat repeated oversize lines as abuse.
    oversize: bool = False
    reason: str = "malformed"
    """Short label for metrics, one of a few: "malformed", "oversize", "bad-params", "bad-text"."""


Message = Request | Notification | Response
Event = Message | ProtocolError


# The one rule for text off the wire (worker names, job ids, user agents, passwords, session ids,
# method names): every such string may be logged, stored in PostgreSQL and exported as a metric
# label, so it must be short, encodable as UTF-8 (no lone surrogates: valid JSON, but asyncpg and
# the metrics exposition cannot encode them) and free of control characters (NUL is refused by
# PostgreSQL text and breaks the exposition format). str.isprintable() is False for all of them
# (categories Cc, Cf, Cs, Co, Cn, Zl, Zp and every space but " ") and costs ~50 ns on a share.
MAX_NAME = 128
"""Worker names (mining.authorize's username, mining.submit's worker)."""
MAX_JOB_ID = 64
MAX_TEXT = 256
"""User agents, passwords, session ids, method names."""


def text_problem(value: str, limit: int) -> str | None:
    """Why `value` breaks the wire-text rule, or None when it keeps it."""
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit} are allowed"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return (f"holds U+{ord(bad):04X}, which is not printable text "
                "(control characters such as NUL, lone surrogates and the like are refused)")
    return None


def _is_hex(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_opt_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_number(value: Any) -> bool:
    # Python's json reads NaN, Infinity, 1e400 (→ inf) and 400-digit integers; callers do float()
    # and target arithmetic on a difficulty, so only values that fit a finite float pass.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    check: Callable[[Any], bool]
    expected: str
    required: bool = True
    text: int = 0
    """For a text param: its longest length, and the wire-text rule applies (`text_problem`)."""


# Param shapes of the methods whose params the proxy reads. Extra trailing params are tolerated
# (miners append fields such as version bits), missing required ones and wrong types are not.
_PARAMS: dict[str, tuple[_Param, ...]] = {
    "mining.subscribe": (
        _Param("user_agent", _is_opt_str, "a string", required=False, text=MAX_TEXT),
        _Param("session_id", _is_opt_str, "a string", required=False, text=MAX_TEXT),
    ),
    "mining.authorize": (
        _Param("username", _is_str, "a string", text=MAX_NAME),
        _Param("password", _is_opt_str, "a string", required=False, text=MAX_TEXT),
    ),
    "mining.submit": (
        _Param("worker", _is_str, "a string", text=MAX_NAME),
        _Param("job_id", _is_str, "a string", text=MAX_JOB_ID),
        _Param("extranonce2", _is_hex, "a hex string"),
        _Param("ntime", _is_hex, "a hex string"),
        _Param("nonce", _is_hex, "a hex string"),
    ),
    "mining.suggest_difficulty": (_Param("difficulty", _is_number, "a finite number"),),
    "mining.configure": (
        _Param("extensions", _is_list, "a list"),
        _Param("extension_params", _is_dict, "an object", required=False),
    ),
    "mining.set_difficulty": (_Param("difficulty", _is_number, "a finite number"),),
    "mining.set_extranonce": (
        _Param("extranonce1", _is_hex, "a hex string"),
        _Param("extranonce2_size", lambda v: isinstance(v, int) and not isinstance(v, bool),
               "an integer"),
    ),
}


def check_params(method: str, params: list[Any]) -> ProtocolError | None:
    """Why these params do not fit the method (an INVALID_PARAMS error without its id), or None
    when they do or the method is unknown."""
    spec = _PARAMS.get(method)
    if spec is None:
        return None
    given = len(params)
    for index, param in enumerate(spec):
        if index >= given:
            if param.required:
                return ProtocolError(INVALID_PARAMS, f"{method}: missing param {index} ({param.name})",
                                     reason="bad-params")
            continue
        value = params[index]
        if not param.check(value):
            return ProtocolError(INVALID_PARAMS, f"{method}: param {index} ({param.name}) must be "
                                 f"{param.expected}", reason="bad-params")
        if param.text and value is not None:
            problem = text_problem(value, param.text)
            if problem is not None:
                return ProtocolError(INVALID_PARAMS, f"{method}: param {index} ({param.name}) {problem}",
                                     reason="bad-text")
    return None


# json.loads wraps the C scanner in Python (two whitespace regexes, two calls), which costs more
# than the scan itself: 2.6 µs against 0.9 for a share line (measured). Lines reach decode_line
# stripped, so the scanner is called directly and only "nothing" and "extra data" are checked here.
_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed: a class


def _loads(text: str) -> Any:
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        raise ValueError("no JSON value") from None
    if end != len(text):
        raise ValueError("extra data after the JSON value")
    return value


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, int | str) and not isinstance(value, bool))


def decode_line(line: bytes) -> Event:
    """Decode one line, stripped of its newline and surrounding whitespace (as `StratumCodec.feed`
    passes it)."""
    try:
        obj = _loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return ProtocolError(PARSE_ERROR, "line is not valid UTF-8")
    except (ValueError, RecursionError):
        return ProtocolError(PARSE_ERROR, "line is not valid JSON")
    if not isinstance(obj, dict):
        return ProtocolError(INVALID_REQUEST, "a Stratum message must be a JSON object")
    msg_id = obj.get("id")
    if not _valid_id(msg_id):
        return ProtocolError(INVALID_REQUEST, "id must be a number, a string or null")
    if "method" in obj:
        method = obj["method"]
        if not isinstance(method, str) or not method:
            return ProtocolError(INVALID_REQUEST, "method must be a non-empty string", msg_id)
        problem = text_problem(method, MAX_TEXT)
        if problem is not None:  # the method is echoed in "method not found" and may be logged
            return ProtocolError(INVALID_REQUEST, f"method {problem}", msg_id, reason="bad-text")
        params = obj.get("params", [])
        if params is None:
            params = []
        if not isinstance(params, list):
            return ProtocolError(INVALID_PARAMS, f"{method}: params must be a list", msg_id,
                                 reason="bad-params")
        error = check_params(method, params)
        if error is not None:
            return ProtocolError(error.code, error.message, msg_id, reason=error.reason)
        if msg_id is None:
            return Notification(method, params)
        return Request(msg_id, method, params)
    if "result" in obj or "error" in obj:
        return Response(msg_id, obj.get("result"), obj.get("error"))
    return ProtocolError(INVALID_REQUEST, "neither a request nor a response", msg_id)


class StratumCodec:
    """Line framing with a hard length limit. Feed bytes, get events; never raises on input."""

    __slots__ = ("_buffer", "_discarding", "_max_line")  # one per miner

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._max_line = max_line
        self._buffer = bytearray()
        # After an oversize line, bytes are dropped until the next newline.
        self._discarding = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        limit = self._max_line
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: the start of a line still arriving
        for chunk in lines:
            if self._discarding:
                self._discarding = False  # this newline ends the oversize line
                continue
            if self._buffer:
                if len(self._buffer) + len(chunk) > limit:
                    self._buffer.clear()
                    events.append(self._oversize())
                    continue
                chunk = bytes(self._buffer + chunk)
                self._buffer.clear()
            elif len(chunk) > limit:
                events.append(self._oversize())
                continue
            line = chunk.strip()
            if line:
                events.append(decode_line(line))
        if self._discarding:
            return events
        if len(self._buffer) + len(tail) > limit:
            self._buffer.clear()
            self._discarding = True
            events.append(self._oversize())
        elif tail:
            self._buffer += tail
        return events

    def _oversize(self) -> "ProtocolError":
        return ProtocolError(INVALID_REQUEST, f"line longer than {self._max_line} bytes", oversize=True,
                             reason="oversize")


def encode(message: Message) -> bytes:
    if type(message) is Response and message.error is None and type(message.id) is int \
            and type(message.result) is bool:
        # The answer to nearly every share: formatted directly, ten times cheaper than json.dumps.
        return b'{"id":%d,"result":%s,"error":null}\n' % (message.id, b"true" if message.result else b"false")
    if isinstance(message, Request):
        obj: dict[str, Any] = {"id": message.id, "method": message.method, "params": message.params}
    elif isinstance(message, Notification):
        obj = {"id": None, "method": message.method, "params": message.params}
    else:
        obj = {"id": message.id, "result": message.result, "error": message.error}
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def error_value(code: int, message: str) -> list[Any]:
    """Stratum's error triple, as cgminer and cpuminer print it."""
    return [code, message, None]


def error_response(msg_id: JsonId, code: int, message: str) -> Response:
    return Response(msg_id, None, error_value(code, message))


def notify(method: str, params: list[Any]) -> bytes:
    return encode(Notification(method, params))
