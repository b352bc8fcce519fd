"""A Stratum client session to an upstream pool: subscribe, authorize, follow its jobs, submit.

The connection loop reconnects with backoff; a pool that sends no new job for
`no_job_timeout_s` is treated as dead, so failover also covers pools that go silent.
"""

import asyncio
import contextlib
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from mining import stratum
from mining.job import Job
from mining.target import share_difficulty_to_target
from proxy.upstream.base import SubmitOutcome, Upstream, UpstreamState, UpstreamWork
from qscrypt.config import FailoverConfig, UpstreamConfig
from qscrypt.log import get_logger

_CLIENT_NAME = "qscrypt/0.1.0"
_REQUEST_TIMEOUT_S = 15.0
_MAX_LINE = 1 << 20  # pools send big notifies (long merkle branches); still bounded


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
        self.difficulty = 1.0
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.accepted = 0
        self.rejected = 0
        self._log = get_logger(upstream=self.name)
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        self._reconnect_to: tuple[str, int, float] | None = None
        self._closing = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"upstream-{self.name}")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
                error = "connection closed"
            except (TimeoutError, OSError, UpstreamError, ssl.SSLError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self._fail_pending(error)
            self._set_state(UpstreamState.DOWN, error)
            self._log.warning("upstream.down", error=error)
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

    async def _session(self) -> None:
        self._set_state(UpstreamState.CONNECTING)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self._ssl_context(), limit=_MAX_LINE),
            timeout=_REQUEST_TIMEOUT_S,
        )
        self._writer = writer
        codec = stratum.StratumCodec(max_line=_MAX_LINE)
        reading = asyncio.create_task(self._read_loop(reader, codec))
        watchdog = asyncio.create_task(self._watch_jobs())
        try:
            await self._handshake()
            await asyncio.wait({reading, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reading, watchdog):
                task.cancel()
            with contextlib.suppress(Exception):
                writer.close()
            self._writer = None
            self.work = None
            # Let both finish; asyncio.wait raises none of their errors, and a cancellation of this
            # task still propagates (suppressing BaseException here once swallowed it, and the
            # reconnect loop then outlived the event loop's shutdown).
            await asyncio.wait({reading, watchdog})
            if reading.done() and not reading.cancelled() and reading.exception():
                raise UpstreamError(str(reading.exception()))

    async def _handshake(self) -> None:
        result = await self._call("mining.subscribe", [_CLIENT_NAME])
        if not isinstance(result, list) or len(result) < 3:
            raise UpstreamError(f"bad subscribe answer: {result!r}")
        try:
            self.extranonce1 = bytes.fromhex(result[1])
            self.extranonce2_size = int(result[2])
        except (TypeError, ValueError):
            raise UpstreamError(f"bad subscribe answer: {result!r}") from None
        with contextlib.suppress(UpstreamError):
            await self._call("mining.extranonce.subscribe", [])
        ok = await self._call("mining.authorize", [self.config.user, self.config.password])
        if ok is not True:
            raise UpstreamError(f"pool refused worker {self.config.user}")
        self._log.info("upstream.authorized", extranonce1=self.extranonce1.hex(),
                       extranonce2_size=self.extranonce2_size)

    async def _call(self, method: str, params: list[Any]) -> Any:
        if self._writer is None:
            raise UpstreamError("not connected")
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(stratum.encode(stratum.Request(request_id, method, params)))
        try:
            return await asyncio.wait_for(future, timeout=_REQUEST_TIMEOUT_S)
        finally:
            self._pending.pop(request_id, None)

    def _fail_pending(self, error: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(UpstreamError(error))
        self._pending.clear()

    async def _read_loop(self, reader: asyncio.StreamReader, codec: stratum.StratumCodec) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            for event in codec.feed(data):
                self._on_event(event)

    async def _watch_jobs(self) -> None:
        timeout = self.failover.no_job_timeout_s
        while True:
            await asyncio.sleep(min(timeout / 4, 5.0))
            if self.state is UpstreamState.READY and time.monotonic() - self.last_job_at > timeout:
                self._log.warning("upstream.silent", seconds=timeout)
                return

    def _on_event(self, event: stratum.Event) -> None:
        if isinstance(event, stratum.Response):
            future = self._pending.get(event.id) if isinstance(event.id, int) else None
            if future is not None and not future.done():
                if event.error is not None:
                    future.set_exception(UpstreamError(_error_text(event.error)))
                else:
                    future.set_result(event.result)
            return
        if isinstance(event, stratum.ProtocolError):
            self._log.warning("upstream.bad_line", error=event.message)
            return
        method, params = event.method, event.params
        if method == "mining.notify":
            self._on_notify(params)
        elif method == "mining.set_difficulty":
            self.difficulty = float(params[0])
        elif method == "mining.set_extranonce":
            self.extranonce1 = bytes.fromhex(params[0])
            self.extranonce2_size = int(params[1])
            self._log.info("upstream.set_extranonce", extranonce1=params[0], size=params[1])
        elif method == "client.reconnect":
            self._on_reconnect(params)
        elif method == "client.show_message":
            self._log.info("upstream.message", message=str(params[:1]))
        if isinstance(event, stratum.Request) and self._writer is not None:
            if method == "client.get_version":
                self._writer.write(stratum.encode(stratum.Response(event.id, _CLIENT_NAME, None)))

    def _on_notify(self, params: list[Any]) -> None:
        try:
            job = Job.from_notify(params)
        except ValueError as exc:
            self._log.warning("upstream.bad_notify", error=str(exc))
            return
        if self.extranonce2_size <= 0:
            self._log.warning("upstream.no_extranonce_space")
            return
        work = UpstreamWork(job, self.extranonce1, self.extranonce2_size,
                            share_difficulty_to_target(self.difficulty))
        self._publish_job(work)

    def _on_reconnect(self, params: list[Any]) -> None:
        host = params[0] if params and isinstance(params[0], str) and params[0] else self.host
        port = self.port
        if len(params) > 1:
            with contextlib.suppress(TypeError, ValueError):
                port = int(params[1])
        wait = 0.0
        if len(params) > 2:
            with contextlib.suppress(TypeError, ValueError):
                wait = min(float(params[2]), 300.0)
        self._log.info("upstream.reconnect_requested", host=host, port=port, wait=wait)
        self._reconnect_to = (host, port, wait)
        self.drop("client.reconnect")

    async def submit(self, job_id: str, extranonce2: bytes, ntime: int, nonce: int,
                     header: bytes, worker: str) -> SubmitOutcome:
        started = time.monotonic()
        params = [self.config.user, job_id, extranonce2.hex(), f"{ntime:08x}", f"{nonce:08x}"]
        try:
            result = await self._call("mining.submit", params)
        except (TimeoutError, UpstreamError) as exc:
            self.rejected += 1
            return SubmitOutcome(False, str(exc) or "timeout", time.monotonic() - started)
        accepted = result is True
        if accepted:
            self.accepted += 1
        else:
            self.rejected += 1
        return SubmitOutcome(accepted, None if accepted else f"pool answered {result!r}",
                             time.monotonic() - started)


def _error_text(error: Any) -> str:
    if isinstance(error, list) and len(error) >= 2:
        return f"{error[0]}: {error[1]}"
    if isinstance(error, dict):
        return f"{error.get('code')}: {error.get('message')}"
    return str(error)
