"""Our scrypt (mining/_scrypt.c) against hashlib.scrypt and the real vectors, on every implementation
this CPU runs (scalar, AVX2, AVX-512), in batches of every size that reaches a different mix of
its SIMD widths."""

import hashlib
import itertools
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mining.hashing import scrypt_impls, scrypt_many, scrypt_pow

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO.parent / "shared" / "vectors" / "scrypt_headers.json"
HEADER_VECTORS: list[dict[str, Any]] = json.loads(VECTORS.read_text())["vectors"]
IMPLS = scrypt_impls()
RANDOM_HEADERS = 2048
# Widest cores: AVX-512 8 hashes, then 4, 2, 1; AVX2 6, then 4, 2, 1. These sizes reach every core
# of both and every mix of them a batch's tail can take (15 = 8 + 4 + 2 + 1, 13 = 6 + 6 + 1).
BATCH_SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 17, 23, 64]


def _reference(header: bytes) -> bytes:
    return hashlib.scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32)


@pytest.fixture(scope="module")
def random_headers() -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(19)
    headers = [rng.randbytes(80) for _ in range(RANDOM_HEADERS)]
    return headers, [_reference(header) for header in headers]


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_every_implementation_the_cpu_runs_is_offered() -> None:
    assert IMPLS[-1] == "scalar"
    assert len(set(IMPLS)) == len(IMPLS)
    if Path("/proc/cpuinfo").exists():
        flags = _cpu_flags()
        assert ("avx2" in IMPLS) == ("avx2" in flags)
        assert ("avx512" in IMPLS) == {"avx2", "avx512f", "avx512vl"}.issubset(flags)


@pytest.mark.parametrize("impl", IMPLS)
def test_vectors(impl: str) -> None:
    headers = b"".join(bytes.fromhex(vector["header"]) for vector in HEADER_VECTORS)
    hashes = scrypt_many(headers, impl=impl)
    got = [hashes[i:i + 32][::-1].hex() for i in range(0, len(hashes), 32)]
    assert got == [vector["scrypt"] for vector in HEADER_VECTORS]
    for vector in HEADER_VECTORS:  # each alone: the 1-lane core
        header = bytes.fromhex(vector["header"])
        assert scrypt_many(header, impl=impl)[::-1].hex() == vector["scrypt"]


@pytest.mark.parametrize("impl", IMPLS)
def test_random_headers_in_batches_of_every_size(
        impl: str, random_headers: tuple[list[bytes], list[bytes]]) -> None:
    headers, expected = random_headers
    start = 0
    for size in itertools.cycle(BATCH_SIZES):
        if start >= len(headers):
            break
        batch = headers[start:start + size]
        got = scrypt_many(b"".join(batch), impl=impl)
        assert len(got) == 32 * len(batch)
        for index in range(len(batch)):
            assert got[index * 32:(index + 1) * 32] == expected[start + index], (
                f"{impl}: header {start + index} in a batch of {len(batch)}")
        start += size


def test_scrypt_pow_is_the_default_implementation(random_headers: tuple[list[bytes], list[bytes]]) -> None:
    headers, expected = random_headers
    assert [scrypt_pow(header) for header in headers[:20]] == expected[:20]
    assert scrypt_many(b"".join(headers[:20])) == b"".join(expected[:20])


def test_buffers_of_every_kind_and_nothing() -> None:
    header = os.urandom(80)
    expected = _reference(header)
    assert scrypt_many(bytearray(header)) == expected
    assert scrypt_many(memoryview(header * 3)[80:160]) == expected
    assert scrypt_many(b"") == b""


@pytest.mark.parametrize("length", [1, 79, 81, 159, 161])
def test_partial_headers_are_refused(length: int) -> None:
    with pytest.raises(ValueError, match="whole number of 80-byte headers"):
        scrypt_many(bytes(length))
    with pytest.raises(ValueError, match="80 bytes"):
        scrypt_pow(bytes(length))


def test_unknown_implementation_is_refused() -> None:
    with pytest.raises(ValueError, match="'sse9' is not one this CPU runs"):
        scrypt_many(bytes(80), impl="sse9")
    with pytest.raises(TypeError):
        scrypt_many("not bytes")  # type: ignore[arg-type]


def test_the_gil_is_released_while_hashing() -> None:
    # A long call (the scalar core, ~0.1-0.3 s here) in another thread; this thread must run Python
    # while it is inside: with the GIL held it could not run at all between the two timestamps.
    headers = os.urandom(80) * 400
    span: list[float] = []

    def work() -> None:
        span.append(time.perf_counter())
        scrypt_many(headers, impl="scalar")
        span.append(time.perf_counter())

    thread = threading.Thread(target=work)
    ticks: list[float] = []
    thread.start()
    while thread.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    thread.join()
    start, end = span
    margin = (end - start) / 5
    assert end - start > 0.05
    assert any(start + margin < tick < end - margin for tick in ticks)


def test_threads_hash_side_by_side_without_sharing_state() -> None:
    rng = random.Random(7)
    batches = [b"".join(rng.randbytes(80) for _ in range(9)) for _ in range(4)]
    expected = [b"".join(_reference(batch[i:i + 80]) for i in range(0, len(batch), 80)) for batch in batches]
    results: list[list[bytes]] = [[] for _ in batches]

    def work(index: int) -> None:
        for impl in IMPLS * 2:
            results[index].append(scrypt_many(batches[index], impl=impl))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, got in enumerate(results):
        assert got == [expected[index]] * len(IMPLS) * 2


_ON_ANOTHER_CPU = textwrap.dedent("""
    import hashlib, json, random, sys
    from mining.hashing import scrypt_impls, scrypt_many
    impls = scrypt_impls()
    vectors = json.loads(open(sys.argv[1]).read())["vectors"]
    headers = [bytes.fromhex(v["header"]) for v in vectors]
    rng = random.Random(3)
    headers += [rng.randbytes(80) for _ in range(14)]
    expected = b"".join(hashlib.scrypt(h, salt=h, n=1024, r=1, p=1, dklen=32) for h in headers)
    assert [expected[i * 32:(i + 1) * 32][::-1].hex() for i in range(len(vectors))] == [
        v["scrypt"] for v in vectors]
    for impl in impls:
        got = b"".join(scrypt_many(b"".join(headers[i:i + k]), impl=impl)
                       for i, k in ((0, 1), (1, 7), (8, 13)))
        assert got == expected[:21 * 32], impl
    print(",".join(impls))
""")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the run-time choice between x86 SIMD paths")
@pytest.mark.parametrize("cpu,expected", [("Nehalem", "scalar"), ("Haswell", "avx2,scalar")])
def test_a_cpu_without_avx512_or_avx2_gets_the_paths_it_runs(cpu: str, expected: str) -> None:
    # The same build under QEMU's emulation of an older CPU: nothing it cannot run may be chosen (or
    # executed at import), and what it runs must still agree with hashlib. Debian's qemu-user
    # (Makefile DEBIAN_PACKAGES).
    qemu = shutil.which("qemu-x86_64")
    assert qemu is not None, "qemu-x86_64 not found: apt-get install qemu-user"
    done = subprocess.run([qemu, "-cpu", cpu, os.path.realpath(sys.executable), "-c", _ON_ANOTHER_CPU,
                           str(VECTORS)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == expected
