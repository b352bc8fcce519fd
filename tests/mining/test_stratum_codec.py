"""The sans-I/O Stratum line codec (mining/stratum.py)."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mining import stratum
from mining.stratum import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    Notification,
    ProtocolError,
    Request,
    Response,
    StratumCodec,
    encode,
)

FEW = settings(max_examples=100, deadline=None)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
ids = st.integers(min_value=-(2**53), max_value=2**53) | st.text(max_size=12)
# Text the wire rule lets through (mining.stratum.text_problem; tests/mining/test_wire_text.py
# covers what it refuses): printable characters, the plain space included.
_NOT_PRINTABLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")
printable = st.characters(exclude_categories=_NOT_PRINTABLE) | st.just(" ")
hex_strings = st.binary(max_size=8).map(bytes.hex)
numbers = st.integers(min_value=0, max_value=2**40) | st.floats(min_value=1e-9, max_value=1e12)

# Methods whose params the codec checks, with params of the right shape; any other method passes through.
checked_calls = st.one_of(
    st.tuples(st.just("mining.submit"), st.tuples(st.text(printable, max_size=10),
                                                  st.text(printable, max_size=8),
                                                  hex_strings, hex_strings, hex_strings).map(list)),
    st.tuples(st.just("mining.authorize"), st.tuples(st.text(printable, max_size=10),
                                                     st.none() | st.text(printable)).map(list)),
    st.tuples(st.just("mining.suggest_difficulty"), numbers.map(lambda d: [d])),
    st.tuples(st.just("mining.subscribe"), st.lists(st.text(printable, max_size=10), max_size=2)),
    st.tuples(st.just("mining.set_difficulty"), numbers.map(lambda d: [d])),
)
other_calls = st.tuples(
    st.text(printable, min_size=1, max_size=20).filter(lambda m: not m.startswith("mining.")),
    st.lists(json_values, max_size=4),
)
calls = checked_calls | other_calls

messages = st.one_of(
    st.builds(lambda i, c: Request(i, c[0], c[1]), ids, calls),
    st.builds(lambda c: Notification(c[0], c[1]), calls),
    st.builds(Response, ids | st.none(), json_values, st.none() | st.just([21, "Job not found", None])),
)


def _decode_all(data: bytes, max_line: int = stratum.DEFAULT_MAX_LINE) -> list[stratum.Event]:
    return StratumCodec(max_line).feed(data)


@FEW
@given(messages)
def test_encode_decode_round_trip(message: stratum.Message) -> None:
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert _decode_all(line) == [message]


@FEW
@given(st.lists(messages, min_size=1, max_size=5), st.data())
def test_messages_split_anywhere_decode_the_same(batch: list[stratum.Message], data: st.DataObject) -> None:
    stream = b"".join(encode(m) for m in batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    codec = StratumCodec()
    events: list[stratum.Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        events += codec.feed(stream[start:end])
    assert events == batch
    assert codec.buffered == 0


@FEW
@given(st.binary(max_size=300), st.data())
def test_arbitrary_bytes_never_raise_and_chunking_does_not_matter(blob: bytes, data: st.DataObject) -> None:
    max_line = 64
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=10)))
    codec = StratumCodec(max_line)
    events: list[stratum.Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(blob)], strict=True):
        events += codec.feed(blob[start:end])
        assert codec.buffered <= max_line
    assert repr(events) == repr(_decode_all(blob, max_line))


@FEW
@given(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")))
def test_arbitrary_single_lines_decode_to_one_event(line: bytes) -> None:
    events = _decode_all(line + b"\n")
    assert len(events) == (1 if line.strip() else 0)


GOOD = encode(Request(1, "mining.authorize", ["worker", "x"]))


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_oversize_line_gives_one_error_and_the_next_line_decodes(chunk: int) -> None:
    codec = StratumCodec(max_line=64)
    stream = b'{"id": 5, "method": "mining.subscribe", "params": ["' + b"a" * 200 + b'"]}\n' + GOOD
    events: list[stratum.Event] = []
    for i in range(0, len(stream), chunk):
        events += codec.feed(stream[i : i + chunk])
    assert len(events) == 2
    error, request = events
    assert isinstance(error, ProtocolError) and error.oversize and error.code == INVALID_REQUEST
    assert request == Request(1, "mining.authorize", ["worker", "x"])


def test_a_line_exactly_at_the_limit_is_accepted() -> None:
    assert len(GOOD) - 1 <= 64
    codec = StratumCodec(max_line=len(GOOD) - 1)
    assert codec.feed(GOOD) == [Request(1, "mining.authorize", ["worker", "x"])]


def test_invalid_utf8_is_a_parse_error() -> None:
    (event,) = _decode_all(b'{"id": 1, "method": "mining.subscribe\xff", "params": []}\n')
    assert isinstance(event, ProtocolError) and event.code == PARSE_ERROR


@pytest.mark.parametrize("line", [b"{not json", b'{"id": 1,', b"\x00\x01"])
def test_invalid_json_is_a_parse_error(line: bytes) -> None:
    (event,) = _decode_all(line + b"\n")
    assert isinstance(event, ProtocolError) and event.code == PARSE_ERROR


@pytest.mark.parametrize("line", [b"[1, 2]", b"42", b'"mining.subscribe"', b"null", b"true", b"[]"])
def test_non_object_json_is_an_invalid_request(line: bytes) -> None:
    (event,) = _decode_all(line + b"\n")
    assert isinstance(event, ProtocolError) and event.code == INVALID_REQUEST


@pytest.mark.parametrize(
    ("method", "params", "named"),
    [
        ("mining.submit", ["w", "j", "00000001", "5a0b1c2d", 12345], "nonce"),
        ("mining.submit", ["w", "j", "zz", "5a0b1c2d", "00000000"], "extranonce2"),
        ("mining.submit", ["w", 7, "00", "5a0b1c2d", "00000000"], "job_id"),
        ("mining.submit", [None, "j", "00", "5a0b1c2d", "00000000"], "worker"),
        ("mining.submit", ["w", "j", "00", "5a0b1c2d"], "nonce"),
        ("mining.authorize", [42, "x"], "username"),
        ("mining.authorize", [], "username"),
        ("mining.authorize", ["w", 5], "password"),
        ("mining.suggest_difficulty", ["8"], "difficulty"),
        ("mining.suggest_difficulty", [True], "difficulty"),
        ("mining.suggest_difficulty", [], "difficulty"),
    ],
)
def test_wrong_params_are_invalid_params_naming_the_param(method: str, params: list[Any], named: str) -> None:
    line = json.dumps({"id": 9, "method": method, "params": params}).encode() + b"\n"
    (event,) = _decode_all(line)
    assert isinstance(event, ProtocolError)
    assert event.code == INVALID_PARAMS
    assert named in event.message
    assert event.id == 9


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1" + b"0" * 400])
@pytest.mark.parametrize("method", [b"mining.suggest_difficulty", b"mining.set_difficulty"])
def test_a_difficulty_must_fit_a_finite_float(method: bytes, number: bytes) -> None:
    line = b'{"id": 8, "method": "' + method + b'", "params": [' + number + b"]}\n"
    (event,) = _decode_all(line)
    assert isinstance(event, ProtocolError) and event.code == INVALID_PARAMS
    assert "difficulty" in event.message and event.id == 8


@FEW
@given(st.integers(min_value=-(10**400), max_value=10**400) | st.floats())
def test_any_accepted_difficulty_converts_to_a_finite_float(number: float) -> None:
    line = json.dumps({"id": 1, "method": "mining.suggest_difficulty", "params": [number]}).encode() + b"\n"
    (event,) = _decode_all(line)
    if isinstance(event, Request):
        assert abs(float(event.params[0])) < float("inf")
    else:
        assert isinstance(event, ProtocolError) and event.code == INVALID_PARAMS


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ({"id": 3, "method": 17, "params": []}, INVALID_REQUEST),
        ({"id": "abc", "method": "", "params": []}, INVALID_REQUEST),
        ({"id": 4, "method": "mining.subscribe", "params": {"agent": "x"}}, INVALID_PARAMS),
        ({"id": 5, "jsonrpc": "2.0"}, INVALID_REQUEST),
    ],
)
def test_errors_carry_the_id_of_the_line(obj: dict[str, Any], code: int) -> None:
    (event,) = _decode_all(json.dumps(obj).encode() + b"\n")
    assert isinstance(event, ProtocolError)
    assert event.code == code
    assert event.id == obj["id"]


@pytest.mark.parametrize("bad_id", [True, 1.5, [1], {"a": 1}])
def test_an_invalid_id_is_an_invalid_request_without_id(bad_id: object) -> None:
    line = json.dumps({"id": bad_id, "method": "mining.subscribe", "params": []}).encode() + b"\n"
    (event,) = _decode_all(line)
    assert isinstance(event, ProtocolError) and event.code == INVALID_REQUEST and event.id is None


def test_null_params_and_crlf_and_blank_lines() -> None:
    stream = b'\r\n\n{"id": 1, "method": "mining.subscribe", "params": null}\r\n  \n'
    assert _decode_all(stream) == [Request(1, "mining.subscribe", [])]


def test_extra_trailing_params_are_tolerated() -> None:
    line = encode(Request(2, "mining.submit", ["w", "j", "00", "5a0b1c2d", "00000000", "20000000"]))
    (event,) = _decode_all(line)
    assert isinstance(event, Request)


def test_server_messages_as_cgminer_expects_them() -> None:
    expected = b'{"id":null,"method":"mining.set_difficulty","params":[0.5]}\n'
    assert stratum.notify("mining.set_difficulty", [0.5]) == expected
    response = stratum.error_response(4, stratum.JOB_NOT_FOUND, "Job not found")
    assert encode(response) == b'{"id":4,"result":null,"error":[21,"Job not found",null]}\n'
