"""The built-in miner: a Stratum client like cpuminer around one hashing engine.

One session per connection: a reader task feeds the sans-I/O `mining.stratum_client.StratumClient`
(the same client the proxy's pool upstream uses) and a mining task
searches work units in an executor thread, cancelling the running search whenever the work changes.
Searches are cut into chunks of about `chunk_seconds` so shares go out soon after they are found
and ntime keeps up with the clock. The connection is retried with exponential backoff; on `stop`
the miner finishes the running chunk (bounded by the engine's cancel latency), submits what it
found, waits up to `flush_timeout_s` for the pool's answers and returns its statistics: under a
second in all, as a Qubic client ending its idle phase expects (`qscrypt qubic`).
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import structlog

from backends.devices import EngineOptions, create_engine
from backends.engine import CancelToken, Engine, RateMeter, SearchResult, SearchWork, search_async
from backends.work import Extranonce2Counter, WorkCursor, WorkTemplate
from mining.stratum_client import (
    ClientEvent,
    DifficultyChanged,
    Failure,
    Notice,
    Reconnect,
    Send,
    StratumClient,
    SubmitResult,
    Work,
)
from mining.target import HASHES_PER_SHARE_DIFF1

log = structlog.get_logger(__name__)

USER_AGENT = "qscrypt-miner/0.1.0"


@dataclass(frozen=True, slots=True)
class MinerConfig:
    url: str  # stratum+tcp://host:port
    user: str
    password: str = "x"
    engine: EngineOptions = field(default_factory=EngineOptions)
    chunk_seconds: float = 1.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    connect_timeout_s: float = 10.0
    idle_timeout_s: float = 300.0  # no line from the pool for this long: reconnect
    flush_timeout_s: float = 0.5  # on stop: a Qubic client wants its idle command gone within a second
    report_interval_s: float = 30.0  # how often the hashrate line is printed
    user_agent: str = USER_AGENT


@dataclass
class MinerStats:
    accepted: int = 0
    rejected: int = 0
    stale: int = 0  # found after the pool replaced the job: not submitted
    hashes: int = 0
    accepted_difficulty: float = 0.0
    connections: int = 0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at


@dataclass(frozen=True, slots=True)
class Share:
    template: WorkTemplate
    extranonce2: bytes
    ntime: int
    nonce: int


def parse_url(url: str) -> tuple[str, int]:
    """stratum+tcp://host:port (or host:port) -> (host, port)."""
    parts = urlsplit(url if "://" in url else f"stratum+tcp://{url}")
    if parts.scheme not in ("stratum+tcp", "stratum", "tcp"):
        raise ValueError(f"unsupported scheme in {url!r}: use stratum+tcp://HOST:PORT")
    if not parts.hostname or parts.port is None:
        raise ValueError(f"{url!r} needs a host and a port")
    return parts.hostname, parts.port


class _Session:
    """One connection: handshake, follow the pool, hash, submit."""

    def __init__(self, miner: "_Miner", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.miner = miner
        self.reader = reader
        self.writer = writer
        config = miner.config
        self.client = StratumClient(config.user, config.password, config.user_agent)
        self.submits: dict[int, Share] = {}  # request id -> share awaiting the pool's answer
        self.cursor: WorkCursor | None = None
        self.counter: Extranonce2Counter | None = None
        self.work_changed = asyncio.Event()
        self.settled = asyncio.Event()  # no submit waits for an answer
        self.cancel = CancelToken()
        self.stopping = False
        self.connected = True
        self.outcome: Reconnect | None = None

    async def run(self) -> Reconnect | None:
        stop = self.miner.stop
        self._handle(self.client.start(time.monotonic()))
        reading = asyncio.create_task(self._read())
        mining = asyncio.create_task(self._mine())
        stopped = asyncio.create_task(stop.wait())
        ticking = asyncio.create_task(self._tick())
        try:
            await asyncio.wait({reading, mining, stopped, ticking}, return_when=asyncio.FIRST_COMPLETED)
            self.stopping = True
            self.cancel.cancel()
            self.work_changed.set()
            await mining  # returns within the engine's cancel latency, submitting what it found
            if stop.is_set() and not reading.done():
                await self._flush(reading)
        finally:
            for task in (reading, mining, stopped, ticking):
                task.cancel()
            await asyncio.gather(reading, mining, stopped, ticking, return_exceptions=True)
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        return self.outcome

    async def _tick(self) -> None:
        """Time-outs of the handshake and of unanswered shares; returns when the session must end."""
        while True:
            await asyncio.sleep(1.0)
            if not self._handle(self.client.poll(time.monotonic())):
                return

    async def _flush(self, reading: asyncio.Task[None]) -> None:
        if self.client.pending_submits:
            settled = asyncio.create_task(self.settled.wait())
            await asyncio.wait({settled, reading}, timeout=self.miner.config.flush_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
            settled.cancel()
        if self.client.pending_submits:
            log.warning(f"leaving with {self.client.pending_submits} share(s) unanswered")

    async def _read(self) -> None:
        idle = self.miner.config.idle_timeout_s
        try:
            while True:
                async with asyncio.timeout(idle):
                    data = await self.reader.read(65536)
                if not data:
                    log.warning("pool closed the connection")
                    return
                if not self._handle(self.client.feed(data, time.monotonic())):
                    return
                await self.writer.drain()
        except TimeoutError:
            log.warning(f"nothing from the pool for {idle:g} s")
        except OSError as error:
            log.warning(f"connection lost: {error}")
        finally:
            self.connected = False

    def _handle(self, events: list[ClientEvent]) -> bool:
        """Act on client events; False when the session must end."""
        keep_going = True
        for event in events:
            if isinstance(event, Send):
                self.writer.write(event.data)
            elif isinstance(event, Work):
                self._new_work(WorkTemplate(event.job, event.extranonce1, event.extranonce2_size,
                                            event.difficulty, event.target, event.received_at))
            elif isinstance(event, DifficultyChanged):
                # The pool wants harder (or easier) shares now: hash the same job for its new target.
                if self.cursor is not None:
                    old = self.cursor.template
                    self._new_work(WorkTemplate(old.job, old.extranonce1, old.extranonce2_size,
                                                event.difficulty, event.target, old.received_at))
            elif isinstance(event, SubmitResult):
                share = self.submits.pop(event.request_id, None)
                if share is not None:
                    self.miner.share_result(share, event)
                if not self.client.pending_submits:
                    self.settled.set()
            elif isinstance(event, Reconnect):
                log.info(f"pool asks to reconnect to {event.host or 'same host'}:{event.port or 'same port'} "
                         f"in {event.wait_s:g} s")
                self.outcome = event
                keep_going = False
            elif isinstance(event, Notice):
                log.info(event.text)
            elif isinstance(event, Failure):
                log.warning(event.reason)
                keep_going = False
        return keep_going

    def _new_work(self, template: WorkTemplate) -> None:
        if self.counter is None or self.counter.size != template.extranonce2_size:
            self.counter = Extranonce2Counter(template.extranonce2_size)
        self.cursor = WorkCursor(template, self.counter)
        self.cancel.cancel()
        self.work_changed.set()
        log.debug("new work", job=template.job.job_id, difficulty=template.difficulty)

    async def _mine(self) -> None:
        miner = self.miner
        while not self.stopping:
            cursor = self.cursor
            unit = None if cursor is None else cursor.next_unit(miner.chunk_nonces(), time.monotonic())
            if unit is None:
                if cursor is not None:
                    log.warning("extranonce2 space exhausted; waiting for a new job")
                self.work_changed.clear()
                await self.work_changed.wait()
                continue
            self.cancel = CancelToken()
            if not miner.hashing_logged:
                # What an operator (or a Qubic phase test) reads for "hashing N s after start".
                miner.hashing_logged = True
                log.info("miner.hashing", engine=miner.engine.name, device=miner.engine.device)
            work = SearchWork(unit.header_prefix(), unit.nonce_start, unit.nonce_count, unit.template.target)
            result = await search_async(miner.engine, work, self.cancel)
            miner.searched(result)
            if not self.connected:
                return  # shares of a lost connection would go to a dead socket; the next session redoes work
            for nonce in result.found:
                template = unit.template
                if self.client.is_live(template.job.job_id, template.extranonce1):
                    self.settled.clear()
                    request_id, send = self.client.submit(template.job.job_id, unit.extranonce2, unit.ntime,
                                                          nonce, time.monotonic())
                    self.submits[request_id] = Share(template, unit.extranonce2, unit.ntime, nonce)
                    self.writer.write(send.data)
                else:
                    miner.stats.stale += 1
                    log.info(f"share for job {unit.template.job.job_id} found after the job was replaced: "
                             "dropped")
            await self.writer.drain()


class _Miner:
    def __init__(self, config: MinerConfig, engine: Engine, stop: asyncio.Event) -> None:
        self.config = config
        self.engine = engine
        self.stop = stop
        self.stats = MinerStats()
        self.meter = RateMeter()
        self.hashing_logged = False
        self._reported_at = time.monotonic()

    def chunk_nonces(self) -> int:
        rate = self.meter.rate or self.engine.hashrate or 2000.0
        return max(256, int(rate * self.config.chunk_seconds))

    def searched(self, result: SearchResult) -> None:
        self.stats.hashes += result.hashes_done
        if result.hashes_done:
            self.meter.add(result)
        now = time.monotonic()
        if now - self._reported_at >= self.config.report_interval_s:
            self._reported_at = now
            log.info(f"{self.engine.name} ({self.engine.device}): {self.meter.rate / 1000:.2f} khash/s")

    def share_result(self, share: Share, result: SubmitResult) -> None:
        stats = self.stats
        if result.accepted:
            stats.accepted += 1
            stats.accepted_difficulty += share.template.difficulty
        else:
            stats.rejected += 1
        total = stats.accepted + stats.rejected
        line = (f"accepted: {stats.accepted}/{total} ({100.0 * stats.accepted / total:.2f}%), "
                f"{self.meter.rate / 1000:.2f} khash/s {'(yay!!!)' if result.accepted else '(booooo)'}")
        if result.accepted:
            log.info(line)
        else:
            log.warning(f"{line} reason: {result.reason}")

    async def run(self) -> MinerStats:
        host, port = parse_url(self.config.url)
        delay = self.config.reconnect_min_s
        while not self.stop.is_set():
            outcome: Reconnect | None = None
            try:
                async with asyncio.timeout(self.config.connect_timeout_s):
                    reader, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as error:
                log.warning(f"cannot connect to {host}:{port}: {error or type(error).__name__}")
            else:
                self.stats.connections += 1
                log.info(f"connected to {host}:{port}")
                session = _Session(self, reader, writer)
                try:
                    outcome = await session.run()
                except (OSError, TimeoutError) as error:
                    log.warning(f"connection to {host}:{port} lost: {error or type(error).__name__}")
                if session.client.authorized:
                    delay = self.config.reconnect_min_s
            if self.stop.is_set():
                break
            if outcome is not None:
                host, port, wait = outcome.host or host, outcome.port or port, outcome.wait_s
            else:
                wait, delay = delay, min(delay * 2, self.config.reconnect_max_s)
                log.info(f"retrying in {wait:g} s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.stop.wait()
        rate = self.stats.hashes / self.stats.elapsed_s if self.stats.elapsed_s > 0 else 0.0
        pool_rate = self.stats.accepted_difficulty * HASHES_PER_SHARE_DIFF1 / max(self.stats.elapsed_s, 1e-9)
        log.info(f"miner stopped: {self.stats.accepted} accepted, {self.stats.rejected} rejected, "
                 f"{rate / 1000:.2f} khash/s hashed, {pool_rate / 1000:.2f} khash/s by accepted shares")
        return self.stats


async def run_miner(config: MinerConfig, stop: asyncio.Event, engine: Engine | None = None) -> MinerStats:
    """Mine until `stop` is set; `engine` overrides the one `config.engine` describes (and is not closed)."""
    parse_url(config.url)  # a bad URL fails now, not after the engine's self-benchmark
    own = engine is None
    if engine is None:
        engine = await asyncio.to_thread(create_engine, config.engine)
    try:
        return await _Miner(config, engine, stop).run()
    finally:
        if own:
            await asyncio.to_thread(engine.close)
