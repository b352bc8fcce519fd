"""Real Stratum peers for tests: a minimal upstream pool server and a miner, both speaking the wire
protocol through `mining.stratum` and hashing real nonces with `mining.hashing`.

Jobs come from real Litecoin Core regtest getblocktemplate answers (the shared vectors), so the
coinbase, merkle branch and header are those of blocks the daemon accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mining import stratum
from mining.hashing import hash_to_int, scrypt_pow
from mining.job import Job
from mining.target import share_difficulty_to_target

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"


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


@dataclass
class Submission:
    worker: str
    job_id: str
    extranonce1: bytes
    extranonce2: bytes
    ntime: int
    nonce: int
    accepted: bool


class PoolServer:
    """A small real Stratum pool: subscribe, authorize, notify, and submit checked with scrypt."""

    def __init__(self, extranonce2_size: int = 4, difficulty: float = 0.001,
                 job_interval_s: float = 1.0) -> None:
        self.extranonce2_size = extranonce2_size
        self.job_interval_s = job_interval_s
        self._ticker: asyncio.Task[None] | None = None
        self.difficulty = difficulty
        self.jobs: dict[str, Job] = {}
        self.current: Job | None = None
        self.submissions: list[Submission] = []
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._clients: dict[asyncio.StreamWriter, bytes] = {}
        # Each pool numbers its sessions from its own base, as real pools' extranonce1s differ.
        self._next_extranonce1 = int.from_bytes(os.urandom(2), "big") << 16
        self._job_seq = 0
        self._templates = regtest_jobs()
        self.silent = False
        self.authorized_users: list[str] = []

    async def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", port, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.current is None:
            self.new_job(clean=True, broadcast=False)
        self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        # Pools send fresh work (new mempool transactions) every so often: a silent one is dead.
        while True:
            await asyncio.sleep(self.job_interval_s)
            if self._clients:
                self.new_job(clean=False)

    async def stop(self) -> None:
        """Kill the pool: stop listening and drop every connection."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._clients):
            writer.close()
        self._clients.clear()

    @property
    def connections(self) -> int:
        return len(self._clients)

    def new_job(self, clean: bool, broadcast: bool = True) -> Job:
        self._job_seq += 1
        base = self._templates[self._job_seq % len(self._templates)]
        # A fresh job id and a moving ntime make every job distinct, as a pool's are.
        job = Job(f"j{self._job_seq}", base.prevhash, base.coinb1, base.coinb2, base.merkle_branch,
                  base.version, base.bits, base.ntime + self._job_seq, clean)
        self.jobs[job.job_id] = job
        self.current = job
        if broadcast and not self.silent:
            self.broadcast(stratum.notify("mining.notify", job.notify_params()))
        return job

    def broadcast(self, data: bytes) -> None:
        for writer in list(self._clients):
            writer.write(data)

    def set_extranonce(self, writer: asyncio.StreamWriter, extranonce1: bytes) -> None:
        self._clients[writer] = extranonce1
        writer.write(stratum.notify("mining.set_extranonce", [extranonce1.hex(), self.extranonce2_size]))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        codec = stratum.StratumCodec(max_line=1 << 20)
        self._next_extranonce1 += 1
        self._clients[writer] = struct.pack(">I", self._next_extranonce1)
        try:
            while data := await reader.read(65536):
                for event in codec.feed(data):
                    if isinstance(event, stratum.Request):
                        self._handle(writer, event)
        except ConnectionError:
            pass
        finally:
            self._clients.pop(writer, None)
            with contextlib.suppress(Exception):
                writer.close()

    def _handle(self, writer: asyncio.StreamWriter, request: stratum.Request) -> None:
        def reply(result: Any, error: Any = None) -> None:
            writer.write(stratum.encode(stratum.Response(request.id, result, error)))

        if request.method == "mining.subscribe":
            reply([[["mining.notify", "s1"]], self._clients[writer].hex(), self.extranonce2_size])
        elif request.method == "mining.extranonce.subscribe":
            reply(True)
        elif request.method == "mining.authorize":
            self.authorized_users.append(request.params[0])
            reply(True)
            writer.write(stratum.notify("mining.set_difficulty", [self.difficulty]))
            if self.current is not None:
                writer.write(stratum.notify("mining.notify", self.current.notify_params()))
        elif request.method == "mining.submit":
            reply(*self._submit(writer, request.params))
        else:
            reply(None, stratum.error_value(stratum.METHOD_NOT_FOUND, "unknown"))

    def _submit(self, writer: asyncio.StreamWriter, params: list[Any]) -> tuple[Any, Any]:
        worker, job_id, en2_hex, ntime_hex, nonce_hex = params[:5]
        job = self.jobs.get(job_id)
        if job is None:
            return None, stratum.error_value(stratum.JOB_NOT_FOUND, "job not found")
        extranonce1 = self._clients[writer]
        extranonce2 = bytes.fromhex(en2_hex)
        if len(extranonce2) != self.extranonce2_size:
            return None, stratum.error_value(stratum.OTHER, "bad extranonce2 size")
        ntime, nonce = int(ntime_hex, 16), int(nonce_hex, 16)
        header = job.header(extranonce1, extranonce2, ntime, nonce)
        ok = hash_to_int(scrypt_pow(header)) <= share_difficulty_to_target(self.difficulty)
        self.submissions.append(Submission(worker, job_id, extranonce1, extranonce2, ntime, nonce, ok))
        if not ok:
            return None, stratum.error_value(stratum.LOW_DIFFICULTY, "low difficulty share")
        return True, None


@dataclass
class MinerJob:
    job: Job
    difficulty: float


@dataclass
class ScriptedMiner:
    """A Stratum miner for tests: every step is explicit so tests can also misbehave on purpose."""

    host: str
    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    extranonce1: bytes = b""
    extranonce2_size: int = 0
    session_id: str | None = None
    difficulty: float = 1.0
    jobs: list[MinerJob] = field(default_factory=list)
    notifications: list[stratum.Notification | stratum.Request] = field(default_factory=list)
    _codec: stratum.StratumCodec = field(default_factory=lambda: stratum.StratumCodec(1 << 20))
    _pending: dict[int, asyncio.Future[stratum.Response]] = field(default_factory=dict)
    _next_id: int = 1
    _reader_task: asyncio.Task[None] | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    new_job: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> ScriptedMiner:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
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
            job = Job.from_notify(event.params)
            if job.clean_jobs:
                self.jobs.clear()
            self.jobs.append(MinerJob(job, self.difficulty))
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
        return await asyncio.wait_for(future, timeout)

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
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.jobs:
            self.new_job.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError("no job received")
            await asyncio.wait_for(self.new_job.wait(), remaining)
        return self.jobs[-1]

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
