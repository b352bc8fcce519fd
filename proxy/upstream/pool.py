"""A session to an upstream pool: the asyncio shell around `mining.stratum_client.StratumClient`.

The shell owns the socket, the reconnect loop with backoff and the clock; the protocol — when a
session is ready, which extranonce and difficulty a job belongs to — is the client's. A pool that
sends no new job for `no_job_timeout_s` is treated as dead, so failover also covers pools that go
silent.
"""

import asyncio
import contextlib
import ssl
import time
from urllib.parse import urlsplit

from mining import stratum_client as sc
from proxy.config import FailoverConfig, UpstreamConfig
from proxy.upstream.base import SubmitOutcome, Upstream, UpstreamState, UpstreamWork
from qscrypt.log import get_logger

CLIENT_NAME = "qscrypt/0.1.0"
_CONNECT_TIMEOUT_S = 15.0
_TICK_S = 1.0
"""How often the client is polled for time-outs and the pool for silence."""


class UpstreamError(Exception):
    pass


def parse_stratum_url(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("stratum+tcp", "stratum+ssl", "stratum+tls") or not parts.hostname:
        raise ValueError(f"not a stratum URL: {url}")
    if parts.port is None:
        raise ValueError(f"stratum URL needs a port: {url}")
    return parts.hostname, parts.port, parts.scheme != "stratum+tcp"


class PoolUpstream(Upstream):
    def __init__(self, config: UpstreamConfig, failover: FailoverConfig, name: str | None = None) -> None:
        super().__init__(name or config.name, config.coin, config.priority)
        self.config = config
        self.failover = failover
        self.host, self.port, self.tls = parse_stratum_url(config.url)
        self.difficulty = sc.DEFAULT_DIFFICULTY
        self.accepted = 0
        self.rejected = 0
        self._log = get_logger(upstream=self.name)
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._client: sc.StratumClient | None = None
        self._submits: dict[int, asyncio.Future[sc.SubmitResult]] = {}
        self._failure: str | None = None
        self._reconnect_to: tuple[str, int, float] | None = None
        self._closing = False

    @property
    def extranonce1(self) -> bytes:
        """The current session's extranonce1 (empty between sessions)."""
        client = self._client
        return client.extranonce1 or b"" if client is not None else b""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"upstream-{self.name}")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.work = None
        self._set_state(UpstreamState.DOWN)

    def drop(self, reason: str) -> None:
        """Close the current connection (the loop reconnects after backoff)."""
        if self._writer is not None:
            self._log.warning("upstream.drop", reason=reason)
            self.last_error = reason
            self._writer.close()

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.config.tls_ca) if self.config.tls_ca else None)
        if not self.config.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _run(self) -> None:
        backoff = self.failover.retry_backoff_s
        while not self._closing:
            started = time.monotonic()
            try:
                await self._session()
                error = self._failure or "connection closed"
            except (TimeoutError, OSError, UpstreamError, ssl.SSLError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self._end_session(error)
            self._log.warning("upstream.down", error=error, host=self.host, port=self.port)
            if self._reconnect_to is not None:
                host, port, wait = self._reconnect_to
                self._reconnect_to = None
                self.host, self.port = host, port
                await asyncio.sleep(wait)
                continue
            if time.monotonic() - started > 60:
                backoff = self.failover.retry_backoff_s  # it worked for a while: start over
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.failover.retry_backoff_max_s)

    def _end_session(self, error: str) -> None:
        """Everything of the session goes with it: its client (extranonce, jobs), its work, and
        every submit still waiting for an answer."""
        self._client = None
        self._writer = None
        self.work = None
        for future in self._submits.values():
            if not future.done():
                future.set_exception(UpstreamError(error))
        self._submits.clear()
        self._set_state(UpstreamState.DOWN, error)

    async def _session(self) -> None:
        self._failure = None
        self._set_state(UpstreamState.CONNECTING)
        self._log.info("upstream.connecting", host=self.host, port=self.port, tls=self.tls)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self._ssl_context(), limit=sc.MAX_LINE),
            timeout=_CONNECT_TIMEOUT_S,
        )
        self._writer = writer
        self._client = client = sc.StratumClient(self.config.user, self.config.password, CLIENT_NAME)
        reading = asyncio.create_task(self._read_loop(reader, client))
        ticking = asyncio.create_task(self._tick(client))
        try:
            self._handle(client.start(time.monotonic()))
            await asyncio.wait({reading, ticking}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reading, ticking):
                task.cancel()
            with contextlib.suppress(Exception):
                writer.close()
            # Let both finish; asyncio.wait raises none of their errors, and a cancellation of this
            # task still propagates (suppressing BaseException here once swallowed it, and the
            # reconnect loop then outlived the event loop's shutdown).
            await asyncio.wait({reading, ticking})
            if reading.done() and not reading.cancelled() and reading.exception():
                raise UpstreamError(str(reading.exception()))

    async def _read_loop(self, reader: asyncio.StreamReader, client: sc.StratumClient) -> None:
        while self._failure is None:
            data = await reader.read(65536)
            if not data:
                return
            self._handle(client.feed(data, time.monotonic()))

    async def _tick(self, client: sc.StratumClient) -> None:
        timeout = self.failover.no_job_timeout_s
        while self._failure is None:
            await asyncio.sleep(_TICK_S)
            self._handle(client.poll(time.monotonic()))
            if self.state is UpstreamState.READY and time.monotonic() - self.last_job_at > timeout:
                self._failure = f"no new job for {timeout:g} s"
                self._log.warning("upstream.silent", seconds=timeout)

    def _handle(self, events: list[sc.ClientEvent]) -> None:
        for event in events:
            if isinstance(event, sc.Send):
                if self._writer is not None:
                    self._writer.write(event.data)
            elif isinstance(event, sc.Work):
                self._on_work(event)
            elif isinstance(event, sc.SubmitResult):
                future = self._submits.pop(event.request_id, None)
                if future is not None and not future.done():
                    future.set_result(event)
            elif isinstance(event, sc.DifficultyChanged):
                self.difficulty = event.difficulty
                self._log.debug("upstream.difficulty", difficulty=event.difficulty)
            elif isinstance(event, sc.Reconnect):
                host = event.host or self.host
                port = event.port or self.port
                self._log.info("upstream.reconnect_requested", host=host, port=port, wait=event.wait_s)
                self._reconnect_to = (host, port, event.wait_s)
                self._failure = "client.reconnect"
                if self._writer is not None:
                    self._writer.close()
            elif isinstance(event, sc.Notice):
                self._log.info("upstream.notice", message=event.text[:200])
            elif isinstance(event, sc.Failure):
                self._failure = event.reason
                self._log.warning("upstream.failure", reason=event.reason)
                if self._writer is not None:
                    self._writer.close()

    def _on_work(self, work: sc.Work) -> None:
        first = self.work is None or self.work.extranonce1 != work.extranonce1 or \
            self.work.extranonce2_size != work.extranonce2_size
        self.difficulty = work.difficulty
        if first:
            self._log.info("upstream.ready", extranonce1=work.extranonce1.hex(),
                           extranonce2_size=work.extranonce2_size, difficulty=work.difficulty,
                           job=work.job.job_id)
        self._publish_job(UpstreamWork(work.job, work.extranonce1, work.extranonce2_size, work.target))

    async def submit(self, job_id: str, extranonce2: bytes, ntime: int, nonce: int,
                     header: bytes, worker: str, extranonce1: bytes | None = None) -> SubmitOutcome:
        started = time.monotonic()
        client, writer = self._client, self._writer
        if client is None or writer is None or \
                (extranonce1 is not None and not client.is_live(job_id, extranonce1)):
            # The session the share was built for is gone (or its job replaced): the pool would
            # check it against another extranonce1 and call it low difficulty at best.
            self.rejected += 1
            return SubmitOutcome(False, "not submitted: the job's pool session has ended", 0.0)
        request_id, send = client.submit(job_id, extranonce2, ntime, nonce, started)
        future: asyncio.Future[sc.SubmitResult] = asyncio.get_running_loop().create_future()
        self._submits[request_id] = future
        writer.write(send.data)
        try:
            result = await future
        except UpstreamError as exc:
            self.rejected += 1
            return SubmitOutcome(False, str(exc), time.monotonic() - started)
        if result.accepted:
            self.accepted += 1
        else:
            self.rejected += 1
        return SubmitOutcome(result.accepted, result.reason, result.latency_s)
