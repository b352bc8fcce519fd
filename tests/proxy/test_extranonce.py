"""Extranonce prefixes: unique across live sessions, resumable by session id, bounded."""

import asyncio

import pytest

from proxy.extranonce import PrefixAllocator, PrefixSpaceFull, new_session_id, session_worker
from tests.proxy.conftest import pool_upstream
from tests.stratum_peers import PoolServer


def test_allocator_never_hands_out_a_live_prefix_twice() -> None:
    allocator = PrefixAllocator(1, resume_window_s=60)
    prefixes = {allocator.allocate(0.0)[0] for _ in range(256)}
    assert len(prefixes) == 256
    with pytest.raises(PrefixSpaceFull):
        allocator.allocate(0.0)


def test_resume_returns_the_same_prefix_within_the_window() -> None:
    allocator = PrefixAllocator(2, resume_window_s=60)
    prefix, session_id = allocator.allocate(0.0)
    allocator.release(prefix, now=1.0)
    other, _ = allocator.allocate(2.0)
    assert other != prefix  # reserved for its owner
    again, same_id = allocator.allocate(3.0, resume_id=session_id)
    assert (again, same_id) == (prefix, session_id)
    allocator.release(again, now=4.0)
    _, new_id = allocator.allocate(100.0, resume_id=session_id)  # the window has passed
    assert new_id != session_id


def test_reservations_give_way_when_the_space_is_full() -> None:
    allocator = PrefixAllocator(1, resume_window_s=600)
    held = [allocator.allocate(0.0) for _ in range(256)]
    for prefix, _ in held:
        allocator.release(prefix, 1.0)
    assert len({allocator.allocate(2.0)[0] for _ in range(256)}) == 256


def test_a_workers_session_ids_name_it() -> None:
    allocator = PrefixAllocator(2, worker=7)
    ids = {allocator.allocate(0.0)[1] for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 16 and session_worker(i) == 7 for i in ids)
    assert session_worker(new_session_id(255)) == 255
    assert len(new_session_id()) == 16
    with pytest.raises(ValueError):
        new_session_id(256)


@pytest.mark.parametrize("session_id", ["", "07", "07" + "a" * 15, "zz" + "a" * 14, " 7" + "a" * 14,
                                        "+7" + "a" * 14, "0x" + "a" * 14, "é" * 16])
def test_ids_no_worker_made_name_no_worker(session_id: str) -> None:
    assert session_worker(session_id) is None


async def test_extranonce1_unique_across_1000_sessions(pool: PoolServer, make_proxy, miners) -> None:
    proxy = await make_proxy([pool_upstream(pool, "p1")])
    port = proxy.ports["tcp"]

    async def one() -> bytes:
        miner = await miners(port)
        response = await miner.subscribe(extranonce=False)
        assert response.error is None
        return miner.extranonce1

    extranonces: list[bytes] = []
    for _ in range(10):
        extranonces += await asyncio.gather(*(one() for _ in range(100)))
    assert len(extranonces) == 1000
    assert len(set(extranonces)) == 1000
    assert proxy.router.miner_count == 1000


async def test_resume_by_session_id_keeps_extranonce1(pool: PoolServer, make_proxy, miners) -> None:
    proxy = await make_proxy([pool_upstream(pool, "p1")])
    first = await miners(proxy.ports["tcp"])
    await first.subscribe()
    extranonce1, session_id = first.extranonce1, first.session_id
    await first.close()
    await asyncio.sleep(0.2)
    second = await miners(proxy.ports["tcp"])
    await second.subscribe(resume=session_id)
    assert second.extranonce1 == extranonce1
    assert second.session_id == session_id
    third = await miners(proxy.ports["tcp"])
    await third.subscribe(resume=session_id)  # the id is taken now: a fresh prefix
    assert third.extranonce1 != extranonce1
