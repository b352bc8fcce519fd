"""The miner's sans-I/O Stratum client, message by message."""

import json
from typing import Any

from backends.stratum_client import (
    Failure,
    NewWork,
    Notice,
    Reconnect,
    Send,
    Share,
    ShareResult,
    StratumClient,
)
from mining.target import share_difficulty_to_target
from tests.stratum_peers import regtest_job


def _lines(events: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(event.data) for event in events if isinstance(event, Send)]


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _subscribed(extranonce2_size: int = 4) -> tuple[StratumClient, list[Any]]:
    client = StratumClient("worker1", "pw", "test/1.0")
    [subscribe] = _lines(client.start())
    assert subscribe["method"] == "mining.subscribe" and subscribe["params"] == ["test/1.0"]
    result = [[["mining.notify", "1"]], "f000000f", extranonce2_size]
    events = client.feed(_line({"id": subscribe["id"], "result": result, "error": None}), now=0.0)
    return client, events


def test_handshake_authorizes_and_subscribes_to_extranonce() -> None:
    client, events = _subscribed()
    requests = _lines(events)
    assert [r["method"] for r in requests] == ["mining.authorize", "mining.extranonce.subscribe"]
    assert requests[0]["params"] == ["worker1", "pw"]
    assert client.extranonce1 == bytes.fromhex("f000000f") and client.extranonce2_size == 4
    assert not any(isinstance(e, NewWork) for e in events)  # no job yet
    assert client.feed(_line({"id": requests[0]["id"], "result": True, "error": None}), 0.0) == []
    assert client.authorized


def test_refused_authorization_ends_the_session() -> None:
    client, events = _subscribed()
    authorize = _lines(events)[0]
    [failure] = client.feed(_line({"id": authorize["id"], "result": None, "error": [24, "nope", None]}), 0.0)
    assert isinstance(failure, Failure) and "nope (24)" in failure.reason


def test_notify_difficulty_and_extranonce_each_make_new_work() -> None:
    client, _ = _subscribed()
    job = regtest_job(1)
    [work] = client.feed(_line({"id": None, "method": "mining.notify", "params": job.notify_params()}), 5.0)
    assert isinstance(work, NewWork)
    assert work.template.job == job and work.template.received_at == 5.0
    assert work.template.target == share_difficulty_to_target(1)
    [work] = client.feed(_line({"id": None, "method": "mining.set_difficulty", "params": [0.5]}), 6.0)
    assert isinstance(work, NewWork) and work.template.target == share_difficulty_to_target(0.5)
    [work] = client.feed(_line({"id": None, "method": "mining.set_extranonce", "params": ["aabb", 2]}), 7.0)
    assert isinstance(work, NewWork)
    assert work.template.extranonce1 == bytes.fromhex("aabb") and work.template.extranonce2_size == 2


def test_shares_of_replaced_jobs_or_extranonces_are_not_current() -> None:
    client, _ = _subscribed()
    first, second, third = regtest_job(1), regtest_job(2, clean=False), regtest_job(3)
    events = [client.feed(_line({"id": None, "method": "mining.notify", "params": job.notify_params()}), 0.0)
              for job in (first, second)]
    old = events[0][0].template
    assert client.is_current(old)  # a job without clean_jobs leaves earlier jobs live
    client.feed(_line({"id": None, "method": "mining.notify", "params": third.notify_params()}), 0.0)
    assert not client.is_current(old)
    [work] = client.feed(_line({"id": None, "method": "mining.set_extranonce", "params": ["01", 4]}), 0.0)
    latest = work.template
    assert client.is_current(latest)
    client.feed(_line({"id": None, "method": "mining.set_extranonce", "params": ["02", 4]}), 0.0)
    assert not client.is_current(latest)


def test_submit_formats_big_endian_hex_and_counts_answers() -> None:
    client, _ = _subscribed()
    notify = {"id": None, "method": "mining.notify", "params": regtest_job(1).notify_params()}
    [work] = client.feed(_line(notify), 0.0)
    share = Share(work.template, bytes.fromhex("00000001"), 0x5F5E1000, 1)
    [request] = _lines([client.submit(share)])
    assert request["method"] == "mining.submit"
    assert request["params"] == ["worker1", work.template.job.job_id, "00000001", "5f5e1000", "00000001"]
    assert client.pending_submits == 1
    answer = {"id": request["id"], "result": None, "error": [23, "low difficulty", None]}
    [result] = client.feed(_line(answer), 0.0)
    assert result == ShareResult(share, False, "low difficulty (23)")
    assert client.pending_submits == 0


def test_reconnect_show_message_and_get_version() -> None:
    client, _ = _subscribed()
    [reconnect] = client.feed(_line({"id": None, "method": "client.reconnect",
                                     "params": ["pool.example", "3334", 5]}), 0.0)
    assert reconnect == Reconnect("pool.example", 3334, 5.0)
    [same] = client.feed(_line({"id": None, "method": "client.reconnect", "params": []}), 0.0)
    assert same == Reconnect(None, None, 0.0)
    [notice] = client.feed(_line({"id": None, "method": "client.show_message", "params": ["hello"]}), 0.0)
    assert notice == Notice("pool says: hello")
    [version] = _lines(client.feed(_line({"id": 77, "method": "client.get_version", "params": []}), 0.0))
    assert version == {"id": 77, "result": "test/1.0", "error": None}


def test_garbage_and_bad_jobs_become_notices() -> None:
    client, _ = _subscribed()
    events = client.feed(b"not json\n", 0.0)
    assert isinstance(events[0], Notice)
    [notice] = client.feed(_line({"id": None, "method": "mining.notify", "params": ["1", "zz"]}), 0.0)
    assert isinstance(notice, Notice) and "mining.notify" in notice.text
    assert client.job is None


def test_failed_subscribe_is_a_failure() -> None:
    client = StratumClient("w", "p", "ua")
    [subscribe] = _lines(client.start())
    [failure] = client.feed(_line({"id": subscribe["id"], "result": None, "error": [20, "busy", None]}), 0.0)
    assert isinstance(failure, Failure) and "busy" in failure.reason
