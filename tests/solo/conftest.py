"""Solo mining tests: the proxy on a real Litecoin Core regtest daemon."""

from __future__ import annotations

import pytest

from tests.solo.miner import BLOCKS_MINED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not BLOCKS_MINED:
        return
    terminalreporter.section("solo mining through the proxy", sep="-")
    for where, count in sorted(BLOCKS_MINED.items()):
        terminalreporter.write_line(f"{where}: {count} blocks accepted by litecoind")
    terminalreporter.write_line(f"total: {sum(BLOCKS_MINED.values())} blocks")
