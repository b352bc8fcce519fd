"""The wire-text rule (`mining.stratum.text_problem`): what a string off the wire may hold before it
becomes a worker name, a job id, a log field or a metric label (issue 15). Printable text of any
script passes; control and format characters, lone surrogates and separators are refused with the
code point named, and anything over the limit with the length."""

import json

import pytest

from mining import stratum
from mining.stratum import MAX_TEXT, text_problem


@pytest.mark.parametrize("value", ["rig-1", "LQ8kv1s3Vd7KdKEaBhKvsrxPy1MgiPMHq8.rig+fast", "Ünïcødé ✓ 矿工",
                                   " ", "d=0.5,profile=x", "x" * MAX_TEXT])
def test_printable_text_passes(value: str) -> None:
    assert text_problem(value, MAX_TEXT) is None


@pytest.mark.parametrize(("value", "code_point"), [
    ("rig\x00", "U+0000"), ("a\nb", "U+000A"), ("\x7f", "U+007F"), ("\ud800", "U+D800"),
    ("zero\u200bwidth", "U+200B"), ("line\u2028sep", "U+2028"), ("bidi\u202e", "U+202E"),
    ("private\ue000", "U+E000"), ("nbsp\u00a0", "U+00A0"),
])
def test_what_is_not_printable_is_refused_with_its_code_point(value: str, code_point: str) -> None:
    problem = text_problem(value, MAX_TEXT)
    assert problem is not None and code_point in problem and "not printable" in problem


def test_too_long_is_refused_with_its_length() -> None:
    problem = text_problem("x" * (MAX_TEXT + 1), MAX_TEXT)
    assert problem == f"is {MAX_TEXT + 1} characters long; at most {MAX_TEXT} are allowed"


def test_the_codec_refuses_a_bad_name_naming_the_param_and_keeps_the_id() -> None:
    # json.dumps escapes the surrogate: the line is valid JSON, as an attacker would send it.
    line = json.dumps({"id": 7, "method": "mining.submit",
                       "params": ["\ud800", "1a", "00000000", "5f5e1000", "00000001"]}).encode()
    event = stratum.decode_line(line)
    assert isinstance(event, stratum.ProtocolError)
    assert event.id == 7 and event.code == stratum.INVALID_PARAMS and event.reason == "bad-text"
    assert "param 0" in event.message and "U+D800" in event.message
    method = stratum.decode_line(json.dumps({"id": 8, "method": "mining.\x00", "params": []}).encode())
    assert isinstance(method, stratum.ProtocolError) and method.reason == "bad-text" and method.id == 8
