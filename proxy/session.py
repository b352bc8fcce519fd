"""The miner-side Stratum session as a sans-I/O state machine.

It takes decoded messages (and the time) and returns actions: bytes to send, a share whose header
needs its scrypt hash, or a reason to close. Sockets, timers and the hashers live in
`proxy.server`; upstream choice and job lookup live behind the `Hub` it is given.
"""

import functools
import math
from dataclasses import dataclass, field
from typing import Protocol

from mining import stratum
from mining.target import share_difficulty_to_target
from proxy import validate
from proxy.jobs import ProxyJob
from proxy.validate import Rejection, ShareCandidate, Verdict
from proxy.vardiff import Vardiff

VERSION = "qscrypt/0.1.0"
_SEEN_JOBS = 16
"""Upstream jobs whose shares a session tells apart from duplicates (as many as the book keeps live)."""
_CHANGES_KEPT = 16
"""Difficulty changes remembered per upstream: each came with a job of its own, so the oldest kept
is at least as old as the book's oldest live job (JOBS_LIVE)."""
_UPSTREAMS_KEPT = 4
_VARIANTS_KEPT = 8
_MAX_SHARES_PER_JOB = 65536
SCRYPT_READING_FROM = 16.0
"""BFGMiner (and cgminer forks like it) read a mining.set_difficulty below 16 as SHA-256 difficulty,
65536 times harder than scrypt's; from 16 up, as scrypt difficulty (see shared/peers/README.md)."""
RAISE_GRACE_S = 2.0
_SHA256_READERS = ("bfgminer",)
"""User agents (lower case, prefix) that read a small difficulty the SHA-256 way."""

# Difficulties repeat (vardiff moves in steps), and the exact division behind a target is not cheap.
_share_target = functools.lru_cache(maxsize=1024)(share_difficulty_to_target)


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a miner mines: an upstream and the extranonce space carved out for it there."""

    upstream: str
    extranonce1: bytes
    extranonce2_size: int
    prefix: bytes
    session_id: str


# Send and Check are made per share: not frozen, since frozen construction costs ~1 µs more each
# (measured). Treat them as immutable all the same.
@dataclass(slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    reason: str
    last_words: bytes = b""
    """Sent just before closing, instead of the reason as a client.show_message."""
    after_answers: bool = False
    """Read no more from the miner, answer the shares it has in flight, then close."""


@dataclass(slots=True)
class Check:
    """Hash this candidate off the event loop, then call `MinerSession.share_hashed`."""

    request_id: stratum.JsonId
    candidate: ShareCandidate


@dataclass(frozen=True, slots=True)
class Rejected:
    """A share refused before hashing: the shell counts it."""

    worker: str
    rejection: Rejection
    job_id: str
    upstream: str
    difficulty: float


Action = Send | Close | Check | Rejected


class Hub(Protocol):
    def subscribe(self, session: "MinerSession", resume_id: str | None, now: float) -> Assignment | None: ...

    def authorize(self, session: "MinerSession", username: str, password: str) -> bool | str:
        """True to accept; False, or why not (told to the miner), to refuse."""
        ...

    def known_profile(self, profile: str) -> bool: ...

    def profile_chosen(self, session: "MinerSession",
                       now: float) -> "tuple[Assignment, ProxyJob | None] | None":
        """Where a miner that just named its profile must mine, when that is elsewhere."""
        ...

    def find_job(self, job_id: str) -> ProxyJob | None:
        """A live job: one a share may name."""
        ...

    def retired_job(self, job_id: str) -> tuple[str, int] | None:
        """The upstream and seq of a job no longer live: a share naming it is stale if it was sent."""
        ...

    def is_current(self, job: ProxyJob, now: float) -> bool:
        """Whether shares for `job` are still taken: current epoch, or a moved-from upstream in grace."""
        ...

    def current_job(self, upstream: str) -> ProxyJob | None: ...

    def known_difficulty(self, worker: str) -> float | None:
        """The difficulty `worker` had when its last connection ended (a move by reconnect)."""
        ...


@dataclass(frozen=True, slots=True)
class PasswordOptions:
    difficulty: float | None = None
    profile: str | None = None


def split_username(username: str) -> tuple[str, str | None]:
    """`WORKER+PROFILE` names a profile; `.` stays part of the worker (pools use account.worker)."""
    worker, plus, profile = username.partition("+")
    return worker, (profile or None) if plus else None


def parse_password(password: str) -> PasswordOptions:
    """`d=NUMBER` pins a difficulty, `profile=NAME` picks a profile; other words are ignored,
    since many miners send `x` or a real password here."""
    difficulty = None
    profile = None
    for token in password.replace(";", ",").split(","):
        key, _, value = token.strip().partition("=")
        if key == "d":
            try:
                parsed = float(value)
            except ValueError:
                continue
            if parsed > 0 and math.isfinite(parsed):
                difficulty = parsed
        elif key == "profile" and value:
            profile = value
    return PasswordOptions(difficulty, profile)


@dataclass(slots=True)
class MinerSession:
    conn_id: int
    peer: str
    hub: Hub
    vardiff: Vardiff
    assignment: Assignment | None = None
    user_agent: str = ""
    extranonce_subscribed: bool = False
    workers: set[str] = field(default_factory=set)
    profile: str | None = None
    sent_difficulty: float | None = None
    accepted: int = 0
    rejected: int = 0
    _sent: "JobsSent | None" = None
    """Which jobs of the upstream it last got one from this miner was sent, at which difficulties."""
    _sent_before: "dict[str, JobsSent] | None" = None
    """The same for upstreams it mined on before (shares for their jobs count in a move's grace)."""
    _variant_difficulty: dict[str, float] | None = None
    """Jobs sent again to this miner under ids of its own ("1a.2") at a raised difficulty."""
    # Plain dicts, oldest first (insertion order), not OrderedDicts: an OrderedDict allocates a
    # node per key besides its table.
    _seen: dict[tuple[str, str, bytes, bytes], set[int]] = field(default_factory=dict)
    """Shares seen per upstream job: copies of one job under several ids (a keep-alive with a later
    ntime, a difficulty change) are one job, and a share counts once across all of them."""
    _variants: int = 0
    rate_grace_until: float = 0.0
    """After a raise for flooding, the shares the miner found at the old difficulty are still on
    the wire (cpuminer sent ~150 more at 3,000 a second): until then they are not held against
    its message allowance."""
    _previous_prefixes: dict[str, bytes] = field(default_factory=dict)

    @property
    def subscribed(self) -> bool:
        return self.assignment is not None

    def mines_on(self, upstream: str) -> bool:
        """Whether this miner's work comes from `upstream` now."""
        return self.assignment is not None and self.assignment.upstream == upstream

    @property
    def authorized(self) -> bool:
        return bool(self.workers)

    @property
    def difficulty(self) -> float:
        return self.vardiff.difficulty

    # -- miner -> proxy -------------------------------------------------------------------------

    def handle(self, event: stratum.Event, now: float) -> list[Action]:
        if isinstance(event, stratum.ProtocolError):
            return [Send(stratum.encode(stratum.error_response(event.id, event.code, event.message)))]
        if isinstance(event, stratum.Response):
            return []  # miners answer client.get_version etc.; nothing depends on it
        if isinstance(event, stratum.Notification):
            # Some miners send suggest_difficulty without an id; honour it, answer nothing.
            if event.method == "mining.suggest_difficulty":
                self._suggest(event.params, now)
            return []
        return self._request(event, now)

    def _reply(self, request: stratum.Request, result: object) -> Send:
        return Send(stratum.encode(stratum.Response(request.id, result, None)))

    def _error(self, request: stratum.Request, code: int, message: str) -> Send:
        return Send(stratum.encode(stratum.error_response(request.id, code, message)))

    def _request(self, request: stratum.Request, now: float) -> list[Action]:
        method = request.method
        if method == "mining.submit":
            return self._submit(request, now)
        if method == "mining.subscribe":
            return self._subscribe(request, now)
        if method == "mining.authorize":
            return self._authorize(request, now)
        if method == "mining.extranonce.subscribe":
            self.extranonce_subscribed = True
            return [self._reply(request, True)]
        if method == "mining.suggest_difficulty":
            self._suggest(request.params, now)
            return [self._reply(request, True)]
        if method == "mining.configure":
            return [self._reply(request, self._configure(request.params))]
        if method == "mining.get_transactions":
            return [self._error(request, stratum.OTHER, "mining.get_transactions is not supported")]
        if method == "client.get_version":
            return [self._reply(request, VERSION)]
        return [self._error(request, stratum.METHOD_NOT_FOUND, f"method not found: {method}")]

    def _subscribe(self, request: stratum.Request, now: float) -> list[Action]:
        params = request.params
        if self.assignment is not None:
            return [self._error(request, stratum.OTHER, "already subscribed")]
        self.user_agent = params[0] if params and isinstance(params[0], str) else ""
        resume_id = params[1] if len(params) > 1 and isinstance(params[1], str) else None
        assignment = self.hub.subscribe(self, resume_id, now)
        if assignment is None:
            return [self._error(request, stratum.OTHER, "no upstream work available, try again later"),
                    Close("no upstream available")]
        self.assignment = assignment
        self.vardiff.start(now)
        sid = assignment.session_id
        result = [
            [["mining.set_difficulty", sid], ["mining.notify", sid]],
            assignment.extranonce1.hex(),
            assignment.extranonce2_size,
        ]
        return [self._reply(request, result)]

    def _authorize(self, request: stratum.Request, now: float) -> list[Action]:
        username = request.params[0]
        password = request.params[1] if len(request.params) > 1 and request.params[1] else ""
        verdict = self.hub.authorize(self, username, password)
        if verdict is not True:
            refused: list[Action] = [self._reply(request, False)]
            return [*refused, _message(verdict)] if isinstance(verdict, str) else refused
        options = parse_password(password)
        first = not self.workers
        actions: list[Action] = [self._reply(request, True)]
        if options.difficulty is not None:
            pinned = self.vardiff.pin(options.difficulty)
            if pinned != options.difficulty:
                actions.append(_message(f"qscrypt: d={options.difficulty:g} is outside this proxy's range "
                                        f"[{self.vardiff.minimum:g}, {self.vardiff.maximum:g}]: "
                                        f"mining at {pinned:g}"))
        elif first and not self.vardiff.fixed:
            known = self.hub.known_difficulty(username)
            if known is not None:
                self.vardiff.difficulty = self.vardiff.clamp(known)
        self.workers.add(username)
        if first:
            actions += self._choose_profile(options.profile or split_username(username)[1])
        if first and self.assignment is not None:
            moved = self.hub.profile_chosen(self, now)
            if moved is not None:
                return actions + self.move(moved[0], moved[1], now)
            job = self.hub.current_job(self.assignment.upstream)
            if job is not None:
                actions += self.notify(job, now, clean=True)
        return actions

    def _choose_profile(self, profile: str | None) -> list[Action]:
        if profile is None:
            return []
        if not self.hub.known_profile(profile):
            return [_message(f"qscrypt: unknown profile '{profile}', mining on the default")]
        self.profile = profile
        return []

    def _suggest(self, params: list[object], now: float) -> None:
        if self.vardiff.fixed or not params:
            return
        value = params[0]
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            self.vardiff.suggest(float(value), now)

    def _configure(self, params: list[object]) -> dict[str, object]:
        extensions = params[0] if params and isinstance(params[0], list) else []
        options = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        result: dict[str, object] = {}
        for name in extensions:
            if name == "minimum-difficulty":
                value = options.get("minimum-difficulty.value")
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                    # A floor the miner asks for may raise ours, never lower it below the config's.
                    self.vardiff.minimum = min(max(float(value), self.vardiff.minimum), self.vardiff.maximum)
                    self.vardiff.difficulty = self.vardiff.clamp(self.vardiff.difficulty)
                    result[name] = True
                else:
                    result[name] = False
            elif name == "subscribe-extranonce":
                self.extranonce_subscribed = True
                result[name] = True
            elif isinstance(name, str):
                # Version rolling (ASICBoost) is a sha256d trick; scrypt headers do not allow it here.
                result[name] = False
        return result

    def _submit(self, request: stratum.Request, now: float) -> list[Action]:
        # Who is asking comes first: a refusal to a name nobody authorized (or to a connection
        # that never subscribed) is counted in metrics, never stored under that name.
        worker = request.params[0]
        if worker not in self.workers:
            return self._refuse(request, worker, validate.reject(
                stratum.UNAUTHORIZED, validate.UNAUTHORIZED, "unauthorized worker"))
        if self.assignment is None:
            return self._refuse(request, worker, validate.reject(
                stratum.NOT_SUBSCRIBED, validate.NOT_SUBSCRIBED, "not subscribed"))
        parsed = validate.parse_submit(request.params)
        if isinstance(parsed, Rejection):
            return self._refuse(request, worker, parsed)
        worker, job_id, extranonce2, ntime, nonce = parsed
        # "1a.2": job 1a as this miner got it again at a raised difficulty.
        base_id, variant, _ = job_id.partition(".")
        job = self.hub.find_job(base_id)
        if job is None:
            retired = self.hub.retired_job(base_id)
            sent = retired is not None and self._was_sent(*retired)
            return self._refuse(request, worker, self._stale() if sent else _UNKNOWN_JOB)
        difficulty = self._variant_sent(job_id) if variant else self._difficulty_sent(job)
        if difficulty is None:
            # A variant of a job this miner got, from a session that was given variants, may be one
            # forgotten since (stale); anything else was never sent to it (made up).
            sent = bool(variant) and self._variant_difficulty is not None and \
                self._was_sent(job.upstream, job.seq)
            return self._refuse(request, worker, self._stale() if sent else _UNKNOWN_JOB)
        if not self.hub.is_current(job, now):
            return self._refuse(request, worker, self._stale())
        prefix = self._prefix_for(job)
        problem = validate.check_ntime(job, ntime) or validate.check_extranonce2(
            extranonce2, job.work.extranonce2_size - len(prefix))
        if problem is not None:
            return self._refuse(request, worker, problem)
        # One header per key: the same upstream job on the same extranonce (its copies under other
        # ids share it; another pool session or prefix makes other headers).
        seen_key = (job.upstream, job.job.job_id, job.work.extranonce1, prefix)
        seen = self._seen.get(seen_key)
        if seen is None:
            seen = self._seen[seen_key] = set()
            while len(self._seen) > _SEEN_JOBS:
                del self._seen[next(iter(self._seen))]
        # An int, not a tuple: ints are not tracked by the cyclic GC, and these live for a job.
        key = int.from_bytes(extranonce2, "big") << 64 | ntime << 32 | nonce
        if key in seen:
            return self._refuse(request, worker, validate.reject(
                stratum.DUPLICATE_SHARE, validate.DUPLICATE, "duplicate share"))
        if len(seen) >= _MAX_SHARES_PER_JOB:
            return self._refuse(request, worker, validate.reject(
                stratum.OTHER, validate.MALFORMED, "too many shares for one job: raise the difficulty"))
        seen.add(key)
        full_extranonce2 = prefix + extranonce2
        work = job.work
        header = work.job.header(work.extranonce1, full_extranonce2, ntime, nonce)
        candidate = ShareCandidate(
            worker=worker,
            job=job,
            extranonce2=full_extranonce2,
            ntime=ntime,
            nonce=nonce,
            header=header,
            target=_share_target(difficulty),
            difficulty=difficulty,
        )
        # Counted for vardiff as it comes, not once hashed: a miner far too fast for its difficulty
        # must hear of a new one before the hashers' queue and the message-rate limit fill up.
        self.vardiff.count(now, difficulty)
        if self.vardiff.flooding(now) is not None:
            return [Check(request.id, candidate), *self._raise_difficulty(now)]
        return [Check(request.id, candidate)]

    def _prefix_for(self, job: ProxyJob) -> bytes:
        # Jobs carry the upstream they came from; after a move, shares for the old upstream's jobs
        # (grace window) must be rebuilt with the prefix this miner held there.
        assert self.assignment is not None
        if job.upstream == self.assignment.upstream:
            return self.assignment.prefix
        return self._previous_prefixes.get(job.upstream, self.assignment.prefix)

    def _refuse(self, request: stratum.Request, worker: str, rejection: Rejection) -> list[Action]:
        self.rejected += 1
        job_id = request.params[1] if len(request.params) > 1 and isinstance(request.params[1], str) else ""
        upstream = self.assignment.upstream if self.assignment is not None else ""
        return [self._error(request, rejection.code, rejection.message),
                Rejected(worker, rejection, job_id[:64], upstream, self.vardiff.difficulty)]

    def _stale(self) -> Rejection:
        if self.assignment is not None and self.hub.current_job(self.assignment.upstream) is None:
            return validate.reject(stratum.JOB_NOT_FOUND, validate.STALE,
                                   "stale job: no upstream work available, try again later")
        return validate.reject(stratum.JOB_NOT_FOUND, validate.STALE, "stale job")

    def share_hashed(self, request_id: stratum.JsonId, candidate: ShareCandidate, pow_hash: bytes,
                     now: float) -> tuple[Verdict, list[Action]]:
        verdict = validate.judge(candidate, pow_hash)
        if verdict.accepted and not self.hub.is_current(candidate.job, now):
            # The job was replaced (a new block, an upstream gone) while the share was hashed: it
            # is worth nothing now, and must not be answered `true` or sent on as a block.
            verdict = Verdict(False, verdict.share_difficulty, False, self._stale())
        if verdict.accepted:
            self.accepted += 1
            return verdict, [Send(stratum.encode(stratum.Response(request_id, True, None)))]
        self.rejected += 1
        assert verdict.rejection is not None
        reply = stratum.error_response(request_id, verdict.rejection.code, verdict.rejection.message)
        return verdict, [Send(stratum.encode(reply))]

    def _raise_difficulty(self, now: float) -> list[Action]:
        """The miner sends shares faster than the message-rate limit allows: its new difficulty goes
        out now, with its job again under a new id and clean (cpuminer applies a difficulty only to
        a job id it has not seen, and only a clean one stops the threads hashing the old target)."""
        actions: list[Action] = []
        if self.vardiff.fixed:
            actions.append(_message(
                f"qscrypt: your pinned difficulty makes more than {self.vardiff.max_share_rate:g} shares/s, "
                f"over this proxy's message limit: raised to {self.vardiff.difficulty:g}"))
        self.rate_grace_until = now + RAISE_GRACE_S
        job = self.hub.current_job(self.assignment.upstream) if self.assignment is not None else None
        if job is None:
            return actions
        self._variants += 1
        variant = f"{job.id}.{self._variants:x}"
        variants = self._variant_difficulty
        if variants is None:
            variants = self._variant_difficulty = {}
        variants[variant] = self.vardiff.difficulty
        if len(variants) > _VARIANTS_KEPT:
            del variants[next(iter(variants))]
        params = job.job.notify_params(job_id=variant, clean_jobs=True)
        # Another header too (ntime a little later): cpuminer keeps hashing its current work, at its
        # old target, for as long as the first 76 bytes of the new work are the same.
        params[7] = f"{job.job.ntime + self._variants:08x}"
        line = stratum.notify("mining.notify", params)
        self.sent_difficulty = self.vardiff.difficulty
        actions.append(Send(self._set_difficulty(self.sent_difficulty) + line))
        return actions

    def _set_difficulty(self, difficulty: float) -> bytes:
        wire = difficulty
        if difficulty < SCRYPT_READING_FROM and self.user_agent.lower().startswith(_SHA256_READERS):
            wire = difficulty / 65536  # read as SHA-256 difficulty: the same target
        return stratum.notify("mining.set_difficulty", [wire])

    # -- proxy -> miner -------------------------------------------------------------------------

    def notify(self, job: ProxyJob, now: float, clean: bool = False) -> list[Action]:
        """The job (and, first, a new difficulty if one is due) for this miner."""
        data = self.notify_data(job, now, clean)
        return [Send(data)] if data else []

    def notify_data(self, job: ProxyJob, now: float, clean: bool = False) -> bytes:
        """`notify` as bytes: the fan-out path writes them without building actions."""
        if not self.workers or self.assignment is None:
            return b""
        self.vardiff.maybe_retarget(now)
        difficulty = self.vardiff.difficulty
        sent = self._sent
        if sent is None or sent.upstream != job.upstream:
            sent = self._sent_to(job.upstream, job.seq, difficulty)
        if job.seq > sent.last:
            sent.last = job.seq
        if sent.changes[-1] != difficulty:
            sent.at(job.seq, difficulty)
        line = job.notify_clean if clean or job.job.clean_jobs else job.notify
        if self.sent_difficulty == difficulty:
            return line
        self.sent_difficulty = difficulty
        return self._set_difficulty(difficulty) + line

    def _sent_to(self, upstream: str, seq: int, difficulty: float) -> "JobsSent":
        """The first job of `upstream` since this miner's jobs came from another one."""
        before = self._sent_before
        if self._sent is not None:
            if before is None:
                before = self._sent_before = {}
            before[self._sent.upstream] = self._sent
            if len(before) > _UPSTREAMS_KEPT:
                del before[next(iter(before))]
        sent = before.pop(upstream, None) if before is not None else None
        self._sent = sent if sent is not None else JobsSent(upstream, seq, seq, [seq, difficulty])
        return self._sent

    def _jobs_sent(self, upstream: str) -> "JobsSent | None":
        sent = self._sent
        if sent is not None and sent.upstream == upstream:
            return sent
        return self._sent_before.get(upstream) if self._sent_before is not None else None

    def _difficulty_sent(self, job: ProxyJob) -> float | None:
        """The difficulty `job` was sent to this miner at; None if it never was."""
        sent = self._jobs_sent(job.upstream)
        if sent is None or job.seq > sent.last:
            return None
        changes, seq = sent.changes, job.seq
        for i in range(len(changes) - 2, -1, -2):
            if changes[i] <= seq:
                return changes[i + 1]
        return None

    def _variant_sent(self, job_id: str) -> float | None:
        return None if self._variant_difficulty is None else self._variant_difficulty.get(job_id)

    def _was_sent(self, upstream: str, seq: int) -> bool:
        sent = self._jobs_sent(upstream)
        return sent is not None and sent.first <= seq <= sent.last

    def move(self, assignment: Assignment, job: ProxyJob | None, now: float) -> list[Action]:
        """Put this miner on another upstream (failover or a profile switch)."""
        if self.assignment is not None:
            self._previous_prefixes[self.assignment.upstream] = self.assignment.prefix
        previous = self.assignment
        self.assignment = assignment
        if previous is not None and not self.extranonce_subscribed and \
                previous.extranonce1 != assignment.extranonce1:
            # Without mining.set_extranonce the only way to change extranonce1 is a reconnect; the
            # shares the miner has in flight are answered first.
            return [Close("moved: reconnect requested", stratum.notify("client.reconnect", []),
                          after_answers=True)]
        actions: list[Action] = []
        if previous is None or previous.extranonce1 != assignment.extranonce1 or \
                previous.extranonce2_size != assignment.extranonce2_size:
            actions.append(Send(stratum.notify(
                "mining.set_extranonce", [assignment.extranonce1.hex(), assignment.extranonce2_size])))
        if job is not None:
            actions += self.notify(job, now, clean=True)
        return actions


@dataclass(slots=True)
class JobsSent:
    """Which of one upstream's jobs a miner was sent: every one from `first` to `last` (each of an
    upstream's jobs goes to all its miners, in the book's order), at the difficulties in `changes`.
    Jobs made after a miner moved away are past `last`: a share naming one is made up, and would
    use the extranonce prefix the miner held there, which may be another miner's by now."""

    upstream: str
    first: int
    last: int
    changes: list[float]
    """Flat and oldest first: seq, difficulty, seq, difficulty…; the difficulty holds from that seq
    on. At most _CHANGES_KEPT pairs."""

    def at(self, seq: int, difficulty: float) -> None:
        changes = self.changes
        if changes[-2] >= seq:
            changes[-1] = difficulty  # the same job again, now at this difficulty
            return
        changes += (seq, difficulty)
        if len(changes) > 2 * _CHANGES_KEPT:
            del changes[:2]


_UNKNOWN_JOB = validate.reject(stratum.JOB_NOT_FOUND, validate.UNKNOWN_JOB, "job not found")
"""A job never sent to this miner: not a late share but a made-up one, which counts toward the
invalid-share ban like any other invalid share."""


def _message(text: str) -> Send:
    return Send(stratum.notify("client.show_message", [text]))
