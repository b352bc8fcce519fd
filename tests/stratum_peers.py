"""Real Stratum peers for tests: a minimal upstream pool server and a miner, both speaking the wire
protocol through `mining.stratum` and hashing real nonces with `mining.hashing`.

Jobs come from real Litecoin Core regtest getblocktemplate answers (the shared vectors), so the
coinbase, merkle branch and header are those of blocks the daemon accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import ssl
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mining import stratum
from mining.hashing import hash_to_int, scrypt_pow
from mining.job import Job
from mining.target import share_difficulty_to_target

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"
NTIME_ROLL_S = 7200  # how far past a job's ntime the pool takes a share's ntime


def regtest_jobs() -> list[Job]:
    """One Stratum job per real regtest template in the shared vectors."""
    cases = json.loads((VECTORS / "ltc_regtest_blocks.json").read_text())["cases"]
    jobs = []
    for index, case in enumerate(cases):
        template, parts = case["template"], case["coinbase_parts"]
        jobs.append(Job(
            job_id=f"up{index}",
            prevhash=bytes.fromhex(template["previousblockhash"])[::-1],
            coinb1=bytes.fromhex(parts["coinb1_hex"]),
            coinb2=bytes.fromhex(parts["coinb2_hex"]),
            merkle_branch=tuple(bytes.fromhex(h) for h in case["merkle_branch"]),
            version=template["version"],
            bits=int(template["bits"], 16),
            ntime=template["curtime"],
            clean_jobs=True,
        ))
    return jobs


@functools.cache
def _templates() -> tuple[Job, ...]:
    return tuple(regtest_jobs())


def regtest_job(seq: int, clean: bool = True) -> Job:
    """Job `seq` of an endless series cut from the regtest templates (template `seq` modulo their
    count): a fresh job id and a moving ntime make every job distinct, as a pool's are."""
    base = _templates()[seq % len(_templates())]
    return Job(f"j{seq}", base.prevhash, base.coinb1, base.coinb2, base.merkle_branch,
               base.version, base.bits, base.ntime + seq, clean)


@dataclass
class Submission:
    """One mining.submit as the pool judged it."""

    worker: str
    job_id: str
    extranonce1: bytes
    extranonce2: bytes
    ntime: int
    nonce: int
    accepted: bool
    reason: str | None  # the error message of a refused share
    difficulty: float  # the pool's difficulty when the share arrived


@dataclass
class PoolSession:
    """One connection to the pool, with the extranonce its shares are checked with."""

    writer: asyncio.StreamWriter
    extranonce1: bytes
    extranonce2_size: int
    connected: bool = True


class PoolServer:
    """A small real Stratum pool: subscribe, authorize, notify, and submit checked as a pool checks it
    (a live job, the extranonce2 size, the ntime range, no duplicates, scrypt against the difficulty).

    Options for miner tests: `job_interval_s=None` sends no periodic jobs, `answer_delay_s` answers
    submits that much later, `authorize_delay_s` the authorize request, `reject_first` refuses that
    many otherwise valid shares."""

    def __init__(self, extranonce2_size: int = 4, difficulty: float = 0.001,
                 job_interval_s: float | None = 1.0, answer_delay_s: float = 0.0,
                 reject_first: int = 0, authorize_delay_s: float = 0.0) -> None:
        self.extranonce2_size = extranonce2_size
        self.job_interval_s = job_interval_s
        self.answer_delay_s = answer_delay_s
        self.authorize_delay_s = authorize_delay_s
        self.reject_first = reject_first
        self._ticker: asyncio.Task[None] | None = None
        self.difficulty = difficulty
        self.jobs: dict[str, Job] = {}  # every job announced; those replaced by a clean job are stale
        self.stale: set[str] = set()
        self.current: Job | None = None
        self.submissions: list[Submission] = []
        self.sessions: list[PoolSession] = []  # every connection, in order
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        # Each pool numbers its sessions from its own base, as real pools' extranonce1s differ.
        self._next_extranonce1 = int.from_bytes(os.urandom(2), "big") << 16
        self._job_seq = 0
        self._seen: set[tuple[str, bytes, bytes, int, int]] = set()
        self._answers: set[asyncio.Task[None]] = set()
        self.silent = False
        self.authorized_users: list[str] = []

    async def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", port, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.current is None:
            self.new_job(clean=True, broadcast=False)
        if self.job_interval_s is not None:
            self._ticker = asyncio.create_task(self._tick(self.job_interval_s))

    async def __aenter__(self) -> PoolServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick(self, interval_s: float) -> None:
        # Pools send fresh work (new mempool transactions) every so often: a silent one is dead.
        while True:
            await asyncio.sleep(interval_s)
            if self.connections:
                self.new_job(clean=False)

    async def stop(self) -> None:
        """Kill the pool: stop listening and drop every connection."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for session in self._connected():
            session.connected = False
            session.writer.close()

    @property
    def connections(self) -> int:
        return len(self._connected())

    @property
    def url(self) -> str:
        return f"stratum+tcp://127.0.0.1:{self.port}"

    def accepted(self, job_id: str | None = None) -> list[Submission]:
        return [s for s in self.submissions if s.accepted and (job_id is None or s.job_id == job_id)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; submissions so far: {self.submissions}")
            await asyncio.sleep(0.01)

    def _connected(self) -> list[PoolSession]:
        return [session for session in self.sessions if session.connected]

    def new_job(self, clean: bool, broadcast: bool = True) -> Job:
        self._job_seq += 1
        job = regtest_job(self._job_seq, clean)
        if clean:
            self.stale.update(self.jobs)
        self.jobs[job.job_id] = job
        self.current = job
        if broadcast and not self.silent:
            self.broadcast(stratum.notify("mining.notify", job.notify_params()))
        return job

    def broadcast(self, data: bytes) -> None:
        for session in self._connected():
            session.writer.write(data)

    def set_difficulty(self, difficulty: float) -> None:
        """Check shares against `difficulty` from now on, and tell every miner."""
        self.difficulty = difficulty
        self.broadcast(stratum.notify("mining.set_difficulty", [difficulty]))

    def set_extranonce(self, session: PoolSession, extranonce1: bytes,
                       extranonce2_size: int | None = None) -> None:
        session.extranonce1 = extranonce1
        if extranonce2_size is not None:
            session.extranonce2_size = extranonce2_size
        session.writer.write(stratum.notify("mining.set_extranonce",
                                            [extranonce1.hex(), session.extranonce2_size]))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        codec = stratum.StratumCodec(max_line=1 << 20)
        self._next_extranonce1 += 1
        session = PoolSession(writer, struct.pack(">I", self._next_extranonce1), self.extranonce2_size)
        self.sessions.append(session)
        try:
            while data := await reader.read(65536):
                for event in codec.feed(data):
                    if isinstance(event, stratum.Request):
                        self._handle(session, event)
        except ConnectionError:
            pass
        finally:
            session.connected = False
            with contextlib.suppress(Exception):
                writer.close()

    def _handle(self, session: PoolSession, request: stratum.Request) -> None:
        writer = session.writer

        def reply(result: Any, error: Any = None) -> None:
            writer.write(stratum.encode(stratum.Response(request.id, result, error)))

        if request.method == "mining.subscribe":
            # As real pools (foundation-v2-litecoin, NOMP) do: the answer, the difficulty and the
            # current job in one write, before the miner has even asked to authorize.
            answer = stratum.encode(stratum.Response(
                request.id, [[["mining.set_difficulty", "s1"], ["mining.notify", "s1"]],
                             session.extranonce1.hex(), session.extranonce2_size], None))
            answer += stratum.notify("mining.set_difficulty", [self.difficulty])
            if self.current is not None:
                answer += stratum.notify("mining.notify", self.current.notify_params(clean_jobs=True))
            writer.write(answer)
        elif request.method == "mining.extranonce.subscribe":
            reply(True)
        elif request.method == "mining.authorize":
            self.authorized_users.append(request.params[0])
            answer = stratum.encode(stratum.Response(request.id, True, None))
            if self.authorize_delay_s:
                self._later(writer, answer, self.authorize_delay_s)
            else:
                writer.write(answer)
        elif request.method == "mining.submit":
            answer = stratum.encode(stratum.Response(request.id, *self._submit(session, request.params)))
            if self.answer_delay_s:
                self._later(writer, answer, self.answer_delay_s)
            else:
                writer.write(answer)
        else:
            reply(None, stratum.error_value(stratum.METHOD_NOT_FOUND, "unknown"))

    def _later(self, writer: asyncio.StreamWriter, answer: bytes, delay_s: float) -> None:
        task = asyncio.create_task(self._answer_later(writer, answer, delay_s))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _answer_later(self, writer: asyncio.StreamWriter, answer: bytes, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if not writer.is_closing():
            writer.write(answer)

    def _submit(self, session: PoolSession, params: list[Any]) -> tuple[Any, Any]:
        worker, job_id, en2_hex, ntime_hex, nonce_hex = params[:5]
        extranonce1, extranonce2 = session.extranonce1, bytes.fromhex(en2_hex)
        ntime, nonce = int(ntime_hex, 16), int(nonce_hex, 16)
        job = self.jobs.get(job_id)
        code: int | None = None
        reason = ""
        if job is None or job_id in self.stale:
            code, reason = stratum.JOB_NOT_FOUND, "job not found"
        elif len(extranonce2) != session.extranonce2_size:
            code, reason = stratum.OTHER, "bad extranonce2 size"
        elif not job.ntime <= ntime <= job.ntime + NTIME_ROLL_S:
            code, reason = stratum.OTHER, "ntime out of range"
        elif (job_id, extranonce1, extranonce2, ntime, nonce) in self._seen:
            code, reason = stratum.DUPLICATE_SHARE, "duplicate share"
        else:
            self._seen.add((job_id, extranonce1, extranonce2, ntime, nonce))
            header = job.header(extranonce1, extranonce2, ntime, nonce)
            if hash_to_int(scrypt_pow(header)) > share_difficulty_to_target(self.difficulty):
                code, reason = stratum.LOW_DIFFICULTY, "low difficulty share"
            elif self.reject_first > 0:
                self.reject_first -= 1
                code, reason = stratum.OTHER, "rejected by test"
        self.submissions.append(Submission(worker, job_id, extranonce1, extranonce2, ntime, nonce,
                                           accepted=code is None, reason=reason or None,
                                           difficulty=self.difficulty))
        if code is not None:
            return None, stratum.error_value(code, reason)
        return True, None


@dataclass
class MinerJob:
    job: Job
    difficulty: float  # the miner's difficulty when the job arrived
    received_at: float  # time.monotonic() when the job arrived


@dataclass
class ScriptedMiner:
    """A Stratum miner for tests: every step is explicit so tests can also misbehave on purpose."""

    host: str
    port: int
    local_host: str | None = None
    """Connect from this address (127.0.0.2 …: another IP for the proxy's per-IP rules)."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    extranonce1: bytes = b""
    extranonce2_size: int = 0
    session_id: str | None = None
    difficulty: float = 1.0
    jobs: list[MinerJob] = field(default_factory=list)  # the live jobs: a clean job drops the others
    received: list[MinerJob] = field(default_factory=list)  # every job, in the order it arrived
    notifications: list[stratum.Notification | stratum.Request] = field(default_factory=list)
    _codec: stratum.StratumCodec = field(default_factory=lambda: stratum.StratumCodec(1 << 20))
    _pending: dict[int, asyncio.Future[stratum.Response]] = field(default_factory=dict)
    _next_id: int = 1
    _reader_task: asyncio.Task[None] | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    new_job: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> ScriptedMiner:
        local = (self.local_host, 0) if self.local_host else None
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, local_addr=local)
        self._reader_task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.reader is not None
        try:
            while data := await self.reader.read(65536):
                for event in self._codec.feed(data):
                    self._on_event(event)
        except ConnectionError:
            pass
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("closed"))

    def _on_event(self, event: stratum.Event) -> None:
        if isinstance(event, stratum.Response):
            future = self._pending.pop(event.id, None) if isinstance(event.id, int) else None
            if future is not None and not future.done():
                future.set_result(event)
            return
        if isinstance(event, stratum.ProtocolError):
            return
        self.notifications.append(event)
        if event.method == "mining.set_difficulty":
            self.difficulty = float(event.params[0])
        elif event.method == "mining.notify":
            mjob = MinerJob(Job.from_notify(event.params), self.difficulty, time.monotonic())
            if mjob.job.clean_jobs:
                self.jobs.clear()
            self.jobs.append(mjob)
            self.received.append(mjob)
            self.new_job.set()
        elif event.method == "mining.set_extranonce":
            self.extranonce1 = bytes.fromhex(event.params[0])
            self.extranonce2_size = int(event.params[1])

    async def call(self, method: str, params: list[Any], timeout: float = 10.0) -> stratum.Response:
        assert self.writer is not None
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[stratum.Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self.writer.write(stratum.encode(stratum.Request(request_id, method, params)))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)

    async def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def subscribe(self, resume: str | None = None, extranonce: bool = True) -> stratum.Response:
        params: list[Any] = ["qscrypt-test/1.0"] + ([resume] if resume else [])
        response = await self.call("mining.subscribe", params)
        if response.error is None:
            self.session_id = response.result[0][0][1]
            self.extranonce1 = bytes.fromhex(response.result[1])
            self.extranonce2_size = response.result[2]
            if extranonce:
                await self.call("mining.extranonce.subscribe", [])
        return response

    async def authorize(self, user: str, password: str = "x") -> stratum.Response:
        return await self.call("mining.authorize", [user, password])

    async def wait_job(self, timeout: float = 10.0) -> MinerJob:
        """The newest job, once there is one."""
        return await self._job_when(lambda: self.jobs[-1] if self.jobs else None, timeout)

    async def next_job(self, after: int, clean: bool | None = None, timeout: float = 10.0) -> MinerJob:
        """The first job received after the first `after` ones in `received` (with `clean`, the first
        whose clean_jobs flag is `clean`)."""
        def pick() -> MinerJob | None:
            later = (m for m in self.received[after:] if clean is None or m.job.clean_jobs == clean)
            return next(later, None)

        return await self._job_when(pick, timeout)

    async def _job_when(self, pick: Callable[[], MinerJob | None], timeout: float) -> MinerJob:
        deadline = asyncio.get_running_loop().time() + timeout
        while (found := pick()) is None:
            self.new_job.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError("no job received")
            await asyncio.wait_for(self.new_job.wait(), remaining)
        return found

    def find_share(self, mjob: MinerJob, extranonce2: bytes, start_nonce: int = 0,
                   target: int | None = None, want_valid: bool = True, limit: int = 200_000) -> int:
        """A nonce whose hash is (or, with want_valid=False, is not) at or below the target."""
        goal = share_difficulty_to_target(mjob.difficulty) if target is None else target
        job = mjob.job
        root = job.merkle_root(self.extranonce1, extranonce2)
        prefix = job.header_prefix(root, job.ntime)
        for nonce in range(start_nonce, start_nonce + limit):
            ok = hash_to_int(scrypt_pow(prefix + struct.pack("<I", nonce))) <= goal
            if ok == want_valid:
                return nonce
        raise AssertionError("no suitable nonce found")

    async def submit(self, worker: str, mjob: MinerJob, extranonce2: bytes, nonce: int,
                     ntime: int | None = None, job_id: str | None = None) -> stratum.Response:
        return await self.call("mining.submit", [
            worker, job_id or mjob.job.job_id, extranonce2.hex(),
            f"{mjob.job.ntime if ntime is None else ntime:08x}", f"{nonce:08x}"])

    async def mine_one(self, worker: str, extranonce2: bytes | None = None) -> stratum.Response:
        mjob = await self.wait_job()
        en2 = extranonce2 if extranonce2 is not None else bytes(self.extranonce2_size)
        nonce = await asyncio.to_thread(self.find_share, mjob, en2)
        return await self.submit(worker, mjob, en2, nonce)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task


def make_certificate(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (its own CA), made with openssl."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key
