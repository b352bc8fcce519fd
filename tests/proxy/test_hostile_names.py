"""Hostile strings off the wire (issue 15): lone surrogates, NUL, control characters, 10,000-character
names. One rule refuses them at the codec; nothing refused is stored or exported, `/metrics` keeps
answering and parsing, and the path from the codec to PostgreSQL and the metrics holds for any
JSON string (hypothesis)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from mining import stratum
from proxy.app import Proxy
from proxy.config import LimitsConfig
from qscrypt.db.embedded import free_port
from tests.proxy.conftest import pool_upstream, proxy_config, wait_for
from tests.proxy.test_recording import LONG_NAME, http_get, query
from tests.stratum_peers import PoolServer

HOSTILE = ["\ud800", "\udfff", "a\ud800b", "nul\x00name", "\x00", "tab\there", "line\nfeed", "\x1b[31mred",
           "\u2028", "\ufeffbom", LONG_NAME, "x" * 129, "\U0010ffff"]
# Limits that never get in the way of many requests on one connection: the rule is what is tested.
OPEN_LIMITS = LimitsConfig(messages_per_second=1e6, message_burst=10**6, max_protocol_errors=10**9,
                           ban_min_shares=10**9)


REFUSED = (stratum.INVALID_PARAMS, stratum.INVALID_REQUEST)
"""A string that breaks the rule, or a line over the limit (16 KiB) before its params are read."""


def follows_the_rule(value: str, limit: int) -> bool:
    return len(value) <= limit and value.isprintable()


@pytest.fixture
async def hostile_proxy(pool: PoolServer, pg_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[Proxy, int]]:
    await query(pg_dsn, "TRUNCATE shares, workers")
    port = free_port()
    proxy = Proxy(proxy_config([pool_upstream(pool, "p1")], tmp_path / "spill", share_flush_s=0.2,
                               metrics_port=port, limits=OPEN_LIMITS), pg_dsn)
    await proxy.start()
    try:
        await wait_for(lambda: proxy.router.active is not None, "an upstream to become active")
        yield proxy, port
    finally:
        await proxy.close()


def parse_metrics(body: str) -> dict[str, list[Any]]:
    """Every sample by metric family; raises if the exposition does not parse."""
    return {family.name: family.samples for family in text_string_to_metric_families(body)}


def worker_labels(families: dict[str, list[Any]]) -> set[str]:
    return {s.labels["worker"] for s in families.get("qscrypt_worker_hashrate_hs", [])}


async def test_metrics_answer_and_parse_after_hostile_names(hostile_proxy: tuple[Proxy, int], miners: Any,
                                                            pg_dsn: str) -> None:
    proxy, port = hostile_proxy
    hostile = await miners(proxy.ports["tcp"])
    reply = await hostile.call("mining.subscribe", ["\ud800agent\x00"])
    assert reply.error[0] == stratum.INVALID_PARAMS and "user_agent" in reply.error[1]
    await hostile.subscribe()
    for name in HOSTILE:
        authorized = await hostile.authorize(name, "x")
        assert authorized.error is not None and authorized.error[0] == stratum.INVALID_PARAMS
        assert "username" in authorized.error[1]
        submitted = await hostile.call("mining.submit", [name, "1", "0000", "00000000", "00000000"])
        assert submitted.error is not None and submitted.error[0] == stratum.INVALID_PARAMS
        password = await hostile.authorize("fine", name)  # the password follows the same rule
        if not follows_the_rule(name, stratum.MAX_TEXT):
            assert password.error is not None and "password" in password.error[1]
    odd_method = await hostile.call("mining.\ud800", [])
    assert odd_method.error[0] == stratum.INVALID_REQUEST

    honest = await miners(proxy.ports["tcp"])
    await honest.subscribe()
    await honest.authorize("honest.rig", "x,d=0.001")
    assert (await honest.mine_one("honest.rig", extranonce2=b"\x07\x00")).result is True
    proxy.report_workers(time.monotonic())  # what the 10 s report loop does
    status, body = await http_get(port, "/metrics")
    assert status == 200
    families = parse_metrics(body)
    assert worker_labels(families) == {"honest.rig"}
    refused = {s.labels["reason"]: s.value for s in families["qscrypt_requests_refused"]
               if s.name.endswith("_total")}
    assert refused["bad-text"] >= 3 * len(HOSTILE)
    assert "\x00" not in body
    await wait_for(lambda: proxy.accounting.rows_waiting == 0, "the rows to be written")
    rows = await query(pg_dsn, "SELECT worker AS name FROM shares UNION SELECT name FROM workers")
    assert {r["name"] for r in rows} == {"honest.rig"}


async def test_top_worker_labels_are_escaped_whatever_reaches_them(hostile_proxy: tuple[Proxy, int]) -> None:
    """The exporter does not trust the codec: names that only a bug could let through (or a Kafka
    worker's) still make a valid exposition."""
    proxy, port = hostile_proxy
    proxy.metrics.top_workers.show([(name, 1000.0 + i, 1.0) for i, name in enumerate(HOSTILE)])
    status, body = await http_get(port, "/metrics")
    assert status == 200 and "\x00" not in body
    labels = worker_labels(parse_metrics(body))
    assert len(labels) == len(HOSTILE)
    assert all(label.isprintable() and len(label) <= 128 for label in labels)
    assert "\\ud800" in labels and "nul\\u0000name" in labels and "tab\\u0009here" in labels


# -- codec → session → accounting → PostgreSQL and metrics, over arbitrary JSON strings -----------

any_text = st.one_of(
    st.text(max_size=12),  # every code point, lone surrogates included
    st.text(st.characters(categories=["Cc", "Cs", "Cf", "Zl", "Zp", "Co", "Zs"]), min_size=1, max_size=4),
    st.text(st.characters(codec="ascii"), min_size=60, max_size=140),  # around the length limits
    st.sampled_from(HOSTILE),
    st.from_regex(r"[A-Za-z0-9._+-]{1,24}", fullmatch=True),  # names real miners use: stored
)


class LineClient:
    """A blocking Stratum client for hypothesis, which runs in a thread while the test's event loop
    serves the proxy."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.codec = stratum.StratumCodec(1 << 20)
        self.events: list[stratum.Event] = []
        self.next_id = 1
        self.job_ids: set[str] = set()
        """Ids of the jobs the proxy sent: a "made-up" id hypothesis happens to draw may be one."""

    def call(self, method: str, params: list[Any]) -> stratum.Response:
        request_id = self.next_id
        self.next_id += 1
        # json.dumps escapes what is not ASCII: a lone surrogate arrives as the valid JSON "\ud800".
        line = json.dumps({"id": request_id, "method": method, "params": params}) + "\n"
        self.sock.sendall(line.encode())
        while True:
            for event in self.events:
                # A line over the limit is refused before its id is read: its error has none.
                if isinstance(event, stratum.Response) and (event.id == request_id or event.id is None):
                    self.events.remove(event)
                    return event
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the proxy closed the connection")
            self.events = [e for e in self.events if isinstance(e, stratum.Response)]
            for event in self.codec.feed(data):
                if isinstance(event, stratum.Notification) and event.method == "mining.notify":
                    self.job_ids.add(event.params[0])
                self.events.append(event)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.timeout(180)
async def test_any_json_string_is_refused_at_the_codec_or_stored_safely(
        hostile_proxy: tuple[Proxy, int], pg_dsn: str) -> None:
    proxy, port = hostile_proxy
    authorized: set[str] = set()
    stored_submits: list[tuple[str, str]] = []

    def explore() -> None:
        client = LineClient(proxy.ports["tcp"])
        assert client.call("mining.subscribe", ["prop/1.0"]).error is None

        @settings(max_examples=150, deadline=None, database=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(name=any_text, password=any_text, job_id=any_text, agent=any_text)
        def one(name: str, password: str, job_id: str, agent: str) -> None:
            reply = client.call("mining.authorize", [name, password])
            good_name = follows_the_rule(name, stratum.MAX_NAME)
            if not (good_name and follows_the_rule(password, stratum.MAX_TEXT)):
                assert reply.error is not None and reply.error[0] in REFUSED, reply
            else:
                assert reply.error is None and reply.result is (name != ""), reply
                if name:
                    authorized.add(name)
            reply = client.call("mining.submit", [name, job_id, "0000", "00000000", "00000000"])
            assert reply.error is not None
            if not (good_name and follows_the_rule(job_id, stratum.MAX_JOB_ID)):
                assert reply.error[0] in REFUSED, reply
            elif name in authorized:
                if job_id not in client.job_ids:
                    assert reply.error[0] == stratum.JOB_NOT_FOUND, reply  # made up: counted, stored
                stored_submits.append((name, job_id))
            else:
                assert reply.error[0] == stratum.UNAUTHORIZED, reply  # counted, never stored
            reply = client.call("mining.subscribe", [agent])
            expected = (stratum.OTHER,) if follows_the_rule(agent, stratum.MAX_TEXT) else REFUSED
            assert reply.error is not None and reply.error[0] in expected, reply  # already subscribed

        try:
            one()
        finally:
            client.close()

    await asyncio.to_thread(explore)
    assert stored_submits and authorized
    await wait_for(lambda: proxy.accounting.rows_waiting == 0, "the rows to be written", timeout=20)
    rows = await query(pg_dsn, "SELECT worker, job_id, result, reason FROM shares")
    assert sorted((r["worker"], r["job_id"]) for r in rows) == sorted(stored_submits)
    assert all(r["result"] != "accepted" for r in rows)
    assert all(follows_the_rule(r["worker"], stratum.MAX_NAME)
               and follows_the_rule(r["job_id"], stratum.MAX_JOB_ID) for r in rows)
    names = {r["name"] for r in await query(pg_dsn, "SELECT name FROM workers")}
    assert names == {name for name, _ in stored_submits} and names <= authorized
    assert proxy.writer is not None and proxy.writer.quarantined == 0 and proxy.writer.failures == 0

    proxy.report_workers(time.monotonic())
    status, body = await http_get(port, "/metrics")
    assert status == 200
    labels = worker_labels(parse_metrics(body))
    assert labels <= authorized and all(follows_the_rule(label, stratum.MAX_NAME) for label in labels)
