"""Real third-party peers against the proxy (fixtures: tests/services/peers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.peers.quiet import QuietWatch


@pytest.fixture(scope="session", autouse=True)
async def quiet_chain(request: pytest.FixtureRequest,
                      tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[QuietWatch | None]:
    """cpuminer on a quiet chain, watched from the first test of tests/peers on (see
    tests/peers/quiet.py); None when test_quiet_chain.py is not among the tests to run."""
    if not any(item.path.name == "test_quiet_chain.py" for item in request.session.items):
        yield None
        return
    watch = QuietWatch(tmp_path_factory.mktemp("quiet-chain"), request.getfixturevalue("cpuminer_path"))
    await watch.start()
    try:
        yield watch
    finally:
        await watch.close()
