"""Answers for the fleet tests: the real Antminer L3+ answers (../shared/vectors/asic/), as it
sent them in text, and the same data in cgminer's JSON layout, NUL-terminated as cgminer ends its
answers; and each malformed shape a device can send."""

import json
from pathlib import Path
from typing import Any

from fleet.cgminer import parse

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "asic"
L3_FILE = VECTORS / "antminer-l3plus-cgminer-4.10.0.txt"


def l3_text() -> dict[str, bytes]:
    """command → the L3+'s text answer to it (summary, stats, pools), as recorded."""
    lines = L3_FILE.read_bytes().splitlines()
    assert len(lines) == 3, f"{L3_FILE}: expected the summary, stats and pools answers, one a line"
    return dict(zip(("summary", "stats", "pools"), lines, strict=True))


def _typed(value: str) -> Any:
    """A text value as cgminer's JSON writes it (numbers as numbers, true/false as booleans)."""
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def as_json(command: str, text: bytes) -> dict[str, Any]:
    """The JSON answer cgminer sends for the same data as the text answer `text`."""
    reply = parse(text, command)[command]
    status = reply.status
    obj: dict[str, Any] = {"STATUS": [{"STATUS": status.code, "When": status.when, "Code": status.number,
                                       "Msg": status.message, "Description": status.description}]}
    for name, items in reply.sections.items():
        obj[name] = [{k: _typed(v) for k, v in item.items()} for item in items]
    obj["id"] = 1
    return obj


def l3_json(command: str) -> bytes:
    """The JSON answer to `command` (joined commands too), NUL-terminated."""
    text = l3_text()
    parts = command.split("+")
    if len(parts) == 1:
        return json.dumps(as_json(command, text[command])).encode() + b"\0"
    # cgminer 4.x: each command's answer in a one-item list under its name (README: "each result is
    # within a section of the command name").
    joined = {c: [as_json(c, text[c])] for c in parts}
    joined["id"] = 1  # type: ignore[assignment]
    return json.dumps(joined).encode() + b"\0"


def l3_joined_text(command: str) -> bytes:
    """The text answer to a joined command: `CMD=summary|STATUS=…|CMD=pools|STATUS=…|`."""
    text = l3_text()
    return b"".join(b"CMD=" + c.encode() + b"|" + text[c] for c in command.split("+"))


STATUS_E = (b'{"STATUS":[{"STATUS":"E","When":1645185475,"Code":14,"Msg":"Invalid command",'
            b'"Description":"cgminer 4.10.0"}],"id":1}\0')
