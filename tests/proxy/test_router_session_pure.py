"""The router and miner sessions driven without sockets, clocks or hashers (in the manner of h11's
test_connection.py): upstreams are plain objects that publish work, miners are recorders of the
actions the sessions produce, and `now` is whatever the test says.

Each test here is one of issue 14's defects, and fails on the code before its fix.
"""

import json
import time
from dataclasses import dataclass, field
from typing import Any

from mining import stratum
from mining.hashing import sha256d
from mining.target import share_difficulty_to_target
from proxy import validate
from proxy.router import FAILBACK, FAILOVER, START, STARTUP_S, SWITCH, Move, Router
from proxy.session import Action, Check, Close, MinerSession, Rejected, Send
from proxy.upstream.base import SubmitOutcome, Upstream, UpstreamState, UpstreamWork
from proxy.vardiff import Vardiff
from tests.stratum_peers import regtest_job


class StaticUpstream(Upstream):
    """An upstream without I/O: the test publishes its work and fails it."""

    def __init__(self, name: str, extranonce1: bytes, priority: int = 0) -> None:
        super().__init__(name, "LTC", priority)
        self.extranonce1 = extranonce1
        self.seq = 0

    def publish(self, clean: bool = True) -> UpstreamWork:
        self.seq += 1
        job = regtest_job(self.seq, clean)
        work = UpstreamWork(job, self.extranonce1, 4, share_difficulty_to_target(0.001))
        self._publish_job(work)
        return work

    def fail(self, error: str) -> None:
        self.work = None
        self._set_state(UpstreamState.DOWN, error)

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(self, job_id: str, extranonce2: bytes, ntime: int, nonce: int, header: bytes,
                     worker: str, extranonce1: bytes | None = None) -> SubmitOutcome:
        raise AssertionError("not in these tests")


@dataclass
class Miner:
    """What the shell would do with a session's actions: keep them, in order."""

    session: MinerSession
    sent: list[Any] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    next_id: int = 100

    def deliver(self, actions: list[Action]) -> None:
        self.actions += actions
        for action in actions:
            if isinstance(action, Send):
                self.write(action.data)

    def write(self, data: bytes) -> None:
        self.sent += [json.loads(line) for line in data.splitlines()]

    def write_now(self, data: bytes) -> None:
        self.write(data)

    def request(self, method: str, params: list[Any], now: float) -> list[Action]:
        self.next_id += 1
        actions = self.session.handle(stratum.Request(self.next_id, method, params), now)
        self.deliver(actions)
        return actions

    def notifications(self, method: str) -> list[list[Any]]:
        return [m["params"] for m in self.sent if m.get("method") == method]

    def jobs(self) -> list[list[Any]]:
        return self.notifications("mining.notify")

    def answers(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if "method" not in m]


def make_router(*upstreams: StaticUpstream, **options: Any) -> tuple[Router, list[Move]]:
    moves: list[Move] = []
    router = Router(2, grace_s=5.0, fallback_to_preferred=True, authorize=lambda user, password: True,
                    on_move=moves.append, **options)
    for upstream in upstreams:
        router.add_group(upstream.name, upstream.priority, upstream)
    return router, moves


def join(router: Router, now: float, worker: str = "w1", password: str = "x", agent: str = "test/1",
         conn_id: int = 1, vardiff: Vardiff | None = None) -> Miner:
    vardiff = vardiff or Vardiff(0.001, 0.0001, 1000.0, 10, 30, 0.3)
    session = MinerSession(conn_id, "10.0.0.1", router, vardiff)
    miner = Miner(session)
    router.register(miner)
    miner.request("mining.subscribe", [agent], now)
    miner.request("mining.extranonce.subscribe", [], now)
    miner.request("mining.authorize", [worker, password], now)
    return miner


def submit(miner: Miner, job_id: str, nonce: int, ntime: int, now: float,
           extranonce2: bytes = b"\x00\x01", worker: str = "w1") -> list[Action]:
    return miner.request("mining.submit", [worker, job_id, extranonce2.hex(), f"{ntime:08x}", f"{nonce:08x}"],
                         now)


def test_an_idle_upstreams_current_job_outlives_a_thousand_jobs_of_a_busy_one() -> None:
    idle, busy = StaticUpstream("idle", b"\x00\x00\x00\x01"), StaticUpstream("busy", b"\x00\x00\x00\x02", 1)
    router, _ = make_router(idle, busy)
    idle.publish()
    kept = router.current_job("idle")
    assert kept is not None
    for _ in range(1000):
        busy.publish(clean=False)
    assert router.find_job(kept.id) is kept
    assert len(router.book) <= 2 * 64


def test_keepalive_resends_the_job_with_a_fresh_ntime_and_a_share_counts_once_across_copies() -> None:
    pool = StaticUpstream("pool", b"\x00\x00\x00\x01")
    router, _ = make_router(pool, keepalive_s=30.0)
    work = pool.publish()
    t0 = time.monotonic()  # the router stamps a job's fan-out with the clock (issue 16 makes it pure)
    miner = join(router, now=t0)
    [first] = miner.jobs()
    assert router.keepalive(now=t0 + 29, wall=work.job.ntime + 29) == 0
    assert router.keepalive(now=t0 + 31, wall=work.job.ntime + 31) == 1
    [_, again] = miner.jobs()
    assert again[0] != first[0] and again[8] is False  # another id, not clean
    assert int(again[7], 16) == work.job.ntime + 31 and again[1:7] == first[1:7]
    # One share, sent under both ids: the second is a duplicate.
    ntime = work.job.ntime + 40
    assert isinstance(submit(miner, first[0], 7, ntime, t0 + 32)[0], Check)
    refused = submit(miner, again[0], 7, ntime, t0 + 32)
    assert isinstance(refused[1], Rejected) and refused[1].rejection.reason == validate.DUPLICATE


def test_a_share_whose_upstream_went_away_while_it_hashed_is_stale_not_accepted() -> None:
    pool = StaticUpstream("pool", b"\x00\x00\x00\x01")
    router, _ = make_router(pool)
    work = pool.publish()
    miner = join(router, now=0.0)
    [job] = miner.jobs()
    [check] = submit(miner, job[0], 1, work.job.ntime, 1.0)
    assert isinstance(check, Check)
    pool.fail("new block but no template")  # between the check and the hash
    easiest = bytes(32)  # a hash that meets any target: only staleness can refuse it
    verdict, actions = miner.session.share_hashed(check.request_id, check.candidate, easiest, 1.1)
    assert not verdict.accepted and not verdict.meets_upstream
    assert verdict.rejection is not None and verdict.rejection.reason == validate.STALE
    assert "no upstream work" in verdict.rejection.message
    miner.deliver(actions)
    assert miner.answers()[-1]["error"][0] == stratum.JOB_NOT_FOUND


def test_miners_of_an_upstream_that_lost_its_work_are_told_and_get_a_clear_error() -> None:
    pool = StaticUpstream("pool", b"\x00\x00\x00\x01")
    router, _ = make_router(pool)
    work = pool.publish()
    miner = join(router, now=0.0)
    [job] = miner.jobs()
    pool.fail("daemon unreachable")
    [message] = miner.notifications("client.show_message")
    assert "pool has no work (daemon unreachable)" in message[0]
    submit(miner, job[0], 1, work.job.ntime, 2.0)
    error = miner.answers()[-1]["error"]
    assert error[0] == stratum.JOB_NOT_FOUND and "no upstream work available" in error[1]


def test_a_pinned_difficulty_is_kept_in_range_and_raised_when_it_would_flood() -> None:
    pool = StaticUpstream("pool", b"\x00\x00\x00\x01")
    router, _ = make_router(pool)
    work = pool.publish()
    vardiff = Vardiff(0.001, 0.0001, 1000.0, 10, 30, 0.3, max_share_rate=10.0)
    miner = join(router, now=0.0, password="x,d=0.00001", vardiff=vardiff)
    [clamped] = miner.notifications("client.show_message")
    assert "d=1e-05 is outside" in clamped[0] and "mining at 0.0001" in clamped[0]
    assert miner.notifications("mining.set_difficulty") == [[0.0001]]
    [job] = miner.jobs()
    # Shares at 40/s against a ceiling of 10/s: the new difficulty goes out with the share that
    # shows the flood, before any of them is hashed.
    for nonce in range(1, 40):
        actions = submit(miner, job[0], nonce, work.job.ntime, nonce / 40)
        assert isinstance(actions[0], Check)
        if len(actions) > 1:
            break
    assert nonce == 8
    raised = miner.notifications("mining.set_difficulty")[-1][0]
    # (8 - 1) shares in 7/40 s is 40/s: to half the ceiling at once, past the usual 4x step.
    assert abs(raised - 0.0001 * 40 / 5) < 1e-9, raised
    assert "raised to" in miner.notifications("client.show_message")[-1][0]
    variant = miner.jobs()[-1]
    assert variant[0].startswith(job[0] + ".") and variant[8] is True  # a new id, clean
    assert int(variant[7], 16) > work.job.ntime  # and another header: cpuminer would not notice it
    assert miner.session.rate_grace_until > 8 / 40  # in-flight shares at the old difficulty spared
    # A share on the variant is judged at the new difficulty; one still on the old job at the old.
    [check] = submit(miner, variant[0], 1000, int(variant[7], 16), 2.0)
    assert isinstance(check, Check) and check.candidate.difficulty == raised
    [old] = submit(miner, job[0], 1001, work.job.ntime, 2.0)
    assert isinstance(old, Check) and old.candidate.difficulty == 0.0001


def test_a_workers_difficulty_survives_its_reconnect() -> None:
    pool = StaticUpstream("pool", b"\x00\x00\x00\x01")
    router, _ = make_router(pool)
    pool.publish()
    first = join(router, now=0.0, worker="rig7")
    first.session.vardiff.difficulty = 0.37  # where vardiff took it
    router.remember_difficulty("rig7", first.session.difficulty)  # what the shell does on close
    router.unregister(first, 10.0)
    again = join(router, now=11.0, worker="rig7", conn_id=2)
    assert again.notifications("mining.set_difficulty") == [[0.37]]
    other = join(router, now=11.0, worker="rig8", conn_id=3)
    assert other.notifications("mining.set_difficulty") == [[0.001]]


def test_bfgminer_gets_small_difficulties_in_its_sha256_reading() -> None:
    pool = StaticUpstream("pool", b"\x00\x00\x00\x01")
    router, _ = make_router(pool)
    pool.publish()
    bfg = join(router, now=0.0, password="x,d=0.5", agent="bfgminer/5.5.0")
    assert bfg.notifications("mining.set_difficulty") == [[0.5 / 65536]]
    big = join(router, now=0.0, password="x,d=64", agent="bfgminer/5.5.0", conn_id=2)
    assert big.notifications("mining.set_difficulty") == [[64]]
    cpuminer = join(router, now=0.0, password="x,d=0.5", agent="cpuminer/2.5.1", conn_id=3)
    assert cpuminer.notifications("mining.set_difficulty") == [[0.5]]


def test_moves_say_what_they_are() -> None:
    a, b = StaticUpstream("a", b"\x00\x00\x00\x01", 0), StaticUpstream("b", b"\x00\x00\x00\x02", 1)
    router, moves = make_router(a, b)
    b.publish()
    a.publish()  # the preferred one a moment later, still starting up
    assert [(m.previous, m.active, m.kind) for m in moves] == [(None, "b", START), ("b", "a", START)]
    router.routes["default"].started_at = -STARTUP_S  # long since started
    a.fail("gone")
    a.publish()
    assert [(m.previous, m.active, m.kind) for m in moves[2:]] == [("a", "b", FAILOVER), ("b", "a", FAILBACK)]
    router.set_decision("default", "LTC", "b", "b pays 7 % more", 7.0)
    assert (moves[-1].active, moves[-1].kind, moves[-1].reason, moves[-1].expected_gain) == \
        ("b", SWITCH, "b pays 7 % more", 7.0)
    router.closing = True
    b.fail("shutting down")
    assert moves[-1].kind == SWITCH and len(moves) == 5  # no failover while the proxy closes


def test_a_group_without_room_for_miners_is_not_moved_to() -> None:
    """An upstream that says READY before the router has made room for miners on it must not take
    the route (a failover to it once moved nobody, and later jobs did not move them either)."""
    a, b = StaticUpstream("a", b"\x00\x00\x00\x01", 0), StaticUpstream("b", b"\x00\x00\x00\x02", 1)
    router, moves = make_router(a, b)
    a.publish()
    miner = join(router, now=0.0)
    b.work = UpstreamWork(regtest_job(1), b.extranonce1, 4, 1)  # work, but no job seen by the router
    b._set_state(UpstreamState.READY)
    a.fail("gone")
    assert router.active is None or router.active == "a"
    b.publish()
    assert router.active == "b" and moves[-1].kind in (FAILOVER, START)
    assert miner.session.assignment is not None and miner.session.assignment.upstream == "b"
    [moved] = miner.notifications("mining.set_extranonce")
    assert moved[0].startswith(b.extranonce1.hex())


def test_a_move_by_reconnect_waits_for_the_answers_in_flight() -> None:
    a, b = StaticUpstream("a", b"\x00\x00\x00\x01", 0), StaticUpstream("b", b"\x00\x00\x00\x02", 1)
    router, _ = make_router(a, b)
    a.publish()
    b.publish()
    session = MinerSession(1, "10.0.0.1", router, Vardiff(0.001, 0.0001, 1000.0, 10, 30, 0.3))
    miner = Miner(session)
    router.register(miner)
    miner.request("mining.subscribe", ["cpuminer/2.5.1"], 0.0)  # no extranonce.subscribe
    miner.request("mining.authorize", ["w1", "x"], 0.0)
    a.fail("gone")
    [close] = [action for action in miner.actions if isinstance(action, Close)]
    assert close.after_answers and json.loads(close.last_words)["method"] == "client.reconnect"
    assert not miner.notifications("client.reconnect")  # not before the shell has answered


def test_block_hash_is_known_for_a_share_that_is_also_a_block() -> None:
    pool = StaticUpstream("pool", b"\x00\x00\x00\x01")
    router, _ = make_router(pool)
    work = pool.publish()
    miner = join(router, now=0.0)
    [job] = miner.jobs()
    [check] = submit(miner, job[0], 5, work.job.ntime, 1.0)
    assert isinstance(check, Check)
    expected = sha256d(check.candidate.header)[::-1].hex()
    assert validate.block_hash(check.candidate, bytes(32)) == expected
    assert validate.block_hash(check.candidate, b"\xff" * 32) is None
