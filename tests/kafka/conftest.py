"""Fixtures for the work pipeline: `stack` builds one on the bus named by `bus_kind`.

Tests taking `stack` run twice, on the in-process bus and on the real broker; tests of broker
faults, TLS and worker processes ask for `kafka_stack`, and `memory_stack` is the in-process bus alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from qscrypt.devnet.kafka import KafkaBroker
from tests.kafka.harness import Stack, bus_config

StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture(params=["memory", "kafka"])
def bus_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _stacks(kind: str, broker: KafkaBroker | None, tmp_path: Path) -> AsyncIterator[StackFactory]:
    made: list[Stack] = []

    async def make(**bus_overrides: Any) -> Stack:
        stack = Stack(kind, bus_config(kind, broker, **bus_overrides), broker, tmp_path)
        made.append(stack)
        return await stack.start()

    try:
        yield make
    finally:
        for stack in made:
            await stack.close()


@pytest.fixture
async def stack(bus_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StackFactory]:
    broker = request.getfixturevalue("kafka_broker") if bus_kind == "kafka" else None
    async for make in _stacks(bus_kind, broker, tmp_path):
        yield make


@pytest.fixture
async def kafka_stack(kafka_broker: KafkaBroker, tmp_path: Path) -> AsyncIterator[StackFactory]:
    async for make in _stacks("kafka", kafka_broker, tmp_path):
        yield make


@pytest.fixture
async def memory_stack(tmp_path: Path) -> AsyncIterator[StackFactory]:
    async for make in _stacks("memory", None, tmp_path):
        yield make
