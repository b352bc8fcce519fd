"""Log lines from several processes sharing one stderr (the supervisor and its workers) stay whole."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from qscrypt.log import configure_logging, get_logger

_WRITER = """
import sys
from qscrypt.log import configure_logging, get_logger
configure_logging("info", "json")
log = get_logger(writer=int(sys.argv[1]))
for n in range(int(sys.argv[2])):
    log.info("test.line", n=n, padding="x" * 200)
"""


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_a_log_line_and_its_newline_go_out_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(sys, "stderr", recorder)
    try:
        configure_logging("info", "json")
        structlog.get_logger().info("test.one", worker=1)
        structlog.get_logger().info("test.two", worker=2)
    finally:
        structlog.reset_defaults()
    assert len(recorder.writes) == 2
    for text, event in zip(recorder.writes, ("test.one", "test.two"), strict=True):
        assert text.endswith("\n") and text.count("\n") == 1
        assert json.loads(text)["event"] == event


def test_a_logger_made_at_import_writes_in_the_format_configured_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Modules make their loggers at import, before the command configures logging: such a logger
    must still write JSON lines when JSON is configured (the upstreams' state lines came out in the
    console format among JSON ones)."""
    structlog.reset_defaults()
    early = get_logger(component="upstream")
    recorder = _Recorder()
    monkeypatch.setattr(sys, "stderr", recorder)
    try:
        configure_logging("info", "json")
        early.warning("upstream.state", state="down")
    finally:
        structlog.reset_defaults()
    [line] = recorder.writes
    assert json.loads(line).items() >= {"component": "upstream", "event": "upstream.state", "state": "down",
                                        "level": "warning"}.items()


def test_processes_sharing_one_log_file_write_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "shared.log"
    lines = 3000
    with log.open("w") as out:
        writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(n), str(lines)],
                                    stdout=out, stderr=subprocess.STDOUT) for n in range(3)]
        for writer in writers:
            assert writer.wait(60) == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    for n in range(3):
        assert [e["n"] for e in events if e["writer"] == n] == list(range(lines))
