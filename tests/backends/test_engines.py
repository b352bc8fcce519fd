"""Every engine against the real vectors, against mining/ on random work, and on coverage and cancel."""

import struct
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.cpu import CpuEngine, resolve_threads
from backends.engine import NONCE_SPACE, CancelToken, Engine, SearchResult, SearchWork
from backends.opencl import KernelParams, OpenClEngine
from mining.hashing import hash_to_int, scrypt_pow
from mining.target import MAX_TARGET

# Kernel shapes beyond the default fixture: the generic lane gather, and lookup gaps (GPU shape).
EXTRA_SHAPES = [KernelParams(16, 2, 4, 1), KernelParams(1, 4, 32, None)]


@pytest.fixture(scope="module", params=EXTRA_SHAPES, ids=lambda p: p.describe())
def shaped_engine(request: pytest.FixtureRequest) -> OpenClEngine:
    return OpenClEngine(params=request.param)


@pytest.fixture(params=["cpu", "opencl"])
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue(f"{request.param}_engine")


def _vector_work(vector: dict[str, str], before: int, count: int) -> tuple[SearchWork, int]:
    """Work whose target is exactly the vector's hash: its real nonce must be found, and only it."""
    header = bytes.fromhex(vector["header"])
    assert scrypt_pow(header)[::-1].hex() == vector["scrypt"]
    nonce = struct.unpack("<I", header[76:])[0]
    start = max(0, nonce - before)
    return SearchWork(header[:76], start, count, hash_to_int(scrypt_pow(header))), nonce


def _brute_force(work: SearchWork) -> list[int]:
    return [nonce for nonce in range(work.nonce_start, work.nonce_end) if work.meets_target(nonce)]


def test_engines_find_the_vector_nonces(engine: Engine, vectors: list[dict[str, str]]) -> None:
    for vector in vectors:
        work, nonce = _vector_work(vector, before=13, count=40)
        result = engine.search(work, CancelToken())
        assert result.found == [nonce], vector.get("name", vector["header"][:16])
        assert result.hashes_done == 40
        assert not result.cancelled
        assert result.rejected_candidates == 0


def test_other_kernel_shapes_find_the_vector_nonces(shaped_engine: OpenClEngine,
                                                    vectors: list[dict[str, str]]) -> None:
    for vector in vectors[:3]:
        work, nonce = _vector_work(vector, before=5, count=24)
        assert shaped_engine.search(work, CancelToken()).found == [nonce]


def test_kernel_compares_the_full_256_bits(opencl_engine: OpenClEngine,
                                           vectors: list[dict[str, str]]) -> None:
    """Target = hash is a hit and target = hash - 1 is not: the in-kernel compare is exact, not a filter."""
    work, nonce = _vector_work(vectors[0], before=3, count=8)
    assert opencl_engine.scan(work, CancelToken()).candidates == [nonce]
    below = SearchWork(work.header_prefix, work.nonce_start, work.nonce_count, work.target - 1)
    assert opencl_engine.scan(below, CancelToken()).candidates == []


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.binary(min_size=76, max_size=76),
    start=st.one_of(st.integers(0, NONCE_SPACE - 64), st.just(NONCE_SPACE - 37)),
    count=st.integers(1, 37),
    shift=st.integers(1, 6),
    low_bits=st.integers(0, (1 << 200) - 1),
)
def test_engines_agree_with_mining_on_random_work(
    cpu_engine: CpuEngine, opencl_engine: OpenClEngine,
    prefix: bytes, start: int, count: int, shift: int, low_bits: int,
) -> None:
    count = min(count, NONCE_SPACE - start)
    target = (MAX_TARGET >> shift) ^ low_bits  # hits on roughly 1 in 2^shift hashes
    work = SearchWork(prefix, start, count, target)
    expected = _brute_force(work)
    assert cpu_engine.search(work, CancelToken()).found == expected
    assert opencl_engine.search(work, CancelToken()).found == expected
    # The raw kernel output already equals the truth: the host check is a safety net, not a filter.
    assert sorted(opencl_engine.scan(work, CancelToken()).candidates) == expected


def test_each_nonce_is_hashed_exactly_once(engine: Engine) -> None:
    """With every hash a hit, `found` lists the range itself: no gap, no overlap, across launches too."""
    count = 16 * 8 * 2 + 37  # two full OpenCL launches and a ragged third; 2 uneven CPU slices
    work = SearchWork(bytes(range(76)), 1000, count, MAX_TARGET)
    result = engine.search(work, CancelToken())
    assert result.found == list(range(1000, 1000 + count))
    assert result.hashes_done == count


def _measure_cancel(engine: Engine, run_s: float = 0.3) -> tuple[SearchResult, float]:
    """Start a search of the whole nonce space, cancel it after run_s; (result, seconds cancel took)."""
    cancel = CancelToken()
    box: dict[str, SearchResult] = {}
    returned: dict[str, float] = {}

    def search() -> None:
        box["result"] = engine.search(SearchWork(bytes(76), 0, NONCE_SPACE, 0), cancel)
        returned["at"] = time.perf_counter()

    thread = threading.Thread(target=search)
    thread.start()
    time.sleep(run_s)
    cancel.cancel()
    thread.join(timeout=5)
    assert not thread.is_alive(), "search ignored the cancel"
    assert cancel.cancelled_at is not None
    return box["result"], returned["at"] - cancel.cancelled_at


@pytest.mark.parametrize("engine_name,bound_s", [("cpu", 0.05), ("opencl", 0.25)])
def test_cancel_stops_a_search_within_a_bound(
    request: pytest.FixtureRequest, engine_name: str, bound_s: float,
    record_property: Callable[[str, object], None],
) -> None:
    engine = request.getfixturevalue(f"{engine_name}_engine")
    latencies = []
    for _ in range(3):
        result, latency = _measure_cancel(engine)
        assert result.cancelled
        assert 0 < result.hashes_done < NONCE_SPACE
        latencies.append(latency)
    median = sorted(latencies)[1]
    record_property(f"{engine_name}_cancel_latency_s", median)
    print(f"{engine_name} cancel latency ms: median {median * 1000:.1f} of "
          f"{[round(x * 1000, 1) for x in latencies]}")
    assert median < bound_s


def test_cpu_share_sets_threads() -> None:
    assert resolve_threads(3) == 3
    assert resolve_threads(cpu_share=1.0) >= 1
    assert resolve_threads(cpu_share=0.01) == 1
    with pytest.raises(ValueError):
        resolve_threads(cpu_share=1.5)
    with pytest.raises(ValueError):
        resolve_threads(0)


def test_a_cancelled_search_says_exactly_which_nonces_it_left(engine: Engine) -> None:
    """What a stopping worker hands back: with every hash meeting the target, `found` is exactly the
    nonces hashed, so found and the unhashed pieces must tile the range with no gap and no overlap."""
    work = SearchWork(bytes(range(76)), 5000, 40_000, MAX_TARGET)
    cancel = CancelToken()
    # 40,000 nonces take 0.5 s or more on any engine here (SIMD scrypt does ~40 kH/s a core).
    threading.Timer(0.05, cancel.cancel).start()
    result = engine.search(work, cancel)
    assert result.cancelled and result.unhashed, "the search finished before the cancel: make it longer"
    left = [n for start, count in result.unhashed for n in range(start, start + count)]
    assert sorted(result.found + left) == list(range(5000, 45_000))
    assert result.hashes_done == len(result.found) == 40_000 - len(left)
    assert [start for start, _ in result.unhashed] == sorted(start for start, _ in result.unhashed)
    finished = engine.search(SearchWork(work.header_prefix, 5000, 300, MAX_TARGET), CancelToken())
    assert not finished.cancelled and finished.unhashed == () and finished.hashes_done == 300
