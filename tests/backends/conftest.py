"""Engines on the real PoCL device (a missing OpenCL platform fails these tests, it never skips them)."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.cpu import CpuEngine
from backends.opencl import KernelParams, OpenClEngine

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "scrypt_headers.json"

# Work-items stay small so a launch is a few milliseconds: tests hash short ranges.
OPENCL_CPU_SHAPE = KernelParams(lanes=8, lookup_gap=1, work_items=16, local_size=1)


@pytest.fixture(scope="session")
def vectors() -> list[dict[str, str]]:
    return json.loads(VECTORS.read_text())["vectors"]


@pytest.fixture(scope="session")
def cpu_engine() -> Iterator[CpuEngine]:
    engine = CpuEngine(threads=2)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def opencl_engine() -> Iterator[OpenClEngine]:
    engine = OpenClEngine(params=OPENCL_CPU_SHAPE)
    yield engine
    engine.close()
