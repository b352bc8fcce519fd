"""The hasher processes: right hashes, every header answered once and in order, a killed hasher
costs nothing, and the event loop keeps running while they hash."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from mining.hashing import hash_to_hex, scrypt_pow
from proxy.config import ListenConfig
from proxy.hashers import HasherPool
from tests.proxy.conftest import wait_for

VECTORS = json.loads((Path(__file__).resolve().parents[3] / "shared" / "vectors" /
                      "scrypt_headers.json").read_text())["vectors"]


async def _hash_all(pool: HasherPool, headers: list[bytes]) -> dict[int, bytes]:
    answers: dict[int, bytes] = {}
    order: list[int] = []

    def done(index: object, pow_hash: bytes) -> None:
        assert isinstance(index, int) and index not in answers
        answers[index] = pow_hash
        order.append(index)

    for index, header in enumerate(headers):
        pool.hash(header, done, index)
    await wait_for(lambda: len(answers) == len(headers), "every header answered", timeout=60)
    return answers


async def test_hashes_match_the_real_vectors() -> None:
    pool = HasherPool(2)
    await pool.start()
    try:
        headers = [bytes.fromhex(v["header"]) for v in VECTORS] * 20
        answers = await _hash_all(pool, headers)
        for index, header in enumerate(headers):
            assert hash_to_hex(answers[index]) == VECTORS[index % len(VECTORS)]["scrypt"]
            assert answers[index] == scrypt_pow(header)
    finally:
        await pool.close()


async def test_hashers_run_below_the_event_loop() -> None:
    pool = HasherPool(2)
    await pool.start()
    try:
        pids = [hasher.transport.get_pid() for hasher in pool._hashers if hasher.transport is not None]
        assert len(pids) == 2
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        # Each lowers its own priority once its imports are done.
        await wait_for(lambda: all(os.getpriority(os.PRIO_PROCESS, pid) == ours + 10 for pid in pids),
                       "both hashers at nice +10", timeout=30)
        answers = await _hash_all(pool, [os.urandom(80) for _ in range(4)])
        assert len(answers) == 4
    finally:
        await pool.close()


async def test_a_killed_hasher_is_restarted_and_loses_no_header() -> None:
    pool = HasherPool(2)
    await pool.start()
    try:
        # Enough for the kill to land mid-stream with SIMD scrypt (~40 kH per CPU-second here).
        headers = [os.urandom(80) for _ in range(20_000)]
        answers: dict[int, bytes] = {}

        def done(index: object, pow_hash: bytes) -> None:
            assert isinstance(index, int) and index not in answers, "answered twice"
            answers[index] = pow_hash

        for index, header in enumerate(headers):
            pool.hash(header, done, index)
        await wait_for(lambda: len(answers) > 20, "the first answers")
        hasher = pool._hashers[0]
        assert hasher.transport is not None
        victim = hasher.transport.get_pid()
        os.kill(victim, signal.SIGKILL)
        assert len(answers) < len(headers), "the hasher was killed with headers in hand"
        await wait_for(lambda: len(answers) == len(headers), "every header answered", timeout=60)
        await wait_for(lambda: pool.restarts == 1, "the killed hasher restarted")
        assert hasher.transport is not None and hasher.transport.get_pid() != victim
        assert all(answers[i] == scrypt_pow(h) for i, h in enumerate(headers))
    finally:
        await pool.close()


async def test_a_header_of_the_wrong_size_is_refused() -> None:
    pool = HasherPool(1)
    await pool.start()
    try:
        with pytest.raises(ValueError, match="80 bytes"):
            pool.hash(b"\x00" * 79, lambda _context, _hash: None)
    finally:
        await pool.close()


async def test_the_loop_keeps_running_while_thousands_of_shares_hash() -> None:
    """Hashing happens in other processes: a 10 ms ticker on this loop barely slips while 60,000
    headers hash (about a second of SIMD scrypt on two cores, several without SIMD)."""
    pool = HasherPool(2)
    await pool.start()
    lags: list[float] = []
    try:
        headers = [os.urandom(80) for _ in range(60_000)]
        hashing = asyncio.create_task(_hash_all(pool, headers))
        while not hashing.done():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - before - 0.01)
        assert len(await hashing) == len(headers)
    finally:
        await pool.close()
    assert len(lags) > 20
    # Generous for a shared CI machine; hashing on this loop would show as ≥ 25 µs per share even
    # with SIMD scrypt, i.e. whole seconds for a burst like this.
    assert max(lags) < 0.5, f"the loop stalled for {max(lags) * 1000:.0f} ms"


def _hasher_children() -> list[int]:
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:
            continue  # a thread that ended since the listing (a resolver, an executor's)
        for child in children:
            with contextlib.suppress(FileNotFoundError):
                if b"proxy.hashers" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
    return found


async def test_a_proxy_that_cannot_listen_stops_what_it_started(pool, tmp_path: Path) -> None:
    """Port taken: start-up fails with the OS error, and neither its hashers nor its upstream
    session outlive it (once, a swallowed cancellation kept the upstream loop alive for ever)."""
    from proxy.app import run_proxy
    from tests.proxy.conftest import pool_upstream, proxy_config

    before = set(_hasher_children())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = proxy_config([pool_upstream(pool, "p1")], tmp_path / "spill",
                              listen=ListenConfig(host="127.0.0.1", port=taken.getsockname()[1]))
        with pytest.raises(OSError):
            await asyncio.wait_for(run_proxy(config, None, asyncio.Event()), 30)
    assert set(_hasher_children()) <= before
    assert not [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith(("upstream-", "hasher-"))]
