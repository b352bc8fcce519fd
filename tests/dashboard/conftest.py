"""The dashboard tests' own Litecoin Core regtest pair: the money test matures blocks a hundred at
a time, and the session pair must stay far below MWEB activation (block 432) for the tests that
share it (as tests/payouts/conftest.py)."""

from collections.abc import Iterator

import pytest

from qscrypt.devnet.litecoind import RegtestPair
from tests.services.litecoin import _start


@pytest.fixture(scope="session")
def dashboard_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestPair]:
    pair = _start(tmp_path_factory.mktemp("litecoin-dashboard"))
    yield pair
    pair.stop()
