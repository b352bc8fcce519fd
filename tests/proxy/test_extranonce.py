"""Extranonce prefixes: unique across live sessions, resumable by session id, bounded."""

import asyncio
import hashlib

import pytest

from proxy.extranonce import PrefixAllocator, PrefixSpaceFull, host_tag, new_session_id, session_worker
from tests.proxy.conftest import pool_upstream
from tests.stratum_peers import PoolServer

TAG = host_tag("host-a")


def test_allocator_never_hands_out_a_live_prefix_twice() -> None:
    allocator = PrefixAllocator(1, TAG, resume_window_s=60)
    prefixes = {allocator.allocate(0.0)[0] for _ in range(256)}
    assert len(prefixes) == 256
    with pytest.raises(PrefixSpaceFull):
        allocator.allocate(0.0)


def test_resume_returns_the_same_prefix_within_the_window() -> None:
    allocator = PrefixAllocator(2, TAG, resume_window_s=60)
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
    allocator = PrefixAllocator(1, TAG, resume_window_s=600)
    held = [allocator.allocate(0.0) for _ in range(256)]
    for prefix, _ in held:
        allocator.release(prefix, 1.0)
    assert len({allocator.allocate(2.0)[0] for _ in range(256)}) == 256


def test_a_hosts_session_ids_name_the_host_and_the_worker() -> None:
    assert TAG == hashlib.sha256(b"host-a").hexdigest()[:8]
    allocator = PrefixAllocator(2, TAG, worker=7)
    ids = {allocator.allocate(0.0)[1] for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 24 and i.startswith(TAG) and session_worker(i, TAG) == 7 for i in ids)
    assert session_worker(new_session_id(TAG, 255), TAG) == 255
    assert session_worker(new_session_id(TAG), TAG) == 0  # a single-process proxy is worker 0
    with pytest.raises(ValueError, match="worker index"):
        new_session_id(TAG, 256)
    with pytest.raises(ValueError, match="host tag"):
        new_session_id("host-a")


def test_another_hosts_ids_name_no_worker_here() -> None:
    """Two hosts behind one balancer: ids of one are never another's, and a miner that comes
    from the other host (HAProxy moved it) is not sent to a worker by the other host's digits."""
    other = host_tag("host-b")
    assert other != TAG
    theirs = {new_session_id(other, 1) for _ in range(1000)}
    ours = {new_session_id(TAG, 1) for _ in range(1000)}
    assert not theirs & ours
    assert all(session_worker(i, TAG) is None and session_worker(i, other) == 1 for i in theirs)
    # An id is a host's only as long as its name stays the same.
    allocator = PrefixAllocator(2, other, resume_window_s=60)
    prefix, session_id = allocator.allocate(0.0)
    allocator.release(prefix, now=1.0)
    assert allocator.allocate(2.0, resume_id=session_id) == (prefix, session_id)
    assert session_worker(session_id, TAG) is None


@pytest.mark.parametrize("session_id", ["", "07", TAG + "07" + "a" * 13, TAG + "zz" + "a" * 12,
                                        TAG + " 7" + "a" * 12, TAG + "+7" + "a" * 12, TAG + "0x" + "a" * 12,
                                        "07" + "a" * 14, "é" * 24, TAG.upper() + "07" + "a" * 14])
def test_ids_no_worker_here_made_name_no_worker(session_id: str) -> None:
    assert session_worker(session_id, TAG) is None


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
