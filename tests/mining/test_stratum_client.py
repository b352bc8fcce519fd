"""The client side of Stratum (mining.stratum_client), driven without sockets, message by message.

The ordering tests feed every order in which a pool may send the subscribe answer, set_difficulty,
notify, set_extranonce and the authorize answer — in one read, one message per read, and cut at
arbitrary bytes — and check what a proxy and a miner rely on: no work before the session is ready,
the notify that came early is kept, and every work carries this session's extranonce.
"""

import itertools
import json
import random
from typing import Any

import pytest

from mining.stratum_client import (
    DifficultyChanged,
    Failure,
    Notice,
    Reconnect,
    Send,
    StratumClient,
    SubmitResult,
    Work,
)
from mining.target import share_difficulty_to_target
from tests.stratum_peers import regtest_job

SUBSCRIBE_ID, AUTHORIZE_ID, EXTRANONCE_SUBSCRIBE_ID = 1, 2, 3


def _lines(events: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(event.data) for event in events if isinstance(event, Send)]


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _notify(job_seq: int, clean: bool = True) -> bytes:
    params = regtest_job(job_seq, clean).notify_params()
    return _line({"id": None, "method": "mining.notify", "params": params})


def _subscribe_answer(extranonce1: str = "f000000f", size: int = 4) -> bytes:
    return _line({"id": SUBSCRIBE_ID, "result": [[["mining.notify", "1"]], extranonce1, size], "error": None})


AUTHORIZED = _line({"id": AUTHORIZE_ID, "result": True, "error": None})


def _ready(extranonce2_size: int = 4) -> tuple[StratumClient, list[Any]]:
    client = StratumClient("worker1", "pw", "test/1.0")
    client.start(0.0)
    events = client.feed(_subscribe_answer(size=extranonce2_size) + AUTHORIZED, now=0.0)
    return client, events


def test_handshake_subscribes_then_authorizes_and_asks_for_extranonce_changes() -> None:
    client = StratumClient("worker1", "pw", "test/1.0")
    [subscribe] = _lines(client.start(0.0))
    assert subscribe == {"id": SUBSCRIBE_ID, "method": "mining.subscribe", "params": ["test/1.0"]}
    requests = _lines(client.feed(_subscribe_answer(), 0.0))
    assert [r["method"] for r in requests] == ["mining.authorize", "mining.extranonce.subscribe"]
    assert requests[0]["params"] == ["worker1", "pw"] and requests[0]["id"] == AUTHORIZE_ID
    assert client.extranonce1 == bytes.fromhex("f000000f") and client.extranonce2_size == 4
    assert not client.ready
    assert client.feed(AUTHORIZED, 0.0) == []  # ready, but no job yet: nothing to mine
    assert client.ready


# -- every ordering -------------------------------------------------------------------------------

MESSAGES = {
    "subscribe": _subscribe_answer("f000000f", 4),
    "difficulty": _line({"id": None, "method": "mining.set_difficulty", "params": [0.5]}),
    "notify": _notify(7, clean=False),
    "extranonce": _line({"id": None, "method": "mining.set_extranonce", "params": ["aabbccdd", 3]}),
    "authorize": AUTHORIZED,
}
ORDERINGS = [order for order in itertools.permutations(MESSAGES)
             if order.index("subscribe") < order.index("authorize")]  # nobody answers an unsent request


def _splits(order: tuple[str, ...], how: str, rng: random.Random) -> list[bytes]:
    data = b"".join(MESSAGES[name] for name in order)
    if how == "one read":
        return [data]
    if how == "a read each":
        return [MESSAGES[name] for name in order]
    cuts = sorted(rng.sample(range(1, len(data)), 12))
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]


def _publishes(order: tuple[str, ...], i: int) -> bool:
    """Whether message `i` makes work: the session is ready (authorize answered) and has a job."""
    seen = set(order[: i + 1])
    if not {"authorize", "notify"} <= seen:
        return False
    return order[i] in ("authorize", "notify") or \
        (order[i] == "extranonce" and order.index("subscribe") < i)


@pytest.mark.parametrize("how", ["one read", "a read each", "cut anywhere"])
def test_every_ordering_publishes_the_kept_job_once_ready_on_this_sessions_extranonce(how: str) -> None:
    rng = random.Random(14)
    assert len(ORDERINGS) == 60
    for order in ORDERINGS:
        client = StratumClient("worker1", "pw", "test/1.0")
        client.start(0.0)
        events: list[Any] = []
        for chunk in _splits(order, how, rng):
            events += client.feed(chunk, 1.0)
        works = [e for e in events if isinstance(e, Work)]
        assert works, f"{order}: the notify that came early was dropped"
        # Nothing is published before the authorize answer, and the first work is clean.
        authorized_at = events.index(works[0])
        assert all(not isinstance(e, Work) for e in events[:authorized_at])
        assert works[0].job.clean_jobs, order
        assert all(w.job == regtest_job(7, clean=False) or w.job.job_id == "j7" for w in works)
        # The extranonce of every work is the session's at that moment: set_extranonce replaces the
        # subscribe answer's only when it came after it.
        later = order.index("extranonce") > order.index("subscribe")
        expected = ("aabbccdd", 3) if later else ("f000000f", 4)
        last = works[-1]
        assert (last.extranonce1.hex(), last.extranonce2_size) == expected, order
        assert (client.extranonce1 or b"").hex() == expected[0]
        # The difficulty in force when a work goes out is its target; one that comes while work
        # is out is announced instead.
        triggers = [i for i, name in enumerate(order) if _publishes(order, i)]
        assert len(works) == len(triggers), order
        wanted = 0.5 if order.index("difficulty") < triggers[-1] else 1.0
        assert last.difficulty == wanted and last.target == share_difficulty_to_target(wanted), order
        announced = [e for e in events if isinstance(e, DifficultyChanged)]
        assert len(announced) == (1 if order.index("difficulty") > triggers[0] else 0), order
        assert not any(isinstance(e, Failure | Notice) for e in events), (order, events)


def test_a_new_session_starts_from_nothing() -> None:
    """Each connection gets a fresh client: nothing of the last session's extranonce or jobs."""
    old, _ = _ready()
    moved = _line({"id": None, "method": "mining.set_extranonce", "params": ["01020304", 4]})
    old.feed(moved + _notify(1), 0.0)
    new = StratumClient("worker1", "pw", "test/1.0")
    new.start(5.0)
    # The pool's next session: notify first, before any subscribe answer was read.
    assert new.feed(_notify(2, clean=False), 5.0) == []
    assert new.extranonce1 is None and not new.is_live("j1", bytes.fromhex("01020304"))
    events = new.feed(_subscribe_answer("0a0b0c0d", 4) + AUTHORIZED, 5.0)
    [work] = [e for e in events if isinstance(e, Work)]
    assert work.extranonce1 == bytes.fromhex("0a0b0c0d") and work.job.job_id == "j2" and work.job.clean_jobs


def test_later_notifies_keep_their_clean_flag_and_set_extranonce_republishes_clean() -> None:
    client, _ = _ready()
    [first] = client.feed(_notify(1, clean=True), 1.0)
    [second] = client.feed(_notify(2, clean=False), 2.0)
    assert isinstance(second, Work) and not second.job.clean_jobs and second.received_at == 2.0
    assert client.is_live("j1", first.extranonce1) and client.is_live("j2", first.extranonce1)
    [again] = client.feed(_line({"id": None, "method": "mining.set_extranonce", "params": ["aabb", 2]}), 3.0)
    assert isinstance(again, Work) and again.job.job_id == "j2" and again.job.clean_jobs
    assert again.extranonce1 == bytes.fromhex("aabb") and again.extranonce2_size == 2
    assert not client.is_live("j2", first.extranonce1) and client.is_live("j2", bytes.fromhex("aabb"))
    client.feed(_notify(3, clean=True), 4.0)
    assert not client.is_live("j2", bytes.fromhex("aabb")) and client.is_live("j3", bytes.fromhex("aabb"))


def test_difficulty_after_work_is_announced_not_republished() -> None:
    client, _ = _ready()
    [work] = client.feed(_notify(1), 1.0)
    assert work.target == share_difficulty_to_target(1.0)
    [changed] = client.feed(_line({"id": None, "method": "mining.set_difficulty", "params": [64]}), 2.0)
    assert changed == DifficultyChanged(64.0, share_difficulty_to_target(64))
    [later] = client.feed(_notify(2, clean=False), 3.0)
    assert isinstance(later, Work) and later.difficulty == 64.0
    [notice] = client.feed(_line({"id": None, "method": "mining.set_difficulty", "params": [0]}), 3.0)
    assert isinstance(notice, Notice) and client.difficulty == 64.0


def test_refused_or_failed_handshakes_end_the_session() -> None:
    client = StratumClient("w", "p", "ua")
    client.start(0.0)
    [failure] = client.feed(_line({"id": SUBSCRIBE_ID, "result": None, "error": [20, "busy", None]}), 0.0)
    assert isinstance(failure, Failure) and "busy (20)" in failure.reason
    for bad in (["x", "zz", 4], ["x", "00", 0], ["x", "00", True], ["x", 5, 4], "nope"):
        client = StratumClient("w", "p", "ua")
        client.start(0.0)
        [failure] = client.feed(_line({"id": SUBSCRIBE_ID, "result": bad, "error": None}), 0.0)
        assert isinstance(failure, Failure) and "subscribe failed" in failure.reason, bad
    client = StratumClient("worker1", "p", "ua")
    client.start(0.0)
    client.feed(_subscribe_answer() + _notify(1), 0.0)
    [failure] = client.feed(_line({"id": AUTHORIZE_ID, "result": None, "error": [24, "nope", None]}), 0.0)
    assert isinstance(failure, Failure) and "nope (24)" in failure.reason and not client.ready
    client = StratumClient("worker1", "p", "ua")
    client.start(0.0)
    client.feed(_subscribe_answer(), 0.0)
    [failure] = client.feed(_line({"id": AUTHORIZE_ID, "result": False, "error": None}), 0.0)
    assert isinstance(failure, Failure) and "refused" in failure.reason


def test_an_unanswered_handshake_times_out() -> None:
    client = StratumClient("w", "p", "ua", handshake_timeout_s=10)
    client.start(100.0)
    assert client.poll(109.0) == []
    [failure] = client.poll(111.0)
    assert failure == Failure("no answer to mining.subscribe in 10 s")
    client.feed(_subscribe_answer(), 111.0)
    [failure] = client.poll(112.0)
    assert failure == Failure("no answer to mining.authorize in 10 s")


def test_submit_is_big_endian_hex_answered_once_and_times_out() -> None:
    client, _ = _ready()
    [work] = client.feed(_notify(1), 0.0)
    request_id, send = client.submit(work.job.job_id, bytes.fromhex("00000001"), 0x5F5E1000, 1, now=10.0)
    [request] = _lines([send])
    assert request["method"] == "mining.submit" and request["id"] == request_id
    assert request["params"] == ["worker1", "j1", "00000001", "5f5e1000", "00000001"]
    assert client.pending_submits == 1
    answer = {"id": request_id, "result": None, "error": [23, "low difficulty", None]}
    [result] = client.feed(_line(answer), 10.25)
    assert result == SubmitResult(request_id, False, "low difficulty (23)", 0.25)
    assert client.pending_submits == 0
    [notice] = client.feed(_line(answer), 10.5)  # answered twice: the second is only a notice
    assert isinstance(notice, Notice)
    request_id, _ = client.submit("j1", bytes(4), 0x5F5E1000, 2, now=20.0)
    assert client.poll(30.0) == []
    [late] = client.poll(40.0)
    assert late == SubmitResult(request_id, False, "no answer in 15 s", 20.0)
    assert client.pending_submits == 0
    request_id, _ = client.submit("j1", bytes(4), 0x5F5E1000, 3, now=50.0)
    [result] = client.feed(_line({"id": request_id, "result": True, "error": None}), 50.0)
    assert isinstance(result, SubmitResult) and result.accepted and result.reason is None


def test_reconnect_show_message_and_get_version() -> None:
    client, _ = _ready()
    [reconnect] = client.feed(_line({"id": None, "method": "client.reconnect",
                                     "params": ["pool.example", "3334", 5]}), 0.0)
    assert reconnect == Reconnect("pool.example", 3334, 5.0)
    [same] = client.feed(_line({"id": None, "method": "client.reconnect", "params": []}), 0.0)
    assert same == Reconnect(None, None, 0.0)
    [far] = client.feed(_line({"id": None, "method": "client.reconnect", "params": ["h", 70000, 1e9]}), 0.0)
    assert far == Reconnect("h", None, 300.0)
    [notice] = client.feed(_line({"id": None, "method": "client.show_message", "params": ["hello"]}), 0.0)
    assert notice == Notice("pool says: hello")
    [version] = _lines(client.feed(_line({"id": 77, "method": "client.get_version", "params": []}), 0.0))
    assert version == {"id": 77, "result": "test/1.0", "error": None}
    [unknown] = _lines(client.feed(_line({"id": 78, "method": "mining.nonsense", "params": []}), 0.0))
    assert unknown["id"] == 78 and unknown["error"][0] == -32601


def test_garbage_and_bad_jobs_become_notices() -> None:
    client, _ = _ready()
    [notice] = client.feed(b"not json\n", 0.0)
    assert isinstance(notice, Notice)
    [notice] = client.feed(_line({"id": None, "method": "mining.notify", "params": ["1", "zz"]}), 0.0)
    assert isinstance(notice, Notice) and "mining.notify" in notice.text
    [notice] = client.feed(_line({"id": None, "method": "mining.set_extranonce", "params": ["00", 99]}), 0.0)
    assert isinstance(notice, Notice)
    assert client.job is None and client.extranonce2_size == 4
