"""The cgminer RPC API on the wire, sans-I/O: the request bytes and the answer's sections.

The protocol (cgminer's API-README, github.com/ckolivas/cgminer/blob/master/API-README, and
BFGMiner's README.RPC in ../shared/peers, which is derived from it):
- a request is one string on a fresh TCP connection (default port 4028): plain text `CMD|PARAM`
  or JSON `{"command":"CMD","parameter":"PARAM"}`; the miner answers once and closes;
- every answer is a STATUS section (`STATUS=S|W|I|E|F`, `When`, `Code`, `Msg`, `Description`)
  followed by its data sections; in text, sections end with `|` and fields are `name=value`
  separated by `,` (`\\` escapes `|`, `,`, `=` and `\\` from API 1.7 on); in JSON each section is a
  list of objects under its name and an `id` ends the object;
- report commands join with `+` (`summary+pools`): the JSON answer then holds one complete answer
  per command under the command's name, the text answer is `CMD=summary|STATUS=…|CMD=pools|…`;
- answers end with a NUL byte on most firmwares (BFGMiner, cgminer), or not; over ~64 KiB they are
  cut at a record boundary and the JSON id is 0.

`parse` never raises anything but `AnswerError`, with a message a person can act on.
"""

import json
from dataclasses import dataclass, field
from typing import Any

Section = dict[str, Any]
STATUS_OK = ("S", "I")
"""Success and informational answers carry data; W (warning) may too; E and F do not."""


_DATA_SECTION = {"summary": "SUMMARY", "pools": "POOLS", "stats": "STATS", "devs": "DEVS",
                 "version": "VERSION", "config": "CONFIG"}

_TEXT_NAMES = {"POOL": "POOLS"}
"""A text section is named by its first key; JSON names the list (`"POOLS":[{"POOL":0,…}]`)."""


class AnswerError(ValueError):
    """The device answered something that is not a usable cgminer API answer."""


@dataclass(frozen=True)
class Status:
    code: str  # S, W, I, E or F
    number: int | None
    message: str
    description: str
    when: int | None

    @property
    def failed(self) -> bool:
        return self.code in ("E", "F")


@dataclass(frozen=True)
class Reply:
    """One command's answer: its status and its data sections by name (SUMMARY, POOL, STATS…);
    a name that repeats (one POOL per pool) holds a list."""

    command: str
    status: Status
    sections: dict[str, list[Section]] = field(default_factory=dict)
    truncated: bool = False

    def first(self, name: str) -> Section | None:
        items = self.sections.get(name)
        return items[0] if items else None

    def all(self, name: str) -> list[Section]:
        return self.sections.get(name, [])


def request(command: str, json_format: bool = True) -> bytes:
    """The bytes that ask for `command` (`summary`, `summary+pools`, `stats`…)."""
    if not command or any(c in command for c in "|\"\\\0\n"):
        raise ValueError(f"not a cgminer API command: {command!r}")
    if json_format:
        return json.dumps({"command": command}, separators=(",", ":")).encode()
    return command.encode()


def _strip(raw: bytes, command: str) -> str:
    # A NUL ends the answer (and only that: nothing valid follows it); some firmwares add a
    # newline or pad with several NULs.
    text = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()
    if not text:
        raise AnswerError(f"{command}: empty answer (the device closed the connection without a reply)")
    return text


def _status(item: Any, command: str) -> Status:
    if not isinstance(item, dict) or "STATUS" not in item:
        raise AnswerError(f"{command}: answer has no STATUS section")
    code = str(item.get("STATUS", ""))
    if code not in ("S", "W", "I", "E", "F"):
        raise AnswerError(f"{command}: STATUS is {code!r}, not one of S, W, I, E, F")
    number = item.get("Code")
    when = item.get("When")
    return Status(code, _int_or_none(number), str(item.get("Msg", "")), str(item.get("Description", "")),
                  _int_or_none(when))


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _reply_from_json(obj: dict[str, Any], command: str) -> Reply:
    statuses = obj.get("STATUS")
    if not isinstance(statuses, list) or not statuses:
        raise AnswerError(f"{command}: answer has no STATUS section")
    status = _status(statuses[0], command)
    sections: dict[str, list[Section]] = {}
    for name, value in obj.items():
        if name in ("STATUS", "id"):
            continue
        if isinstance(value, list):
            sections[name] = [v for v in value if isinstance(v, dict)]
        elif isinstance(value, dict):
            sections[name] = [value]
    return Reply(command, status, sections, truncated=obj.get("id") == 0)


def _split_unescaped(text: str, sep: str) -> list[str]:
    """`text` split on `sep` where no backslash escapes it (API 1.7+); escapes stay in place."""
    parts, current, escaped = [], [], False
    for c in text:
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\":
            current.append(c)
            escaped = True
        elif c == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, escaped = [], False
    for c in text:
        if escaped or c != "\\":
            out.append(c)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def _text_section(text: str) -> tuple[str, Section]:
    """`NAME=x,key=value,…` → (NAME, {NAME: x, key: value…}); a section's name is its first key
    (STATUS, SUMMARY, POOL, STATS, PGA…). Values stay strings: the text format has no types."""
    fields: Section = {}
    name = ""
    for i, part in enumerate(_split_unescaped(text, ",")):
        key, eq, value = (_unescape(p) for p in _split_equals(part))
        if not eq:
            if i == 0 and key:  # a bare name, e.g. `SUMMARY|` followed by fields elsewhere
                name = key
                continue
            raise AnswerError(f"field {part[:40]!r} has no '='")
        if i == 0:
            name = key
        fields[key] = value
    return name, fields


def _split_equals(part: str) -> tuple[str, str, str]:
    pieces = _split_unescaped(part, "=")
    if len(pieces) == 1:
        return pieces[0], "", ""
    return pieces[0], "=", "=".join(pieces[1:])


def _reply_from_text(chunks: list[str], command: str) -> Reply:
    if not chunks:
        raise AnswerError(f"{command}: answer has no STATUS section")
    name, status_fields = _text_section(chunks[0])
    if name != "STATUS":
        raise AnswerError(f"{command}: answer starts with {name or chunks[0][:20]!r}, not STATUS")
    status = _status(status_fields, command)
    sections: dict[str, list[Section]] = {}
    for chunk in chunks[1:]:
        name, fields = _text_section(chunk)
        if not name.replace(" ", "").isupper():
            # In text the section's name is only its first key: `STATS=0,ID=L30,…` names itself,
            # but the version section that opens a `stats` answer starts `CGMiner=4.10.0` (in
            # JSON both are items of "STATS"). Such a section belongs to the command's own list.
            name = _DATA_SECTION.get(command, name)
        name = _TEXT_NAMES.get(name, name)
        sections.setdefault(name, []).append(fields)
    return Reply(command, status, sections)


def parse(raw: bytes, command: str) -> dict[str, Reply]:
    """The answer `raw` to `command` (possibly `a+b`), one Reply per command asked.

    Raises AnswerError for an empty, truncated or malformed answer, or one that lacks a command
    that was asked for. A STATUS=E reply is returned (the caller decides what it means)."""
    text = _strip(raw, command)
    commands = [c for c in command.split("+") if c]
    joined = len(commands) > 1 or "+" in command
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AnswerError(f"{command}: answer is not complete JSON ({exc.msg} at byte {exc.pos} of "
                              f"{len(text)}): truncated or corrupt") from None
        if not isinstance(obj, dict):
            raise AnswerError(f"{command}: answer is JSON {type(obj).__name__}, not an object")
        if joined and "STATUS" in obj and not any(c in obj for c in commands):
            # A firmware that does not join (or refused the JSON): one E status for all.
            reply = _reply_from_json(obj, command)
            return {c: reply for c in commands}
        if not joined:
            return {command: _reply_from_json(obj, command)}
        replies = {}
        for c in commands:
            part = obj.get(c)
            if isinstance(part, list) and part and isinstance(part[0], dict):
                part = part[0]  # cgminer 4.x wraps each command's answer in a one-item list
            if not isinstance(part, dict):
                raise AnswerError(f"{command}: the joined answer has no {c!r} part")
            replies[c] = _reply_from_json(part, c)
        return replies
    if text.startswith("["):
        raise AnswerError(f"{command}: answer is a JSON array, not a cgminer API answer")
    if not text.endswith("|"):
        # Every text section ends with '|': without it the answer was cut short.
        raise AnswerError(f"{command}: text answer does not end with '|': truncated after {len(text)} bytes")
    chunks = [c for c in _split_unescaped(text[:-1], "|")]
    if chunks and chunks[0].startswith("CMD="):
        replies = {}
        current: list[str] = []
        name = ""
        for chunk in [*chunks, "CMD="]:
            if chunk.startswith("CMD="):
                if name:
                    replies[name] = _reply_from_text(current, name)
                name, current = chunk[4:], []
            else:
                current.append(chunk)
        for c in commands:
            if c not in replies:
                raise AnswerError(f"{command}: the joined answer has no {c!r} part")
        return replies
    reply = _reply_from_text(chunks, command)
    return {c: reply for c in commands} if joined else {command: reply}
