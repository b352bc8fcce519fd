"""`qscrypt qubic`: run the miner or the worker in a Qubic client's idle phases.

The Qubic client (qubic-li/client, README "Customizing" and "Idle Options",
https://github.com/qubic-li/client/blob/main/README.md) reads `appsettings.json` beside its
executable; an `appsettings.production.json` there has higher priority and is not overwritten when a
new version is installed. Under `ClientSettings`, its `idling` object names what runs while Qubic
idles (all strings, default ""):

    "idling": {
      "preCommand": "", "preCommandArguments": "",    started once when an idle phase begins
      "command": "",    "arguments": "",              runs for the whole idle phase
      "postCommand": "", "postCommandArguments": ""   started once when it ends
    }

The client stops `command` with SIGINT (or kills it) when the phase ends, and expects it gone at
once with a clean exit: `qscrypt miner` and `qscrypt worker` stop hashing, send what they found, hand
unfinished ranges back and exit 0 within a second.

The client is .NET: its configuration reader accepts comments and trailing commas, treats keys
case-insensitively and layers the production file over the base one, key by key; `arguments` is one
string split like a Windows command line (double quotes group, backslashes escape quotes). The pure
functions here follow those rules; `setup` and `check` are thin shells around them.
"""

import argparse
import copy
import datetime
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECTION = "ClientSettings"
IDLING = "idling"
BASE_FILE = "appsettings.json"
PRODUCTION_FILE = "appsettings.production.json"
IDLING_KEYS = ("preCommand", "preCommandArguments", "command", "arguments", "postCommand",
               "postCommandArguments")
COMMAND_KEYS = {"command": "arguments", "preCommand": "preCommandArguments",
                "postCommand": "postCommandArguments"}

Which = Callable[[str], str | None]


class SettingsError(ValueError):
    """A settings file that cannot be read: the message names the file, line and column."""


@dataclass(frozen=True, slots=True)
class Problem:
    severity: str  # "error": the idle phase will not mine; "warning": it will, but look
    key: str  # ClientSettings:idling:command, the .NET way of naming a key
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.key}: {self.message}"


# -- reading and writing .NET-flavoured JSON ---------------------------------------------------------


def strip_json_extensions(text: str) -> str:
    """`text` with // and /* */ comments and trailing commas blanked out (what .NET's reader skips),
    newlines kept so error positions still point into the original."""
    out = list(text)
    i, n = 0, len(text)
    in_string = False
    last_comma: int | None = None  # a comma not yet followed by anything but space and comments
    while i < n:
        c = text[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        if c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out[i:end] = [ch if ch == "\n" else " " for ch in text[i:end]]
            i = end
            continue
        if c in "}]" and last_comma is not None:
            out[last_comma] = " "
        if c == ",":
            last_comma = i
        elif not c.isspace():
            last_comma = None
        if c == '"':
            in_string = True
        i += 1
    return "".join(out)


def parse_settings(text: str, name: str = "appsettings") -> dict[str, Any]:
    """The settings object in `text`; SettingsError naming the place when it is not JSON or not an object."""
    try:
        value = json.loads(strip_json_extensions(text.lstrip("\ufeff")))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") \
            from None
    if not isinstance(value, dict):
        raise SettingsError(f"{name}: the top level must be a JSON object, not {type(value).__name__}")
    return value


def render_settings(settings: dict[str, Any]) -> str:
    return json.dumps(settings, indent=2, ensure_ascii=False) + "\n"


def find_key(mapping: dict[str, Any], name: str) -> str | None:
    """The key of `mapping` that .NET reads as `name` (case-insensitive; the last one wins, as there)."""
    found = None
    for key in mapping:
        if key.lower() == name.lower():
            found = key
    return found


def layered(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """What the client sees: `override` (the production file) over `base`, key by key, case-insensitive."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        existing = find_key(result, key)
        if existing is not None and isinstance(result[existing], dict) and isinstance(value, dict):
            result[existing] = layered(result[existing], value)
        else:
            if existing is not None:
                del result[existing]
            result[key] = copy.deepcopy(value)
    return result


# -- command lines -----------------------------------------------------------------------------------


def split_arguments(arguments: str) -> list[str]:
    """Split an `arguments` string as .NET's Process does (the Windows command-line rules, on every OS):
    spaces separate; double quotes group; 2n backslashes before a quote are n and the quote counts,
    2n+1 are n and a literal quote; other backslashes are literal; `""` inside quotes is one quote."""
    args: list[str] = []
    current: list[str] = []
    has_token = False
    in_quotes = False
    i, n = 0, len(arguments)
    while i < n:
        c = arguments[i]
        if c == "\\":
            run = 0
            while i < n and arguments[i] == "\\":
                run += 1
                i += 1
            if i < n and arguments[i] == '"':
                current.append("\\" * (run // 2))
                if run % 2:
                    current.append('"')
                    i += 1
            else:
                current.append("\\" * run)
            has_token = True
            continue
        if c == '"':
            if in_quotes and i + 1 < n and arguments[i + 1] == '"':
                current.append('"')
                i += 2
                continue
            in_quotes = not in_quotes
            has_token = True
        elif c in " \t" and not in_quotes:
            if has_token:
                args.append("".join(current))
                current, has_token = [], False
        else:
            current.append(c)
            has_token = True
        i += 1
    if has_token:
        args.append("".join(current))
    return args


def join_arguments(args: list[str]) -> str:
    """The `arguments` string that `split_arguments` (and the client) splits back into `args`."""
    parts = []
    for arg in args:
        if arg and not any(c in arg for c in ' \t"'):
            parts.append(arg)
            continue
        quoted, backslashes = ['"'], 0
        for c in arg:
            if c == "\\":
                backslashes += 1
                continue
            if c == '"':
                quoted.append("\\" * (2 * backslashes + 1) + '"')
            else:
                quoted.append("\\" * backslashes + c)
            backslashes = 0
        quoted.append("\\" * (2 * backslashes) + '"')
        parts.append("".join(quoted))
    return " ".join(parts)


def idle_arguments(worker: str, url: str | None, bootstrap: str | None, extra: list[str]) -> list[str]:
    """`qscrypt` arguments for the idle phase: the Stratum miner to a proxy (-o) or a Kafka worker."""
    if (url is None) == (bootstrap is None):
        raise ValueError("give either -o stratum+tcp://HOST:PORT (the built-in miner) or --bootstrap "
                         "HOST:PORT (a Kafka worker)")
    if url is not None:
        return ["miner", "-o", url, "-u", worker, *extra]
    assert bootstrap is not None
    return ["worker", "--bootstrap", bootstrap, "--worker-id", worker, *extra]


def default_command(which: Which = shutil.which) -> str:
    """The `qscrypt` launcher: beside this Python (a virtual environment's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "qscrypt"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = which("qscrypt")
    if found is None:
        raise ValueError("no qscrypt launcher beside this Python or on PATH: give --command PATH")
    return str(Path(found).resolve())


# -- merge and check ---------------------------------------------------------------------------------


def merge_idling(settings: dict[str, Any], idling: dict[str, str]) -> dict[str, Any]:
    """A copy of `settings` with `idling`'s keys set under ClientSettings:idling; every other key (and any
    other idling key) untouched. Existing keys keep their spelling, so the client sees no duplicate."""
    result = copy.deepcopy(settings)
    section_key = find_key(result, SECTION) or SECTION
    section = result.setdefault(section_key, {})
    if not isinstance(section, dict):
        raise SettingsError(f"{SECTION} is a {type(section).__name__}, not an object: fix it by hand first")
    idling_key = find_key(section, IDLING) or IDLING
    block = section.setdefault(idling_key, {})
    if not isinstance(block, dict):
        raise SettingsError(f"{SECTION}:{idling_key} is a {type(block).__name__}, not an object: "
                            "fix it by hand first")
    for key, value in idling.items():
        block[find_key(block, key) or key] = value
    return result


def _qscrypt_problems(key: str, args: list[str]) -> list[Problem]:
    """Parse `args` with the real `qscrypt miner` / `qscrypt worker` options: what would fail at start."""
    from backends import cli as miner_cli
    from backends import worker as worker_cli
    from backends.miner import parse_url

    rest = list(args)
    while rest[:1] and rest[0] in ("-c", "--config"):
        rest = rest[2:]
    if not rest or rest[0] not in ("miner", "worker"):
        return [Problem("error", key, f"runs qscrypt {rest[0] if rest else '(nothing)'!r}: the idle phase "
                                      "needs 'miner' or 'worker'")]
    parser = _RaisingParser(prog=f"qscrypt {rest[0]}", add_help=False)
    (miner_cli if rest[0] == "miner" else worker_cli).add_arguments(parser)
    try:
        parsed = parser.parse_args(rest[1:])
    except ValueError as exc:
        return [Problem("error", key, f"qscrypt {rest[0]} would refuse these arguments: {exc}")]
    problems = []
    if rest[0] == "miner":
        try:
            if not parsed.url:
                raise ValueError("-o stratum+tcp://HOST:PORT is missing")
            parse_url(parsed.url)
        except ValueError as exc:
            problems.append(Problem("error", key, str(exc)))
        if parsed.list_devices:
            problems.append(Problem("error", key, "--list-devices lists and exits: nothing would mine"))
        if not parsed.user:
            problems.append(Problem("warning", key, "no -u WORKER: shares are credited to an empty name"))
    return problems


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise ValueError(message)


def check_idling(settings: dict[str, Any], which: Which = shutil.which) -> list[Problem]:
    """What is wrong with the idle-phase settings the client would see (the layered files), worst first."""
    problems: list[Problem] = []
    section_key = find_key(settings, SECTION)
    if section_key is None:
        hint = " (a legacy \"Settings\" section is there: this client reads ClientSettings)" \
            if find_key(settings, "Settings") else ""
        return [Problem("error", SECTION, f"missing{hint}: run qscrypt qubic setup")]
    section = settings[section_key]
    if not isinstance(section, dict):
        return [Problem("error", SECTION, f"is a {type(section).__name__}, not an object")]
    idling_key = find_key(section, IDLING)
    where = f"{SECTION}:{IDLING}"
    if idling_key is None:
        return [Problem("error", where, "missing: nothing runs while Qubic idles (run qscrypt qubic setup)")]
    block = section[idling_key]
    if not isinstance(block, dict):
        return [Problem("error", where, f"is a {type(block).__name__}, not an object")]
    known = {k.lower() for k in IDLING_KEYS}
    for key in block:
        if key.lower() not in known:
            problems.append(Problem("warning", f"{where}:{key}",
                                    f"not a key the client reads (it knows {', '.join(IDLING_KEYS)})"))
    values: dict[str, str] = {}
    for name in IDLING_KEYS:
        key = find_key(block, name)
        value = "" if key is None else block[key]
        if value is None:
            value = ""
        if not isinstance(value, str):
            problems.append(Problem("error", f"{where}:{name}", f"must be a string, not {json.dumps(value)}"))
            value = ""
        values[name] = value
    for name, arguments_name in COMMAND_KEYS.items():
        command, arguments = values[name].strip(), values[arguments_name]
        key = f"{where}:{name}"
        if not command:
            if name == "command":
                problems.append(Problem("error", key, "empty: nothing runs while Qubic idles"))
            elif arguments.strip():
                problems.append(Problem("warning", f"{where}:{arguments_name}", f"set, but {name} is empty"))
            continue
        resolved = which(command)
        if resolved is None:
            problems.append(Problem("error", key, f"{command!r} is not an executable file (nor on PATH)"))
            continue
        if name == "command" and Path(resolved).name.lower() in ("qscrypt", "qscrypt.exe"):
            problems += _qscrypt_problems(f"{where}:{arguments_name}", split_arguments(arguments))
    return sorted(problems, key=lambda p: p.severity != "error")


# -- files -------------------------------------------------------------------------------------------


def settings_files(path: Path) -> tuple[Path, Path]:
    """(appsettings.json, appsettings.production.json) of the client `path` names (its folder or a file)."""
    folder = path if path.is_dir() else path.parent
    return folder / BASE_FILE, folder / PRODUCTION_FILE


def read_settings(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return parse_settings(text, str(path))


def write_with_backup(path: Path, settings: dict[str, Any], now: datetime.datetime) -> Path | None:
    """Write `settings` to `path` atomically (its mode kept); the previous file, if any, is kept as a
    timestamped copy beside it, whose path is returned."""
    backup = None
    mode = 0o644
    if path.exists():
        stem = f"{path.name}.qscrypt-backup-{now:%Y%m%dT%H%M%S}Z"
        backup = path.with_name(stem)
        serial = 1
        while backup.exists():  # two runs within a second: never overwrite an earlier backup
            serial += 1
            backup = path.with_name(f"{stem}.{serial}")
        shutil.copy2(path, backup)
        mode = path.stat().st_mode & 0o7777
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(render_settings(settings))
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return backup


def setup(path: Path, idling: dict[str, str], in_place: bool,
          now: datetime.datetime | None = None) -> tuple[Path, Path | None]:
    """Merge `idling` into the client's settings: the production file (created if missing) unless
    `in_place`, in which case the file `path` names. Returns (file written, backup or None)."""
    base, production = settings_files(path)
    if not base.parent.is_dir():
        raise SettingsError(f"{base.parent}: no such folder (give the Qubic client's appsettings.json)")
    target = path if in_place and not path.is_dir() else (base if in_place else production)
    current = read_settings(target) if target.exists() else {}
    merged = merge_idling(current, idling)
    backup = write_with_backup(target, merged, now or datetime.datetime.now(datetime.UTC))
    return target, backup


def effective_settings(path: Path) -> tuple[dict[str, Any], list[Path]]:
    """The settings the client loads from `path`'s folder (production over base) and the files read."""
    base, production = settings_files(path)
    files = [f for f in (base, production) if f.exists()]
    if path.is_file() and path not in files:
        files.append(path)
    if not files:
        raise SettingsError(f"no {BASE_FILE} or {PRODUCTION_FILE} in {base.parent}")
    settings: dict[str, Any] = {}
    for file in files:
        settings = layered(settings, read_settings(file))
    return settings, files


# -- command line ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="qubic_command", required=True)
    p = sub.add_parser("setup", help="write the idling block into the Qubic client's settings",
                       description="Writes ClientSettings:idling (into appsettings.production.json beside "
                                   "the given appsettings.json unless --in-place), keeping every other "
                                   "key and a timestamped backup. Arguments after -- go to the idle "
                                   "command, e.g. -- --threads 4.")
    p.add_argument("--appsettings", type=Path, required=True,
                   help="the client's appsettings.json (or its folder)")
    p.add_argument("--worker", default=socket.gethostname(), help="worker name (default: the host name)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("-o", "--url", help="mine with `qscrypt miner` on this proxy: stratum+tcp://HOST:PORT")
    target.add_argument("--bootstrap", help="hash for a coordinator with `qscrypt worker` on these Kafka "
                                            "bootstrap servers, HOST:PORT[,HOST:PORT]")
    p.add_argument("--command", dest="launcher", help="the qscrypt launcher (default: the one beside this "
                                                      "Python, else on PATH)")
    p.add_argument("--in-place", action="store_true",
                   help="write the file given, not appsettings.production.json beside it")
    for step in ("pre", "post"):
        p.add_argument(f"--{step}-command", default="", help=f"{step}Command (default: none)")
        p.add_argument(f"--{step}-arguments", default="", help=f"{step}CommandArguments")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="-- then arguments for the idle command")
    p = sub.add_parser("check", help="say what is wrong with the Qubic client's idling settings")
    p.add_argument("--appsettings", type=Path, required=True,
                   help="the client's appsettings.json (or its folder)")


def main(args: argparse.Namespace) -> int:
    if args.qubic_command == "setup":
        return _setup(args)
    return _check(args)


def _setup(args: argparse.Namespace) -> int:
    extra = list(args.extra)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    try:
        launcher = args.launcher or default_command()
        arguments = idle_arguments(args.worker, args.url, args.bootstrap, extra)
        idling = {"preCommand": args.pre_command, "preCommandArguments": args.pre_arguments,
                  "command": launcher, "arguments": join_arguments(arguments),
                  "postCommand": args.post_command, "postCommandArguments": args.post_arguments}
        written, backup = setup(args.appsettings, idling, args.in_place)
        settings, _ = effective_settings(written)
    except (ValueError, OSError) as exc:
        print(f"qscrypt qubic setup: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {SECTION}:{IDLING} to {written}" + (f" (previous file kept as {backup})" if backup else ""))
    return _report(settings, written)


def _check(args: argparse.Namespace) -> int:
    try:
        settings, files = effective_settings(args.appsettings)
    except ValueError as exc:
        print(f"qscrypt qubic check: {exc}", file=sys.stderr)
        return 1
    return _report(settings, *files)


def _report(settings: dict[str, Any], *files: Path) -> int:
    problems = check_idling(settings)
    for problem in problems:
        print(problem)
    names = ", ".join(map(str, files))
    errors = sum(p.severity == "error" for p in problems)
    if errors:
        print(f"{errors} error(s) in {names}: the idle phase would not mine")
        return 1
    block = settings[find_key(settings, SECTION) or SECTION]
    block = block[find_key(block, IDLING) or IDLING]
    command = block[find_key(block, "command") or "command"]
    arguments = block.get(find_key(block, "arguments") or "arguments") or ""
    print(f"ok ({names}): each idle phase runs {command} {arguments}".rstrip())
    return 0
