"""The router and miner sessions driven without sockets, clocks or hashers (in the manner of h11's
test_connection.py): upstream events and miners' messages go in with a `now` the test sets, and
the router's actions come back as values; a few lines here carry them out as the real shell
(proxy.dispatch) would, into recorders of what each miner was sent.

Each test is one of issue 14's or 16's defects, and fails on the code before its fix.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from mining import stratum
from mining.hashing import sha256d
from mining.target import share_difficulty_to_target
from proxy import validate
from proxy.jobs import JOBS_LIVE, JOBS_RETIRED
from proxy.router import (
    FAILBACK,
    FAILOVER,
    START,
    STARTUP_S,
    SWITCH,
    Deliver,
    FanOut,
    Move,
    MoveLater,
    OpenSession,
    Router,
    RouterAction,
)
from proxy.session import Action, Check, Close, MinerSession, Rejected, Send
from proxy.upstream.base import UpstreamWork
from proxy.vardiff import Vardiff
from tests.stratum_peers import regtest_job


@dataclass
class Miner:
    """A miner's end of its session: every line it was sent, in order."""

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

    def notifications(self, method: str) -> list[list[Any]]:
        return [m["params"] for m in self.sent if m.get("method") == method]

    def jobs(self) -> list[list[Any]]:
        return self.notifications("mining.notify")

    def answers(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if "method" not in m]


@dataclass
class Net:
    """The router, the upstreams' events and the miners, with the time in the test's hands."""

    router: Router
    now: float = 1000.0
    miners: dict[int, Miner] = field(default_factory=dict)
    moves: list[Move] = field(default_factory=list)
    later: list[MoveLater] = field(default_factory=list)
    opened: list[OpenSession] = field(default_factory=list)
    extranonce1: dict[str, bytes] = field(default_factory=dict)
    seq: int = 0

    def perform(self, actions: list[RouterAction]) -> list[RouterAction]:
        for action in actions:
            if isinstance(action, Deliver):
                self.miners[action.conn_id].deliver(action.actions)
            elif isinstance(action, FanOut):
                for conn_id in action.conn_ids:
                    miner = self.miners[conn_id]
                    miner.write(action.data_for(miner.session))
            elif isinstance(action, Move):
                self.moves.append(action)
            elif isinstance(action, MoveLater):
                self.later.append(action)
            elif isinstance(action, OpenSession):
                self.opened.append(action)
        return actions

    def upstream(self, name: str, extranonce1: bytes, priority: int = 0) -> None:
        self.router.add_group(name, priority, name, "LTC")
        self.extranonce1[name] = extranonce1

    def publish(self, name: str, clean: bool = True) -> UpstreamWork:
        """New work, then READY: the order `Upstream._publish_job` tells its listeners in."""
        self.seq += 1
        work = UpstreamWork(regtest_job(self.seq, clean), self.extranonce1[name], 4,
                            share_difficulty_to_target(0.001))
        self.perform(self.router.upstream_job(name, work, self.now))
        self.perform(self.router.upstream_state(name, True, True, None, self.now))
        return work

    def fail(self, name: str, error: str) -> None:
        self.perform(self.router.upstream_state(name, False, False, error, self.now))

    def join(self, worker: str = "w1", password: str = "x", agent: str = "test/1",
             vardiff: Vardiff | None = None, extranonce_subscribe: bool = True) -> Miner:
        conn_id = len(self.miners) + 1
        session = MinerSession(conn_id, "10.0.0.1", self.router,
                               vardiff or Vardiff(0.001, 0.0001, 1000.0, 10, 30, 0.3))
        miner = self.miners[conn_id] = Miner(session)
        self.router.miner_joined(session)
        self.request(miner, "mining.subscribe", [agent])
        if extranonce_subscribe:
            self.request(miner, "mining.extranonce.subscribe", [])
        self.request(miner, "mining.authorize", [worker, password])
        return miner

    def leave(self, miner: Miner) -> None:
        self.router.miner_left(miner.session, self.now)

    def request(self, miner: Miner, method: str, params: list[Any]) -> list[Action]:
        miner.next_id += 1
        actions = miner.session.handle(stratum.Request(miner.next_id, method, params), self.now)
        miner.deliver(actions)
        self.perform(self.router.take_pending())
        return actions

    def submit(self, miner: Miner, job_id: str, nonce: int, ntime: int, extranonce2: bytes = b"\x00\x01",
               worker: str = "w1") -> list[Action]:
        return self.request(miner, "mining.submit",
                            [worker, job_id, extranonce2.hex(), f"{ntime:08x}", f"{nonce:08x}"])


def make_net(**options: Any) -> Net:
    return Net(Router(2, grace_s=5.0, fallback_to_preferred=True, authorize=lambda user, password: True,
                      **options))


def test_an_idle_upstreams_current_job_outlives_a_thousand_jobs_of_a_busy_one() -> None:
    net = make_net()
    net.upstream("idle", b"\x00\x00\x00\x01")
    net.upstream("busy", b"\x00\x00\x00\x02", 1)
    net.publish("idle")
    kept = net.router.current_job("idle")
    assert kept is not None
    for _ in range(1000):
        net.publish("busy", clean=False)
    assert net.router.find_job(kept.id) is kept
    assert len(net.router.book) <= 2 * JOBS_LIVE


def test_keepalive_resends_the_job_with_a_fresh_ntime_and_a_share_counts_once_across_copies() -> None:
    net = make_net(keepalive_s=30.0)
    net.upstream("pool", b"\x00\x00\x00\x01")
    work = net.publish("pool")
    miner = net.join()
    [first] = miner.jobs()
    assert net.perform(net.router.keepalive(net.now + 29, wall=work.job.ntime + 29)) == []
    [fan_out] = net.perform(net.router.keepalive(net.now + 31, wall=work.job.ntime + 31))
    assert isinstance(fan_out, FanOut) and fan_out.conn_ids == [miner.session.conn_id]
    [_, again] = miner.jobs()
    assert again[0] != first[0] and again[8] is False  # another id, not clean
    assert int(again[7], 16) == work.job.ntime + 31 and again[1:7] == first[1:7]
    # One share, sent under both ids: the second is a duplicate.
    ntime = work.job.ntime + 40
    assert isinstance(net.submit(miner, first[0], 7, ntime)[0], Check)
    refused = net.submit(miner, again[0], 7, ntime)
    assert isinstance(refused[1], Rejected) and refused[1].rejection.reason == validate.DUPLICATE


def test_a_share_is_judged_at_the_difficulty_its_job_was_sent_at() -> None:
    """A session keeps where its jobs began and the difficulty changes, not every job (issue 19):
    each job still counts at the difficulty that came with it, on each upstream it mined on."""
    net = make_net()
    net.upstream("a", b"\x00\x00\x00\x01")
    net.upstream("b", b"\x00\x00\x00\x02", 1)
    net.publish("a")
    net.publish("b")
    miner = net.join()
    for difficulty in (0.002, 0.002, 0.004, 0.003):
        miner.session.vardiff.difficulty = difficulty  # where vardiff took it
        net.publish("a", clean=False)
    jobs = miner.jobs()
    expected = [0.001, 0.002, 0.002, 0.004, 0.003]
    assert miner.notifications("mining.set_difficulty") == [[0.001], [0.002], [0.004], [0.003]]
    for nonce, (job, difficulty) in enumerate(zip(jobs, expected, strict=True)):
        [check] = net.submit(miner, job[0], nonce, int(job[7], 16))
        assert isinstance(check, Check) and check.candidate.difficulty == difficulty, (job, check)
    # Moved to b (a fails): its jobs from then on, at the difficulty of the move; a's still known.
    net.fail("a", "gone")
    [b_job] = miner.jobs()[len(jobs):]
    [check] = net.submit(miner, b_job[0], 99, int(b_job[7], 16))
    assert isinstance(check, Check) and check.candidate.difficulty == 0.003
    # a is back; this miner is still on b: a job a made since never reached it, and naming it
    # would mine on the prefix the miner held there, maybe another miner's by now.
    net.publish("a", clean=False)
    later = net.router.current_job("a")
    assert miner.session.assignment is not None and miner.session.assignment.upstream == "b"
    assert later is not None and not [j for j in miner.jobs() if j[0] == later.id]
    refused = net.submit(miner, later.id, 100, later.job.ntime)
    assert isinstance(refused[1], Rejected) and refused[1].rejection.reason == validate.UNKNOWN_JOB


def test_a_job_never_sent_is_made_up_and_one_sent_long_ago_is_stale() -> None:
    net = make_net()
    net.upstream("pool", b"\x00\x00\x00\x01")
    work = net.publish("pool")
    before = net.router.current_job("pool")
    net.publish("pool", clean=False)
    miner = net.join()
    [first] = miner.jobs()

    def reason(job_id: str, nonce: int) -> str:
        refused = net.submit(miner, job_id, nonce, work.job.ntime)
        assert isinstance(refused[1], Rejected), refused
        return refused[1].rejection.reason

    assert before is not None and net.router.find_job(before.id) is before
    assert reason(before.id, 1) == validate.UNKNOWN_JOB  # live, but made before the miner came
    assert reason("ffff", 2) == validate.UNKNOWN_JOB
    assert reason(first[0] + ".1", 3) == validate.UNKNOWN_JOB  # a variant nobody made
    for _ in range(JOBS_LIVE):
        net.publish("pool", clean=False)
    assert net.router.find_job(first[0]) is None and net.router.retired_job(first[0]) is not None
    assert reason(first[0], 4) == validate.STALE  # sent to it, retired since
    assert reason(before.id, 5) == validate.UNKNOWN_JOB  # retired, and never sent to it
    for _ in range(JOBS_RETIRED):
        net.publish("pool", clean=False)
    assert net.router.retired_job(first[0]) is None
    assert reason(first[0], 6) == validate.UNKNOWN_JOB  # 64 jobs back: forgotten, as before
    # However many jobs went out, the session holds one entry per upstream and difficulty change.
    assert len(miner.jobs()) == 1 + JOBS_LIVE + JOBS_RETIRED


def test_a_share_whose_upstream_went_away_while_it_hashed_is_stale_not_accepted() -> None:
    net = make_net()
    net.upstream("pool", b"\x00\x00\x00\x01")
    work = net.publish("pool")
    miner = net.join()
    [job] = miner.jobs()
    [check] = net.submit(miner, job[0], 1, work.job.ntime)
    assert isinstance(check, Check)
    net.fail("pool", "new block but no template")  # between the check and the hash
    easiest = bytes(32)  # a hash that meets any target: only staleness can refuse it
    verdict, actions = miner.session.share_hashed(check.request_id, check.candidate, easiest, net.now)
    assert not verdict.accepted and not verdict.meets_upstream
    assert verdict.rejection is not None and verdict.rejection.reason == validate.STALE
    assert "no upstream work" in verdict.rejection.message
    miner.deliver(actions)
    assert miner.answers()[-1]["error"][0] == stratum.JOB_NOT_FOUND


def test_miners_of_an_upstream_that_lost_its_work_are_told_and_get_a_clear_error() -> None:
    net = make_net()
    net.upstream("pool", b"\x00\x00\x00\x01")
    work = net.publish("pool")
    miner = net.join()
    [job] = miner.jobs()
    net.fail("pool", "daemon unreachable")
    [message] = miner.notifications("client.show_message")
    assert "pool has no work (daemon unreachable)" in message[0]
    net.submit(miner, job[0], 1, work.job.ntime)
    error = miner.answers()[-1]["error"]
    assert error[0] == stratum.JOB_NOT_FOUND and "no upstream work available" in error[1]


def test_a_pinned_difficulty_is_kept_in_range_and_raised_when_it_would_flood() -> None:
    net = make_net()
    net.upstream("pool", b"\x00\x00\x00\x01")
    work = net.publish("pool")
    net.now = 0.0
    vardiff = Vardiff(0.001, 0.0001, 1000.0, 10, 30, 0.3, max_share_rate=10.0)
    miner = net.join(password="x,d=0.00001", vardiff=vardiff)
    [clamped] = miner.notifications("client.show_message")
    assert "d=1e-05 is outside" in clamped[0] and "mining at 0.0001" in clamped[0]
    assert miner.notifications("mining.set_difficulty") == [[0.0001]]
    [job] = miner.jobs()
    # Shares at 40/s against a ceiling of 10/s: the new difficulty goes out with the share that
    # shows the flood, before any of them is hashed.
    for nonce in range(1, 40):
        net.now = nonce / 40
        actions = net.submit(miner, job[0], nonce, work.job.ntime)
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
    net.now = 2.0
    [check] = net.submit(miner, variant[0], 1000, int(variant[7], 16))
    assert isinstance(check, Check) and check.candidate.difficulty == raised
    [old] = net.submit(miner, job[0], 1001, work.job.ntime)
    assert isinstance(old, Check) and old.candidate.difficulty == 0.0001


def test_a_workers_difficulty_survives_its_reconnect() -> None:
    net = make_net()
    net.upstream("pool", b"\x00\x00\x00\x01")
    net.publish("pool")
    first = net.join(worker="rig7")
    first.session.vardiff.difficulty = 0.37  # where vardiff took it
    net.leave(first)
    again = net.join(worker="rig7")
    assert again.notifications("mining.set_difficulty") == [[0.37]]
    other = net.join(worker="rig8")
    assert other.notifications("mining.set_difficulty") == [[0.001]]


def test_bfgminer_gets_small_difficulties_in_its_sha256_reading() -> None:
    net = make_net()
    net.upstream("pool", b"\x00\x00\x00\x01")
    net.publish("pool")
    bfg = net.join(password="x,d=0.5", agent="bfgminer/5.5.0")
    assert bfg.notifications("mining.set_difficulty") == [[0.5 / 65536]]
    big = net.join(password="x,d=64", agent="bfgminer/5.5.0")
    assert big.notifications("mining.set_difficulty") == [[64]]
    cpuminer = net.join(password="x,d=0.5", agent="cpuminer/2.5.1")
    assert cpuminer.notifications("mining.set_difficulty") == [[0.5]]


def test_moves_say_what_they_are() -> None:
    net = make_net()
    net.upstream("a", b"\x00\x00\x00\x01", 0)
    net.upstream("b", b"\x00\x00\x00\x02", 1)
    net.publish("b")
    net.publish("a")  # the preferred one a moment later, still starting up
    assert [(m.previous, m.active, m.kind) for m in net.moves] == [(None, "b", START), ("b", "a", START)]
    net.now += STARTUP_S  # long since started
    net.fail("a", "gone")
    net.publish("a")
    assert [(m.previous, m.active, m.kind) for m in net.moves[2:]] == [("a", "b", FAILOVER),
                                                                      ("b", "a", FAILBACK)]
    net.perform(net.router.set_decision("default", "LTC", "b", "b pays 7 % more", 7.0, net.now))
    last = net.moves[-1]
    assert (last.active, last.kind, last.reason, last.expected_gain) == ("b", SWITCH, "b pays 7 % more", 7.0)
    net.router.closing = True
    net.fail("b", "shutting down")
    assert len(net.moves) == 5  # no failover while the proxy closes


def test_a_return_after_a_failover_is_a_failback_even_while_starting() -> None:
    """Within STARTUP_S a better upstream coming up is part of starting; once the route has failed
    over, coming back is a failback, however soon (the real pool's test saw it 7 s after start)."""
    net = make_net()
    net.upstream("a", b"\x00\x00\x00\x01", 0)
    net.upstream("b", b"\x00\x00\x00\x02", 1)
    net.publish("a")
    net.publish("b")
    net.now += 2
    net.fail("a", "gone")
    net.now += 2
    net.publish("a")
    assert net.now - 1000.0 < STARTUP_S
    assert [(m.previous, m.active, m.kind) for m in net.moves] == [
        (None, "a", START), ("a", "b", FAILOVER), ("b", "a", FAILBACK)]


def test_a_switch_moves_miners_in_staggered_batches_that_the_shell_times() -> None:
    net = make_net(stagger=(2, 0.5))
    net.upstream("a", b"\x00\x00\x00\x01", 0)
    net.upstream("b", b"\x00\x00\x00\x02", 1)
    net.publish("a")
    net.publish("b")
    miners = [net.join(worker=f"w{i}") for i in range(5)]
    net.perform(net.router.set_decision("default", "LTC", "b", "b pays more", 9.0, net.now))
    assert [(b.delay_s, len(b.conn_ids), b.group) for b in net.later] == [(0.0, 2, "b"), (0.5, 2, "b"),
                                                                          (1.0, 1, "b")]
    assert all(not m.notifications("mining.set_extranonce") for m in miners)  # nobody moved yet
    net.leave(miners[4])  # gone before its batch: skipped
    for batch in net.later:
        net.perform(net.router.move_batch(batch.conn_ids, batch.group, net.now + batch.delay_s))
    moved = [m for m in miners if m.notifications("mining.set_extranonce")]
    assert moved == miners[:4]
    assert all(m.session.assignment is not None and m.session.assignment.upstream == "b" for m in moved)


def test_a_group_without_room_for_miners_is_not_moved_to() -> None:
    """Issue 16: an upstream that said READY before the router had made room for miners on it
    took the route, the move failed for lack of an allocator, and later jobs did not move them."""
    net = make_net()
    net.upstream("a", b"\x00\x00\x00\x01", 0)
    net.upstream("b", b"\x00\x00\x00\x02", 1)
    net.publish("a")
    miner = net.join()
    net.perform(net.router.upstream_state("b", True, True, None, net.now))  # READY, no job seen yet
    net.fail("a", "gone")
    assert net.router.active == "a"  # nowhere to go yet
    net.publish("b")
    assert net.router.active == "b" and net.moves[-1].kind == FAILOVER
    assert miner.session.assignment is not None and miner.session.assignment.upstream == "b"
    [moved] = miner.notifications("mining.set_extranonce")
    assert moved[0].startswith("00000002")


def test_a_full_group_asks_for_another_upstream_session_once() -> None:
    net = make_net()
    net.router.prefix_size = 1  # 256 prefixes: few enough to fill here
    net.router.add_group("pool", 0, "pool", "LTC", can_grow=True)
    net.extranonce1["pool"] = b"\x00\x00\x00\x01"
    net.publish("pool")
    for i in range(256):
        net.join(worker=f"w{i}")
    assert [(o.group, o.index) for o in net.opened] == [("pool", 2)]
    net.router.add_member("pool", "pool#2", "LTC")
    net.extranonce1["pool#2"] = b"\x00\x00\x00\x09"
    net.publish("pool#2")
    late = net.join(worker="late")
    assert late.session.assignment is not None and late.session.assignment.upstream == "pool#2"


def test_a_move_by_reconnect_waits_for_the_answers_in_flight() -> None:
    net = make_net()
    net.upstream("a", b"\x00\x00\x00\x01", 0)
    net.upstream("b", b"\x00\x00\x00\x02", 1)
    net.publish("a")
    net.publish("b")
    miner = net.join(agent="cpuminer/2.5.1", extranonce_subscribe=False)
    net.fail("a", "gone")
    [close] = [action for action in miner.actions if isinstance(action, Close)]
    assert close.after_answers and json.loads(close.last_words)["method"] == "client.reconnect"
    assert not miner.notifications("client.reconnect")  # not before the shell has answered


def test_block_hash_is_known_for_a_share_that_is_also_a_block() -> None:
    net = make_net()
    net.upstream("pool", b"\x00\x00\x00\x01")
    work = net.publish("pool")
    miner = net.join()
    [job] = miner.jobs()
    [check] = net.submit(miner, job[0], 5, work.job.ntime)
    assert isinstance(check, Check)
    expected = sha256d(check.candidate.header)[::-1].hex()
    assert validate.block_hash(check.candidate, bytes(32)) == expected
    assert validate.block_hash(check.candidate, b"\xff" * 32) is None
