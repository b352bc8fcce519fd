"""`qscrypt qubic setup` and `check`: the pure merge and check on real-shaped Qubic client settings,
and the command line on real files."""

import argparse
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import qubic
from backends.qubic import (
    SettingsError,
    check_idling,
    join_arguments,
    layered,
    merge_idling,
    parse_settings,
    split_arguments,
)


def qscrypt(argv: list[str]) -> int:
    """`qscrypt qubic ...` in this process, as cli.main runs it, without cli.main's logging set-up
    (which would bind every later test's log lines to this test's captured, soon closed, stderr)."""
    assert argv[0] == "qubic"
    parser = argparse.ArgumentParser(prog="qscrypt qubic")
    qubic.add_arguments(parser)
    return qubic.main(parser.parse_args(argv[1:]))

# Shaped like the client README's samples (qubic-li/client, "Customizing"), with the comments and
# trailing commas its .NET reader accepts and an idling block in another spelling.
REAL_SHAPED = """\ufeff{
  // the client's own file
  "Logging": { "LogLevel": { "Default": "Information" } },
  "ClientSettings": {
    "poolAddress": "wss://wps.qubic.li/ws",
    "accessToken": "YOURACCESSTOKEN",
    "alias": "rig // 7, {not a comment}",
    "pps": true,
    "trainer": { "cpu": false, "gpu": true, "gpuVersion": "CUDA", "cpuThreads": 16, },
    /* earlier idle miner */
    "Idling": { "Command": "ping", "arguments": "-c 2 example.com", "note": "kept" },
  },
}
"""

IDLE = {"preCommand": "", "preCommandArguments": "", "command": "/opt/qscrypt/bin/qscrypt",
        "arguments": "worker --bootstrap k1:9092 --worker-id rig-7", "postCommand": "",
        "postCommandArguments": ""}


def test_real_shaped_settings_parse_with_comments_and_trailing_commas() -> None:
    settings = parse_settings(REAL_SHAPED)
    assert settings["ClientSettings"]["alias"] == "rig // 7, {not a comment}"
    assert settings["ClientSettings"]["trainer"]["cpuThreads"] == 16
    assert settings["Logging"] == {"LogLevel": {"Default": "Information"}}


@pytest.mark.parametrize("text,where", [
    ('{\n  "ClientSettings": {\n    "alias": "x"\n    "pps": true\n  }\n}', "line 4, column 5"),
    ('{"ClientSettings": {"alias": "unterminated}}', "line 1"),
    ("", "line 1, column 1"),
])
def test_bad_json_names_the_place(text: str, where: str) -> None:
    with pytest.raises(SettingsError, match=where):
        parse_settings(text, "appsettings.json")


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(SettingsError, match="must be a JSON object, not list"):
        parse_settings("[1, 2]")


def test_merge_sets_idling_and_touches_nothing_else() -> None:
    before = parse_settings(REAL_SHAPED)
    merged = merge_idling(before, IDLE)
    assert before == parse_settings(REAL_SHAPED), "the input was modified"
    idling = merged["ClientSettings"]["Idling"]
    assert "idling" not in merged["ClientSettings"], "a second spelling would be a duplicate key to .NET"
    assert idling["Command"] == IDLE["command"] and "command" not in idling
    assert idling["arguments"] == IDLE["arguments"] and idling["note"] == "kept"
    assert {k: v for k, v in merged["ClientSettings"].items() if k != "Idling"} == \
        {k: v for k, v in before["ClientSettings"].items() if k != "Idling"}
    assert merged["Logging"] == before["Logging"]
    assert [(p.severity, p.key) for p in check_idling(merged, _which({"/opt/qscrypt/bin/qscrypt"}))] == \
        [_warning("ClientSettings:idling:note")]


def test_merge_into_an_empty_file_creates_the_section() -> None:
    assert merge_idling({}, IDLE) == {"ClientSettings": {"idling": IDLE}}


@pytest.mark.parametrize("settings,key", [({"ClientSettings": []}, "ClientSettings is a list"),
                                          ({"clientsettings": {"idling": "x"}}, "idling is a str")])
def test_merge_refuses_a_section_that_is_not_an_object(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        merge_idling(settings, IDLE)


def test_production_file_wins_key_by_key_whatever_the_case() -> None:
    base = {"ClientSettings": {"alias": "a", "Idling": {"Command": "ping", "arguments": "x"}}}
    production = {"clientSettings": {"idling": {"command": "/q"}}}
    seen = layered(base, production)
    section = seen["ClientSettings"]
    assert section["alias"] == "a"
    assert section["Idling"] == {"arguments": "x", "command": "/q"}


@pytest.mark.parametrize("line,args", [
    # Microsoft's examples for the command-line rules .NET's Process applies on every OS.
    ('"abc" d e', ["abc", "d", "e"]),
    (r'a\\b d"e f"g h', [r"a\\b", "de fg", "h"]),
    (r'a\\\"b c d', [r'a\"b', "c", "d"]),
    (r'a\\\\"b c" d e', [r"a\\b c", "d", "e"]),
    ('a"b"" c d', ['ab" c d']),
    ('  -o  stratum+tcp://h:1 \t-u "" ', ["-o", "stratum+tcp://h:1", "-u", ""]),
])
def test_arguments_split_like_dotnet(line: str, args: list[str]) -> None:
    assert split_arguments(line) == args


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))))
def test_joined_arguments_split_back(args: list[str]) -> None:
    assert split_arguments(join_arguments(args)) == args


def _which(existing: set[str]) -> Any:
    return lambda command: command if command in existing else None


def _error(key: str) -> tuple[str, str]:
    return ("error", key)


def _warning(key: str) -> tuple[str, str]:
    return ("warning", key)


def _idling(**values: object) -> dict[str, Any]:
    return {"ClientSettings": {"alias": "x", "idling": {**IDLE, **values}}}


QS = {"/opt/qscrypt/bin/qscrypt", "/usr/bin/pre"}


@pytest.mark.parametrize("settings,problems,says", [
    ({"Logging": {}}, [_error("ClientSettings")], "missing"),
    ({"Settings": {"alias": "x"}}, [_error("ClientSettings")], "legacy"),
    ({"ClientSettings": 3}, [_error("ClientSettings")], "not an object"),
    ({"ClientSettings": {"alias": "x"}}, [_error("ClientSettings:idling")], "nothing runs"),
    ({"ClientSettings": {"idling": []}}, [_error("ClientSettings:idling")], "list, not an object"),
    (_idling(command=""), [_error("ClientSettings:idling:command")], "empty"),
    (_idling(command=7), [_error("ClientSettings:idling:command"), _error("ClientSettings:idling:command")],
     "must be a string"),
    (_idling(command="/nowhere/qscrypt"), [_error("ClientSettings:idling:command")], "not an executable"),
    (_idling(arguments="worker --worker-id rig"), [_error("ClientSettings:idling:arguments")], "--bootstrap"),
    (_idling(arguments="worker --bootstrap k:1 --bogus"), [_error("ClientSettings:idling:arguments")],
     "unrecognized arguments: --bogus"),
    (_idling(arguments="miner -u rig"), [_error("ClientSettings:idling:arguments")], "-o stratum"),
    (_idling(arguments="miner -o http://h:1 -u rig"), [_error("ClientSettings:idling:arguments")],
     "unsupported scheme"),
    (_idling(arguments="proxy"), [_error("ClientSettings:idling:arguments")], "'miner' or 'worker'"),
    (_idling(arguments="-c /etc/q.toml miner -o stratum+tcp://h:1"),
     [_warning("ClientSettings:idling:arguments")], "no -u"),
    (_idling(preCommand="/nowhere/pre"), [_error("ClientSettings:idling:preCommand")], "not an executable"),
    (_idling(preCommand="/usr/bin/pre", postCommandArguments="x", argumnets="typo"),
     [_warning("ClientSettings:idling:argumnets"), _warning("ClientSettings:idling:postCommandArguments")],
     "not a key"),
    (_idling(), [], ""),
])
def test_check_says_what_is_wrong(settings: dict[str, Any], problems: list[tuple[str, str]],
                                  says: str) -> None:
    found = check_idling(settings, _which(QS))
    assert sorted((p.severity, p.key) for p in found) == sorted(problems), found
    assert [p.severity for p in found] == sorted(p.severity for p in found), "errors come first"
    assert says in " ".join(p.message for p in found)


def test_check_finds_commands_on_disk_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "bin" / "hook"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    plain = tmp_path / "notes.txt"
    plain.write_text("")
    monkeypatch.setenv("PATH", str(tool.parent))
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    assert check_idling(_idling(command=str(tool), arguments="anything", preCommand="hook")) == []
    problems = check_idling(_idling(command=str(plain), postCommand="nonexistent-hook"))
    assert [p.key for p in problems] == ["ClientSettings:idling:command", "ClientSettings:idling:postCommand"]


# -- the command line on real files ----------------------------------------------------------------


def _launcher(tmp_path: Path) -> Path:
    launcher = tmp_path / "venv" / "qscrypt"
    launcher.parent.mkdir(exist_ok=True)
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    return launcher


def test_setup_writes_the_production_file_and_keeps_a_backup(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    client = tmp_path / "q"
    client.mkdir()
    (client / "appsettings.json").write_text(REAL_SHAPED)
    launcher = _launcher(tmp_path)
    common = ["qubic", "setup", "--appsettings", str(client / "appsettings.json"), "--command", str(launcher)]
    assert qscrypt([*common, "--worker", "rig 7", "-o", "stratum+tcp://10.0.0.2:3333", "--", "--threads",
                    "4"]) == 0
    assert (client / "appsettings.json").read_text() == REAL_SHAPED, "the base file was touched"
    production = json.loads((client / "appsettings.production.json").read_text())
    idling = production["ClientSettings"]["idling"]
    assert idling["command"] == str(launcher)
    assert split_arguments(idling["arguments"]) == ["miner", "-o", "stratum+tcp://10.0.0.2:3333",
                                                    "-u", "rig 7", "--threads", "4"]
    assert {idling["preCommand"], idling["postCommand"]} == {""}
    production["ClientSettings"]["alias"] = "kept"
    (client / "appsettings.production.json").write_text(json.dumps(production))
    os.chmod(client / "appsettings.production.json", 0o600)
    capsys.readouterr()

    assert qscrypt([*common, "--worker", "rig-7", "--bootstrap", "k1:9092,k2:9092"]) == 0
    out = capsys.readouterr().out
    assert "previous file kept as" in out and "ok (" in out
    rewritten = json.loads((client / "appsettings.production.json").read_text())
    assert rewritten["ClientSettings"]["alias"] == "kept"
    assert split_arguments(rewritten["ClientSettings"]["idling"]["arguments"]) == [
        "worker", "--bootstrap", "k1:9092,k2:9092", "--worker-id", "rig-7"]
    assert stat.S_IMODE((client / "appsettings.production.json").stat().st_mode) == 0o600
    backups = list(client.glob("appsettings.production.json.qscrypt-backup-*"))
    assert len(backups) == 1 and json.loads(backups[0].read_text()) == production

    assert qscrypt(["qubic", "check", "--appsettings", str(client)]) == 0
    assert "ok (" in capsys.readouterr().out
    # Again within the same second: a second backup beside the first, which is kept.
    assert qscrypt([*common, "--worker", "rig-8", "--bootstrap", "k1:9092"]) == 0
    assert json.loads(backups[0].read_text()) == production
    assert len(list(client.glob("appsettings.production.json.qscrypt-backup-*"))) == 2


def test_setup_in_place_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / "appsettings.json"
    settings.write_text('{"ClientSettings": {"alias": "x",}}')
    launcher = _launcher(tmp_path)
    base = ["qubic", "setup", "--appsettings", str(settings), "--command", str(launcher)]
    assert qscrypt([*base, "--in-place", "-o", "stratum+tcp://h:1"]) == 0
    assert not (tmp_path / "appsettings.production.json").exists()
    assert json.loads(settings.read_text())["ClientSettings"]["alias"] == "x"

    broken = '{"ClientSettings": {"alias": "x"'
    settings.write_text(broken)
    assert qscrypt([*base, "--in-place", "-o", "stratum+tcp://h:1"]) == 2
    assert "not valid JSON at line 1" in capsys.readouterr().err
    assert settings.read_text() == broken, "a file that does not parse must be left alone"
    assert qscrypt(["qubic", "check", "--appsettings", str(settings)]) == 1
    assert "not valid JSON" in capsys.readouterr().err

    with pytest.raises(SystemExit, match="2"):  # argparse: -o and --bootstrap exclude each other
        qscrypt([*base, "--in-place", "-o", "stratum+tcp://h:1", "--bootstrap", "k:1"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert qscrypt(["qubic", "setup", "--appsettings", str(tmp_path / "missing" / "appsettings.json"),
                    "--command", str(launcher), "-o", "stratum+tcp://h:1"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_check_reports_errors_with_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "appsettings.json").write_text(json.dumps(_idling(command="/nowhere/qscrypt")))
    assert qscrypt(["qubic", "check", "--appsettings", str(tmp_path / "appsettings.json")]) == 1
    out = capsys.readouterr().out
    assert "error: ClientSettings:idling:command: '/nowhere/qscrypt' is not an executable" in out
    assert qscrypt(["qubic", "check", "--appsettings", str(tmp_path / "empty")]) == 1


def test_the_qscrypt_command_has_the_qubic_subcommand(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "cli", "qubic", "check", "--appsettings", str(tmp_path)],
                          cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and f"no appsettings.json or appsettings.production.json in {tmp_path}" \
        in done.stderr, done.stderr
