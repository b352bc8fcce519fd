"""Litecoin Core fixtures: real `litecoind -regtest` node pairs on loopback.

- `litecoin_pair` (session): a peered pair whose node 0 wallet holds mature coins (height 101
  or more). Shared by the whole session: tests must not assume a height or an empty mempool.
- `litecoin_mweb_pair` (module): a pair of its own at height 431, the eve of MWEB activation,
  with a peg-in in both mempools (`pair.mweb_pegin_txid`): the next block is the first MWEB
  block, for the code under test to mine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qscrypt.devnet.litecoind import LitecoinError, RegtestPair, activate_mweb, start_pair
from qscrypt.jsonrpc import RpcError
from tests.services import ServiceRecord, fixture_failure

_record = ServiceRecord("Litecoin Core (regtest)")


@pytest.fixture(scope="session")
def litecoin_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestPair]:
    began = time.monotonic()
    pair = _start(tmp_path_factory.mktemp("litecoin"))
    _record.startup_s["litecoind pair (start, peer, fund 101 blocks)"] = time.monotonic() - began
    yield pair
    pair.stop()


@pytest.fixture(scope="module")
def litecoin_mweb_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestPair]:
    began = time.monotonic()
    pair = _start(tmp_path_factory.mktemp("litecoin-mweb"))
    try:
        activate_mweb(pair)
    except (LitecoinError, RpcError) as exc:
        pair.stop()
        raise fixture_failure(f"could not bring litecoind to MWEB activation: {exc}") from None
    _record.startup_s.setdefault(
        "litecoind pair at MWEB eve (start, fund, mine to 431, peg-in)", time.monotonic() - began
    )
    yield pair
    pair.stop()


def _start(base_dir: Path) -> RegtestPair:
    _record.logs.append(base_dir)
    try:
        return start_pair(base_dir)
    except (LitecoinError, RpcError) as exc:
        raise fixture_failure(f"litecoind regtest pair did not start: {exc}") from None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    _record.report(terminalreporter, exitstatus)
