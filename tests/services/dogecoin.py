"""Dogecoin Core fixtures: real `dogecoind -regtest` nodes for merged mining (AuxPoW).

Built once per machine from the source snapshot in ../shared/peers (build-dogecoind.sh, ~5 min on 2
cores, cached in ~/.cache/qscrypt-peers like the other peers; `make peers` builds it ahead). A node
that cannot be built or started fails the test with the reason: these fixtures never skip.

- `dogecoind_path` (session): the built daemon.
- `dogecoin_node` (function): a node of its own at height 19, so its next block may be merge-mined.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qscrypt.devnet.dogecoind import DogecoinError, DogecoinNode, start_node
from qscrypt.jsonrpc import RpcError
from tests.services import ServiceRecord, fixture_failure
from tests.services.peers import PeerError, build_peer

_record = ServiceRecord("Dogecoin Core (regtest)")


@pytest.fixture(scope="session")
def dogecoind_path() -> Path:
    began = time.monotonic()
    try:
        path = build_peer("build-dogecoind.sh", "dogecoin")
    except PeerError as exc:
        raise fixture_failure(f"Dogecoin Core could not be built: {exc}") from None
    _record.startup_s.setdefault("dogecoind (build or cache check)", time.monotonic() - began)
    return path


@pytest.fixture
def dogecoin_node(dogecoind_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DogecoinNode]:
    node = start_dogecoin(dogecoind_path, tmp_path_factory.mktemp("dogecoin"))
    yield node
    node.stop()


def start_dogecoin(binary: Path, datadir: Path) -> DogecoinNode:
    """A regtest node at the eve of AuxPoW; a failure to start fails the test with its logs."""
    began = time.monotonic()
    _record.logs.append(datadir)
    try:
        node = start_node(datadir, binary)
    except (DogecoinError, RpcError) as exc:
        raise fixture_failure(f"dogecoind regtest node did not start: {exc}") from None
    _record.startup_s.setdefault("dogecoind node (start, mine 19 blocks)", time.monotonic() - began)
    return node


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    _record.report(terminalreporter, exitstatus)
