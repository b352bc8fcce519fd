"""A minimal Stratum pool for miner tests: real sockets, mining.stratum codec, shares checked with mining/."""

import asyncio
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

from mining.hashing import hash_to_int, scrypt_pow
from mining.job import Job, parse_u32_hex
from mining.stratum import (
    DUPLICATE_SHARE,
    JOB_NOT_FOUND,
    LOW_DIFFICULTY,
    OTHER,
    Notification,
    Request,
    Response,
    StratumCodec,
    encode,
    error_response,
)
from mining.target import share_difficulty_to_target

_job_ids = itertools.count(1)


def make_job(clean: bool = True) -> Job:
    params = [
        f"{next(_job_ids):x}",
        os.urandom(32).hex(),
        os.urandom(40).hex(),
        os.urandom(30).hex(),
        [os.urandom(32).hex() for _ in range(2)],
        "20000000",
        "1e0ffff0",
        f"{int(time.time()):08x}",
        clean,
    ]
    return Job.from_notify(params)


@dataclass
class SubmittedShare:
    job_id: str
    extranonce2: bytes
    ntime: int
    nonce: int
    difficulty: float  # the session's difficulty when the share arrived
    accepted: bool
    reason: str | None


@dataclass
class PoolSession:
    writer: asyncio.StreamWriter
    extranonce1: bytes
    extranonce2_size: int
    difficulty: float
    jobs: dict[str, Job] = field(default_factory=dict)
    seen: set[tuple[str, bytes, int, int]] = field(default_factory=set)

    def send(self, method: str, params: list[Any]) -> None:
        self.writer.write(encode(Notification(method, params)))

    def notify(self, job: Job) -> None:
        if job.clean_jobs:
            self.jobs.clear()
        self.jobs[job.job_id] = job
        self.send("mining.notify", job.notify_params())

    def set_difficulty(self, difficulty: float) -> None:
        self.difficulty = difficulty
        self.send("mining.set_difficulty", [difficulty])

    def set_extranonce(self, extranonce1: bytes, size: int) -> None:
        self.extranonce1, self.extranonce2_size = extranonce1, size
        self.send("mining.set_extranonce", [extranonce1.hex(), size])


class TestPool:
    __test__ = False  # not a pytest class

    def __init__(self, difficulty: float, extranonce2_size: int = 4, answer_delay_s: float = 0.0,
                 reject_first: int = 0) -> None:
        self.difficulty = difficulty
        self.extranonce2_size = extranonce2_size
        self.answer_delay_s = answer_delay_s
        self.reject_first = reject_first
        self.sessions: list[PoolSession] = []
        self.shares: list[SubmittedShare] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "TestPool":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for session in self.sessions:
            session.writer.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"stratum+tcp://127.0.0.1:{self.port}"

    def accepted(self, job_id: str | None = None) -> list[SubmittedShare]:
        return [s for s in self.shares if s.accepted and (job_id is None or s.job_id == job_id)]

    async def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; shares so far: {self.shares}")
            await asyncio.sleep(0.01)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        session = PoolSession(writer, os.urandom(4), self.extranonce2_size, self.difficulty)
        self.sessions.append(session)
        codec = StratumCodec()
        try:
            while data := await reader.read(65536):
                for message in codec.feed(data):
                    if isinstance(message, Request):
                        self._answer(session, message)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _answer(self, session: PoolSession, request: Request) -> None:
        writer = session.writer
        if request.method == "mining.subscribe":
            subscriptions = [["mining.set_difficulty", "1"], ["mining.notify", "1"]]
            writer.write(encode(Response(request.id, [subscriptions, session.extranonce1.hex(),
                                                      session.extranonce2_size])))
            session.set_difficulty(session.difficulty)
            session.notify(make_job())
        elif request.method == "mining.submit":
            response = self._check(session, request)
            if self.answer_delay_s:
                task = asyncio.get_running_loop().create_task(self._later(writer, response))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                writer.write(encode(response))
        else:  # authorize, extranonce.subscribe
            writer.write(encode(Response(request.id, True)))

    async def _later(self, writer: asyncio.StreamWriter, response: Response) -> None:
        await asyncio.sleep(self.answer_delay_s)
        writer.write(encode(response))

    def _check(self, session: PoolSession, request: Request) -> Response:
        _worker, job_id, en2_hex, ntime_hex, nonce_hex = request.params[:5]
        extranonce2 = bytes.fromhex(en2_hex)
        ntime = parse_u32_hex(ntime_hex, "ntime")
        nonce = parse_u32_hex(nonce_hex, "nonce")
        job = session.jobs.get(job_id)
        code: int | None = None
        reason = ""
        if job is None:
            code, reason = JOB_NOT_FOUND, "job not found"
        elif len(extranonce2) != session.extranonce2_size:
            code, reason = OTHER, "bad extranonce2 size"
        elif not job.ntime <= ntime <= job.ntime + 7200:
            code, reason = OTHER, "ntime out of range"
        elif (job_id, extranonce2, ntime, nonce) in session.seen:
            code, reason = DUPLICATE_SHARE, "duplicate share"
        else:
            session.seen.add((job_id, extranonce2, ntime, nonce))
            header = job.header(session.extranonce1, extranonce2, ntime, nonce)
            if hash_to_int(scrypt_pow(header)) > share_difficulty_to_target(session.difficulty):
                code, reason = LOW_DIFFICULTY, "low difficulty share"
            elif self.reject_first > 0:
                self.reject_first -= 1
                code, reason = OTHER, "rejected by test"
        self.shares.append(SubmittedShare(job_id, extranonce2, ntime, nonce, session.difficulty, code is None,
                                          reason or None))
        if code is None:
            return Response(request.id, True)
        return error_response(request.id, code, reason)
