"""The client side of Stratum v1 — what a miner or a proxy speaks to a pool — as a sans-I/O state machine.

Bytes and the time go in, events come out; it never touches a socket or a clock. The proxy's pool
upstream (`proxy/upstream/pool.py`) and the built-in miner (`backends/miner.py`) are thin asyncio
shells around it: they write `Send` data, act on `Work`, resolve submits on `SubmitResult`, follow
`Reconnect`, and call `poll(now)` about once a second so late answers time out.

One instance is one session (one TCP connection): its extranonce, difficulty and jobs belong to
that session and die with it. Work is published only once both the subscribe and the authorize
answers are in. Real pools send the subscribe answer, `mining.set_difficulty` and `mining.notify`
in one write, before the authorize answer: that notify is kept and published when the session is
ready, never dropped, and never paired with another session's extranonce. The first work of a
session is always clean (the jobs of an earlier session cannot be submitted on this one).
"""

from dataclasses import dataclass
from typing import Any

from mining.job import Job
from mining.stratum import (
    METHOD_NOT_FOUND,
    Notification,
    ProtocolError,
    Request,
    Response,
    StratumCodec,
    encode,
    error_value,
)
from mining.target import share_difficulty_to_target

DEFAULT_DIFFICULTY = 1.0
HANDSHAKE_TIMEOUT_S = 15.0
"""Subscribe and authorize must both be answered this long after `start`."""
SUBMIT_TIMEOUT_S = 15.0
MAX_EXTRANONCE2_SIZE = 16
MAX_LINE = 1 << 20
"""Pools send big notifies (long merkle branches): a generous bound, still a bound."""


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Work:
    """Something new to mine on: the job, the session's extranonce space and the pool's difficulty.

    `target` is the share target of the difficulty in force when the work was published; pools
    keep accepting shares at the previous difficulty after a change, so it stays right for this job.
    """

    job: Job
    extranonce1: bytes
    extranonce2_size: int
    difficulty: float
    target: int
    received_at: float


@dataclass(frozen=True, slots=True)
class DifficultyChanged:
    """`mining.set_difficulty` while work is live. Pools apply it to the jobs that follow; a miner
    may filter its shares by it at once (a proxy keeps each job's own target)."""

    difficulty: float
    target: int


@dataclass(frozen=True, slots=True)
class SubmitResult:
    request_id: int
    accepted: bool
    reason: str | None
    latency_s: float


@dataclass(frozen=True, slots=True)
class Reconnect:
    host: str | None
    port: int | None
    wait_s: float


@dataclass(frozen=True, slots=True)
class Notice:
    """Something to log: a pool's message, a malformed line, an ignored request."""

    text: str


@dataclass(frozen=True, slots=True)
class Failure:
    """The session cannot go on (subscribe or authorize refused or unanswered): close, retry later."""

    reason: str


ClientEvent = Send | Work | DifficultyChanged | SubmitResult | Reconnect | Notice | Failure


def error_text(error: Any) -> str:
    """A pool's error value as one line: `[21, "job not found", null]` → "job not found (21)"."""
    if isinstance(error, list) and len(error) >= 2:
        return f"{error[1]} ({error[0]})"
    if isinstance(error, dict):
        return f"{error.get('message')} ({error.get('code')})"
    return str(error)


class StratumClient:
    def __init__(self, user: str, password: str, user_agent: str, *,
                 extranonce_subscribe: bool = True,
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
                 submit_timeout_s: float = SUBMIT_TIMEOUT_S) -> None:
        self.user = user
        self._password = password
        self._user_agent = user_agent
        self._extranonce_subscribe = extranonce_subscribe
        self._handshake_timeout_s = handshake_timeout_s
        self._submit_timeout_s = submit_timeout_s
        self._codec = StratumCodec(max_line=MAX_LINE)
        self._next_id = 1
        self._pending: dict[int, tuple[str, float]] = {}  # request id -> (method, sent at)
        self._started_at: float | None = None
        self.extranonce1: bytes | None = None
        self.extranonce2_size = 0
        self.difficulty = DEFAULT_DIFFICULTY
        self.subscribed = False
        self.authorized = False
        self.job: Job | None = None
        """The pool's newest job (kept from before the session was ready, too)."""
        self._job_received_at = 0.0
        self._buffered_clean = False
        """A clean job arrived before the session was ready: the first work must say so (it does)."""
        self._published = False
        self._live_jobs: set[str] = set()

    # -- outgoing ----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.subscribed and self.authorized

    def start(self, now: float) -> list[ClientEvent]:
        self._started_at = now
        return [self._request("mining.subscribe", [self._user_agent], now)]

    def _request(self, method: str, params: list[Any], now: float) -> Send:
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = (method, now)
        return Send(encode(Request(request_id, method, params)))

    def submit(self, job_id: str, extranonce2: bytes, ntime: int, nonce: int,
               now: float) -> tuple[int, Send]:
        """A share for the pool: the request id its `SubmitResult` will carry, and the bytes."""
        # Stratum sends ntime and nonce as the hex of the big-endian u32: nonce 1 is "00000001".
        params = [self.user, job_id, extranonce2.hex(), f"{ntime:08x}", f"{nonce:08x}"]
        send = self._request("mining.submit", params, now)
        return self._next_id - 1, send

    @property
    def pending_submits(self) -> int:
        return sum(1 for method, _ in self._pending.values() if method == "mining.submit")

    def is_live(self, job_id: str, extranonce1: bytes) -> bool:
        """Would the pool still take a share of this job built on this extranonce1?"""
        return self.ready and job_id in self._live_jobs and extranonce1 == self.extranonce1

    def poll(self, now: float) -> list[ClientEvent]:
        """Time-outs: a handshake not answered in time ends the session; a submit not answered in
        time is reported as failed (its answer, should it come later, is then ignored)."""
        events: list[ClientEvent] = []
        if not self.ready and self._started_at is not None and \
                now - self._started_at > self._handshake_timeout_s:
            missing = "subscribe" if not self.subscribed else "authorize"
            events.append(Failure(f"no answer to mining.{missing} in {self._handshake_timeout_s:g} s"))
        for request_id, (method, sent_at) in list(self._pending.items()):
            if method == "mining.submit" and now - sent_at > self._submit_timeout_s:
                del self._pending[request_id]
                events.append(SubmitResult(request_id, False,
                                           f"no answer in {self._submit_timeout_s:g} s", now - sent_at))
        return events

    # -- incoming ----------------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> list[ClientEvent]:
        events: list[ClientEvent] = []
        for message in self._codec.feed(data):
            if isinstance(message, Response):
                events += self._on_response(message, now)
            elif isinstance(message, Notification):
                events += self._on_notification(message.method, message.params, now)
            elif isinstance(message, Request):
                events += self._on_request(message, now)
            elif isinstance(message, ProtocolError):
                events.append(Notice(f"pool sent a bad line: {message.message}"))
        return events

    def _work(self, now: float) -> list[ClientEvent]:
        """The current job as work, when the session is ready for it."""
        if not self.ready or self.job is None or self.extranonce1 is None:
            return []
        job = self.job
        if not self._published and not job.clean_jobs:
            # A new session: whatever was mined before it cannot be submitted on it.
            job = Job(job.job_id, job.prevhash, job.coinb1, job.coinb2, job.merkle_branch, job.version,
                      job.bits, job.ntime, True, job.extra)
        self._published = True
        return [Work(job, self.extranonce1, self.extranonce2_size, self.difficulty,
                     share_difficulty_to_target(self.difficulty), self._job_received_at)]

    def _on_response(self, response: Response, now: float) -> list[ClientEvent]:
        entry = self._pending.pop(response.id, None) if isinstance(response.id, int) else None
        if entry is None:
            return [Notice(f"pool answered an unknown request id {response.id!r}")]
        method, sent_at = entry
        ok = response.error is None and response.result is True
        if method == "mining.submit":
            reason = None if ok else error_text(response.error) if response.error is not None \
                else f"pool answered {response.result!r}"
            return [SubmitResult(response.id, ok, reason, now - sent_at)]  # type: ignore[arg-type]
        if method == "mining.subscribe":
            return self._on_subscribed(response, now)
        if method == "mining.authorize":
            if not ok:
                reason = error_text(response.error) if response.error is not None else "refused"
                return [Failure(f"worker {self.user!r} not authorized: {reason}")]
            self.authorized = True
            return self._work(now)
        return []  # extranonce.subscribe: pools that lack it answer an error, which changes nothing

    def _on_subscribed(self, response: Response, now: float) -> list[ClientEvent]:
        result = response.result
        try:
            if response.error is not None or not isinstance(result, list) or len(result) < 3:
                raise ValueError(error_text(response.error) if response.error is not None
                                 else f"unexpected result {result!r}")
            if not isinstance(result[1], str):
                raise ValueError(f"bad extranonce1 {result[1]!r}")
            extranonce1 = bytes.fromhex(result[1])
            size = result[2]
            if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_EXTRANONCE2_SIZE:
                raise ValueError(f"bad extranonce2 size {size!r}")
        except ValueError as error:
            return [Failure(f"subscribe failed: {error}")]
        self.extranonce1, self.extranonce2_size = extranonce1, size
        self.subscribed = True
        events: list[ClientEvent] = [self._request("mining.authorize", [self.user, self._password], now)]
        if self._extranonce_subscribe:
            events.append(self._request("mining.extranonce.subscribe", [], now))
        return events

    def _on_notification(self, method: str, params: list[Any], now: float) -> list[ClientEvent]:
        if method == "mining.notify":
            try:
                job = Job.from_notify(params)
            except ValueError as error:
                return [Notice(f"ignored a bad mining.notify: {error}")]
            if job.clean_jobs:
                self._live_jobs.clear()
            self._live_jobs.add(job.job_id)
            if len(self._live_jobs) > 256:  # a pool that never sends clean jobs: stay bounded
                self._live_jobs = {job.job_id}
            self.job, self._job_received_at = job, now
            return self._work(now)
        if method == "mining.set_difficulty":
            difficulty = float(params[0])  # the codec vouched for a finite number
            if difficulty <= 0:
                return [Notice(f"ignored mining.set_difficulty {difficulty:g}")]
            self.difficulty = difficulty
            if self.ready and self._published:
                return [DifficultyChanged(difficulty, share_difficulty_to_target(difficulty))]
            return []
        if method == "mining.set_extranonce":
            size = params[1]
            if not 1 <= size <= MAX_EXTRANONCE2_SIZE:
                return [Notice(f"ignored mining.set_extranonce with size {size}")]
            self.extranonce1, self.extranonce2_size = bytes.fromhex(params[0]), size
            # Pools check every later share against the new extranonce1, whatever its job: work
            # built on the old one is dead, so the current job comes again, clean, on the new one.
            self._published = False
            return self._work(now)
        if method == "client.reconnect":
            return [_reconnect(params)]
        if method == "client.show_message":
            return [Notice(f"pool says: {params[0] if params else ''}")]
        return [Notice(f"ignored notification {method}")]

    def _on_request(self, request: Request, now: float) -> list[ClientEvent]:
        if request.method == "client.get_version":
            return [Send(encode(Response(request.id, self._user_agent)))]
        if request.method == "client.reconnect":
            return [Send(encode(Response(request.id, True))), _reconnect(request.params)]
        if request.method == "client.show_message":
            return [Send(encode(Response(request.id, True))),
                    Notice(f"pool says: {request.params[0] if request.params else ''}")]
        if request.method in ("mining.notify", "mining.set_difficulty", "mining.set_extranonce"):
            # Some pools send these with an id: the same message, answered.
            return [Send(encode(Response(request.id, True))),
                    *self._on_notification(request.method, request.params, now)]
        error = error_value(METHOD_NOT_FOUND, f"unsupported method {request.method}")
        return [Send(encode(Response(request.id, None, error)))]


def _reconnect(params: list[Any]) -> Reconnect:
    host = params[0] if params and isinstance(params[0], str) and params[0] else None
    port: int | None = None
    if len(params) > 1:
        try:
            port = int(params[1])
        except (TypeError, ValueError):
            port = None
        if port is not None and not 0 < port < 65536:
            port = None
    wait = 0.0
    if len(params) > 2:
        try:
            wait = min(max(0.0, float(params[2])), 300.0)
        except (TypeError, ValueError):
            wait = 0.0
    return Reconnect(host, port, wait)
