"""The miner's side of Stratum v1 as a sans-I/O state machine: bytes in, events out.

The asyncio shell (backends/miner.py) writes `Send` data to the socket, restarts hashing on
`NewWork`, counts `ShareResult`s and follows `Reconnect`; this module never touches a socket or
a clock, so every protocol path is testable without a network.
"""

from dataclasses import dataclass
from typing import Any

from backends.work import WorkTemplate
from mining.job import Job
from mining.stratum import (
    METHOD_NOT_FOUND,
    Notification,
    Request,
    Response,
    StratumCodec,
    encode,
    error_value,
)
from mining.target import share_difficulty_to_target

DEFAULT_DIFFICULTY = 1.0


@dataclass(frozen=True, slots=True)
class Share:
    template: WorkTemplate
    extranonce2: bytes
    ntime: int
    nonce: int

    def submit_params(self, worker: str) -> list[Any]:
        # Stratum sends ntime and nonce as the hex of the big-endian u32: nonce 1 is "00000001".
        return [worker, self.template.job.job_id, self.extranonce2.hex(), f"{self.ntime:08x}",
                f"{self.nonce:08x}"]


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class NewWork:
    template: WorkTemplate


@dataclass(frozen=True, slots=True)
class ShareResult:
    share: Share
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Reconnect:
    host: str | None
    port: int | None
    wait_s: float


@dataclass(frozen=True, slots=True)
class Notice:
    """Something to log: a server message, a malformed line, an ignored request."""

    text: str


@dataclass(frozen=True, slots=True)
class Failure:
    """The session cannot go on (subscribe or authorize refused): close and retry later."""

    reason: str


ClientEvent = Send | NewWork | ShareResult | Reconnect | Notice | Failure


def _error_text(error: Any) -> str:
    if isinstance(error, list) and len(error) >= 2:
        return f"{error[1]} ({error[0]})"
    return str(error)


class StratumClient:
    def __init__(self, user: str, password: str, user_agent: str) -> None:
        self.user = user
        self._password = password
        self._user_agent = user_agent
        self._codec = StratumCodec()
        self._next_id = 1
        self._pending: dict[int, str] = {}  # request id -> method
        self._submits: dict[int, Share] = {}
        self.extranonce1: bytes | None = None
        self.extranonce2_size = 0
        self.difficulty = DEFAULT_DIFFICULTY
        self.job: Job | None = None
        self._job_received_at = 0.0
        self._live_jobs: set[str] = set()  # job ids the pool still takes shares for
        self.subscribed = False
        self.authorized = False

    # -- outgoing ----------------------------------------------------------------------------

    def _request(self, method: str, params: list[Any]) -> Send:
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = method
        return Send(encode(Request(request_id, method, params)))

    def start(self) -> list[ClientEvent]:
        return [self._request("mining.subscribe", [self._user_agent])]

    def submit(self, share: Share) -> Send:
        send = self._request("mining.submit", share.submit_params(self.user))
        self._submits[self._next_id - 1] = share
        return send

    @property
    def pending_submits(self) -> int:
        return len(self._submits)

    def is_current(self, template: WorkTemplate) -> bool:
        """Would the pool still take a share of this template (job live, same extranonce1)?"""
        return template.job.job_id in self._live_jobs and template.extranonce1 == self.extranonce1

    # -- incoming ----------------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> list[ClientEvent]:
        events: list[ClientEvent] = []
        for message in self._codec.feed(data):
            if isinstance(message, Response):
                events += self._on_response(message)
            elif isinstance(message, Notification):
                events += self._on_notification(message.method, message.params, now)
            elif isinstance(message, Request):
                events += self._on_request(message)
            else:
                events.append(Notice(f"pool sent a bad line: {message.message}"))
        return events

    def _template(self) -> WorkTemplate | None:
        if self.job is None or self.extranonce1 is None:
            return None
        return WorkTemplate(self.job, self.extranonce1, self.extranonce2_size, self.difficulty,
                            share_difficulty_to_target(self.difficulty), self._job_received_at)

    def _work_changed(self) -> list[ClientEvent]:
        template = self._template()
        return [] if template is None else [NewWork(template)]

    def _on_response(self, response: Response) -> list[ClientEvent]:
        if not isinstance(response.id, int) or response.id not in self._pending:
            return [Notice(f"pool answered an unknown request id {response.id!r}")]
        method = self._pending.pop(response.id)
        if method == "mining.submit":
            share = self._submits.pop(response.id)
            accepted = response.result is True and response.error is None
            reason = None if accepted else _error_text(response.error) if response.error else "rejected"
            return [ShareResult(share, accepted, reason)]
        if method == "mining.subscribe":
            return self._on_subscribed(response)
        if method == "mining.authorize":
            if response.result is True and response.error is None:
                self.authorized = True
                return []
            reason = _error_text(response.error) if response.error else "refused"
            return [Failure(f"worker {self.user!r} not authorized: {reason}")]
        return []  # extranonce.subscribe: pools that lack it answer an error, which changes nothing

    def _on_subscribed(self, response: Response) -> list[ClientEvent]:
        result = response.result
        try:
            if response.error is not None or not isinstance(result, list) or len(result) < 3:
                raise ValueError(_error_text(response.error) if response.error else "unexpected result")
            extranonce1 = bytes.fromhex(result[1])
            size = result[2]
            if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 16:
                raise ValueError(f"bad extranonce2 size {size!r}")
        except (ValueError, TypeError) as error:
            return [Failure(f"subscribe failed: {error}")]
        self.extranonce1, self.extranonce2_size = extranonce1, size
        self.subscribed = True
        return [
            self._request("mining.authorize", [self.user, self._password]),
            self._request("mining.extranonce.subscribe", []),
            *self._work_changed(),
        ]

    def _on_notification(self, method: str, params: list[Any], now: float) -> list[ClientEvent]:
        if method == "mining.notify":
            try:
                job = Job.from_notify(params)
            except ValueError as error:
                return [Notice(f"ignored a bad mining.notify: {error}")]
            if job.clean_jobs:
                self._live_jobs.clear()
            self._live_jobs.add(job.job_id)
            self.job, self._job_received_at = job, now
            return self._work_changed()
        if method == "mining.set_difficulty":
            difficulty = params[0]
            if difficulty <= 0:
                return [Notice(f"ignored mining.set_difficulty {difficulty}")]
            self.difficulty = float(difficulty)
            return self._work_changed()
        if method == "mining.set_extranonce":
            if not 0 <= params[1] <= 16:
                return [Notice(f"ignored mining.set_extranonce with size {params[1]}")]
            self.extranonce1, self.extranonce2_size = bytes.fromhex(params[0]), params[1]
            return self._work_changed()
        if method == "client.reconnect":
            return [self._reconnect(params)]
        if method == "client.show_message":
            return [Notice(f"pool says: {params[0] if params else ''}")]
        return [Notice(f"ignored notification {method}")]

    def _on_request(self, request: Request) -> list[ClientEvent]:
        if request.method == "client.get_version":
            return [Send(encode(Response(request.id, self._user_agent)))]
        if request.method == "client.reconnect":
            return [Send(encode(Response(request.id, True))), self._reconnect(request.params)]
        if request.method == "client.show_message":
            return [Send(encode(Response(request.id, True))),
                    Notice(f"pool says: {request.params[0] if request.params else ''}")]
        error = error_value(METHOD_NOT_FOUND, f"unsupported method {request.method}")
        return [Send(encode(Response(request.id, None, error)))]

    @staticmethod
    def _reconnect(params: list[Any]) -> Reconnect:
        host = params[0] if params and isinstance(params[0], str) and params[0] else None
        port: int | None = None
        if len(params) > 1:
            try:
                port = int(params[1])
            except (TypeError, ValueError):
                port = None
        wait = 0.0
        if len(params) > 2:
            try:
                wait = max(0.0, float(params[2]))
            except (TypeError, ValueError):
                wait = 0.0
        return Reconnect(host, port, wait)
