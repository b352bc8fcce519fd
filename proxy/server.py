"""The asyncio shell around miner sessions: listeners, limits, timeouts; shares go to the hashers.

Each connection is an `asyncio.Protocol` (cheaper than streams at ten thousand miners). Bytes go
through the codec into the sans-I/O `MinerSession`; its actions come back here to be written,
hashed by the helper processes, counted, or turned into a close with a reason.
"""

import asyncio
import contextlib
import itertools
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

from mining import stratum
from proxy import validate
from proxy.accounting import Accounting
from proxy.admission import Admission, BanPolicy
from proxy.bans import BanList
from proxy.config import LimitsConfig, ListenConfig, VardiffConfig
from proxy.dispatch import Dispatcher
from proxy.hashers import HasherPool
from proxy.metrics import ProxyMetrics
from proxy.proxy_protocol import (
    V2_MAX_BYTES,
    HeaderParser,
    ProxyProtocolError,
    TrustedSources,
    looks_like_header,
)
from proxy.session import Action, Check, Close, MinerSession, Rejected, Send
from proxy.token_bucket import TokenBucket
from proxy.upstream.base import SubmitOutcome
from proxy.vardiff import Vardiff
from qscrypt.log import get_logger

_MAX_IN_FLIGHT = 256
"""Shares of one connection waiting for their hash; beyond this the miner is flooding."""
_MINER_LOG_RATE, _MINER_LOG_BURST = 20.0, 200
"""Miner connect/authorize/disconnect lines per second (and burst) before they are only counted."""
_ANSWER_WAIT_S = 5.0
"""The longest a close waits for a miner's shares in flight to be answered."""


class HeaderReader:
    """Reads the PROXY header off an accepted socket before anything else does (the supervisor of
    a multi-process proxy, or the TLS port, where the bytes behind the header are a ClientHello):
    peeks, and takes only the header's bytes, so the Stratum line or ClientHello behind it stays in
    the socket for whoever reads it next. Callbacks, no task: one reader per new connection.

    `done(sock, ip, via)` gets the miner's address (the header's, or the peer's when the header
    names none) and the balancer's (None where it is the peer itself); `refused(sock, peer,
    reason)` a header that is bad, missing where required, late, or sent by an untrusted source
    (on the TLS port only: on a plain port the first Stratum bytes show it, see
    `MinerConnection.data_received`). Either owns the socket afterwards."""

    __slots__ = ("_done", "_parser", "_peer", "_refused", "_sock", "_timer", "_trusted")

    def __init__(self, sock: socket.socket, peer: str, trusted: bool, required: bool, timeout: float,
                 done: Callable[[socket.socket, str, str | None], None],
                 refused: Callable[[socket.socket, str, str], None]) -> None:
        self._sock = sock
        self._peer = peer
        self._trusted = trusted
        self._parser = HeaderParser(required)
        self._done = done
        self._refused = refused
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(timeout, self._late, timeout)
        loop.add_reader(sock.fileno(), self._readable)

    def _finish(self) -> None:
        self._timer.cancel()
        asyncio.get_running_loop().remove_reader(self._sock.fileno())

    def _late(self, timeout: float) -> None:
        self._finish()
        what = "no complete PROXY header" if self._trusted else "nothing sent"
        self._refused(self._sock, self._peer, f"{what} within {timeout:g} s")

    def _readable(self) -> None:
        try:
            data = self._sock.recv(V2_MAX_BYTES, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError as exc:
            data, error = b"", str(exc)
        else:
            error = ""
        try:
            if not data:
                raise ProxyProtocolError(error or ("closed inside its PROXY header" if self._parser.taken
                                                   else "closed before sending a PROXY header"))
            if not self._trusted:
                self._finish()
                if looks_like_header(data):
                    raise ProxyProtocolError("PROXY protocol header from an untrusted source")
                self._done(self._sock, self._peer, None)
                return
            taken = self._parser.feed(data)
            if taken:
                self._sock.recv(taken)  # exactly the header's bytes, already in the kernel's buffer
        except ProxyProtocolError as exc:
            self._finish()
            self._refused(self._sock, self._peer, str(exc))
            return
        if self._parser.done:
            self._finish()
            header = self._parser.header
            source = header.source if header is not None else None
            if source is None:  # LOCAL, UNKNOWN, AF_UNIX, or none where optional: the balancer's own
                self._done(self._sock, self._peer, None)
            else:
                self._done(self._sock, source[0], self._peer)


class MinerConnection(asyncio.Protocol):
    # One per miner: slots, not a __dict__ each.
    __slots__ = ("_flush_due", "_header", "_header_timer", "_out", "_unread", "bucket", "close_reason",
                 "closed", "closing", "codec", "connected_at", "greeted", "in_flight", "ip",
                 "last_activity", "protocol_errors", "server", "session", "transport", "via")

    def __init__(self, server: "StratumServer", ip: str | None = None, via: str | None = None) -> None:
        """`ip`: the miner's address where the socket's peer is not it (a PROXY header said so,
        `via` the balancer that relayed it)."""
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session: MinerSession
        self.codec = stratum.StratumCodec(server.limits.max_line_bytes)
        self.ip = ip or ""
        self.via = via
        self._header: HeaderParser | None = None
        """While a trusted balancer's PROXY header is being read (plain port): the miner is
        admitted, counted and logged only once its address is known."""
        self._header_timer: asyncio.TimerHandle | None = None
        self.connected_at = time.monotonic()
        self.last_activity = self.connected_at
        self.protocol_errors = 0
        self.in_flight = 0
        self.closed = False
        self.close_reason = ""
        self.closing: Close | None = None
        """A close that waits for the shares in flight to be answered."""
        self.greeted = False
        self.bucket: TokenBucket
        self._out: list[bytes] = []
        self._flush_due = False
        """In the server's list to flush at the end of this loop iteration."""
        self._unread: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        if not self.ip:
            peer = transport.get_extra_info("peername")
            self.ip = peer[0] if peer else "?"
            server = self.server
            if server.proxy_sources and server.proxy_sources.trusts(self.ip):
                self._header = HeaderParser(server.proxy_required)
                self._header_timer = asyncio.get_running_loop().call_later(
                    server.proxy_timeout_s, self._header_late)
                return
        self._admit()

    def _admit(self) -> None:
        transport = self.transport
        assert transport is not None
        now = time.monotonic()
        limits = self.server.limits
        self.bucket = TokenBucket(limits.messages_per_second, limits.message_burst, now)
        refusal = self.server.admit(self)
        conn_id = next(self.server.ids)
        self.session = MinerSession(conn_id, self.ip, self.server.router, self.server.new_vardiff())
        if refusal is not None:
            self.close(refusal, registered=False)
            return
        self.server.attach(self)
        transport.set_write_buffer_limits(high=self.server.limits.write_buffer_bytes)  # see pause_writing
        local = transport.get_extra_info("sockname")
        self.server.log_miner("miner.connected", conn=conn_id, ip=self.ip,
                              port=local[1] if isinstance(local, tuple) else None,
                              **({"via": self.via} if self.via else {}))

    def _header_late(self) -> None:
        self._refuse_header(f"no complete PROXY header within {self.server.proxy_timeout_s:g} s")

    def _refuse_header(self, reason: str) -> None:
        """A trusted source's connection whose header failed: never admitted, so nothing to undo."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._header = None
        if self._header_timer is not None:
            self._header_timer.cancel()
        self.server.refused_header(self.ip, reason, tls=False)
        assert self.transport is not None
        self.transport.close()

    def _read_header(self, data: bytes) -> bytes | None:
        """Feed the header; the bytes behind it once it is complete (None: not yet, or refused)."""
        assert self._header is not None
        try:
            taken = self._header.feed(data)
        except ProxyProtocolError as exc:
            self._refuse_header(str(exc))
            return None
        if not self._header.done:
            return None
        header, self._header = self._header.header, None
        if self._header_timer is not None:
            self._header_timer.cancel()
        if header is not None and header.source is not None:
            self.via, self.ip = self.ip, header.source[0]
        self._admit()
        return None if self.closed else data[taken:]

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self._header is not None:
            rest = self._read_header(data)
            if not rest:
                return
            data = rest
        if not self.greeted:
            self.greeted = True
            if data[:1] == b"\x16":
                # A TLS ClientHello on the plain port (BFGMiner tries TLS first on stratum+tcp and
                # falls back only once the server closes): close at once, not after a timeout.
                self.close("TLS handshake on the plain Stratum port", notify=False)
                return
            if looks_like_header(data):
                # Only a trusted balancer's header is read (before this connection was made): from
                # anyone else it would be a miner claiming another's address.
                self.close("PROXY protocol header from an untrusted source", notify=False)
                return
        now = time.monotonic()
        self.last_activity = now
        if self._unread or (self.session.authorized and self.server.hashers_behind()):
            # Backpressure: leave the bytes unparsed and stop reading until the hashers catch up.
            # Only miners past the handshake are held: a new miner still gets subscribed.
            self._unread.append(data)
            self.server.hold(self)
            return
        if not self.session.subscribed and not self.server.router.has_work:
            # No upstream has work yet (the proxy is starting, or every upstream is down): a miner
            # refused now waits out its own retry pause (cpuminer: 30 s), so its subscribe waits
            # here for the first work instead, up to the handshake timeout.
            self._unread.append(data)
            self.server.wait_for_work(self)
            return
        self._consume(data, now)

    def resume(self) -> None:
        """Parse what arrived while held (the transport reads again)."""
        data = b"".join(self._unread)
        self._unread.clear()
        if data and not self.closed:
            self._consume(data, time.monotonic())

    def _consume(self, data: bytes, now: float) -> None:
        events = self.codec.feed(data)
        # One read is charged at once: one that holds more messages than the miner has allowance
        # for is a flood, whichever of them came first.
        if events and not self.bucket.take(now, len(events)) and now >= self.session.rate_grace_until:
            self.close("message rate limit exceeded")
            return
        for event in events:
            if self.closed:
                return
            if isinstance(event, stratum.ProtocolError):
                self.protocol_errors += 1
                self.server.metrics.protocol_errors.inc()
                self.server.metrics.refused.labels(event.reason).inc()
                if self.protocol_errors > self.server.limits.max_protocol_errors:
                    self.close("too many malformed messages")
                    return
            self.deliver(self.session.handle(event, now))
            if type(event) is stratum.Request and event.method != "mining.submit":
                # A subscribe or authorize may have set the router going (another upstream session).
                self.server.dispatch.after_session()
            if type(event) is stratum.Request and event.method == "mining.authorize":
                user = event.params[0]
                self.server.log_miner("miner.authorize", conn=self.session.conn_id, ip=self.ip,
                                      worker=user[:64], accepted=user in self.session.workers,
                                      agent=self.session.user_agent[:64], profile=self.session.profile,
                                      difficulty=self.session.difficulty)

    def deliver(self, actions: list[Action]) -> None:
        for action in actions:
            if self.closed:
                return
            if isinstance(action, Send):
                self.write(action.data)
            elif isinstance(action, Check):
                self.server.check_share(self, action)
            elif isinstance(action, Rejected):
                self.server.refused(self, action)
            elif isinstance(action, Close):
                if action.after_answers:
                    self.close_after_answers(action)
                else:
                    self.close(action.reason)

    def close_after_answers(self, close: Close) -> None:
        """Stop reading; once every share in flight is answered, send the last words and close."""
        self.closing = close
        if self.transport is not None:
            self.transport.pause_reading()
        if self.in_flight == 0:
            self._finish_closing()
        else:
            asyncio.get_running_loop().call_later(_ANSWER_WAIT_S, self._finish_closing)

    def _finish_closing(self) -> None:
        close = self.closing
        if close is None or self.closed:
            return
        self.closing = None
        if close.last_words:
            self.write(close.last_words)
        self.close(close.reason, notify=not close.last_words)

    def write(self, data: bytes) -> None:
        """Buffered to the end of this loop iteration: replies to pipelined shares leave in one
        send() instead of one each."""
        if self.closed:
            return
        if not self._flush_due:
            self._flush_due = True
            self.server.flush_soon(self)
        self._out.append(data)

    def send_now(self, data: bytes) -> None:
        """Sent at once, after anything buffered: a fan-out's slice writes as it goes."""
        if not self.closed:
            self._out.append(data)
            self.flush()

    def flush(self) -> None:
        self._flush_due = False
        if self.closed or not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        assert self.transport is not None
        self.transport.write(data)

    def pause_writing(self) -> None:
        """The transport's buffer has passed `write_buffer_bytes`, its high-water mark: a miner that
        does not read its socket would make us buffer without bound. Closed on the loop's next turn,
        not inside the write that got here. (The transport says so itself, so a fan-out or a reply
        asks nothing more than the write per miner.)"""
        asyncio.get_running_loop().call_soon(self.close, "slow reader: write buffer full", False)

    def close(self, reason: str, notify: bool = True, registered: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.server.metrics.disconnects.labels(reason.split(":")[0]).inc()
        assert self.transport is not None
        if self._out and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))  # replies already due go before the reason
        self._out.clear()
        if notify and not self.transport.is_closing():
            with contextlib.suppress(Exception):
                self.transport.write(stratum.notify("client.show_message", [f"qscrypt: {reason}"]))
        self.server.log_miner("miner.closed", conn=self.session.conn_id if registered else None,
                              ip=self.ip, reason=reason, workers=sorted(self.session.workers)[:4])
        if registered:
            self.server.detach(self)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header is not None:  # gone before its header was complete: never admitted
            self._refuse_header("closed inside its PROXY header" if self._header.taken
                                else "closed before sending a PROXY header")
            return
        if not self.closed:
            self.closed = True
            self.close_reason = "peer closed" if exc is None else f"connection lost: {exc}"
            self.server.log_miner("miner.closed", conn=self.session.conn_id, ip=self.ip,
                                  reason=self.close_reason, workers=sorted(self.session.workers)[:4])
            self.server.detach(self)
        if self.server.on_gone is not None:
            self.server.on_gone(self.ip)


class StratumServer:
    def __init__(self, dispatch: Dispatcher, limits: LimitsConfig, vardiff: VardiffConfig,
                 accounting: Accounting, metrics: ProxyMetrics, hasher: HasherPool,
                 listen: ListenConfig | None = None) -> None:
        self.dispatch = dispatch
        listen = listen or ListenConfig()
        self.proxy_sources = TrustedSources(listen.proxy_protocol_from)
        self.proxy_required = listen.proxy_protocol == "required"
        self.proxy_timeout_s = listen.proxy_protocol_timeout_s
        self._raw_listeners: list[socket.socket] = []
        self.router = dispatch.router
        self.limits = limits
        self.vardiff = vardiff
        self.accounting = accounting
        self.metrics = metrics
        self.hasher = hasher
        self._accepted_shares = metrics.shares.labels("accepted", "")
        self._accepted_uncounted = 0
        self.ids = itertools.count(1)
        self.log = get_logger(component="stratum")
        self._log_bucket = TokenBucket(_MINER_LOG_RATE, _MINER_LOG_BURST, time.monotonic())
        self._log_suppressed = 0
        self.connections: set[MinerConnection] = set()
        self._unflushed: list[MinerConnection] = []
        self._held: dict[MinerConnection, None] = {}  # insertion order: oldest first
        self._waiting: dict[MinerConnection, None] = {}
        """Miners whose subscribe waits for an upstream with work."""
        self.holds = 0
        """Times a miner's input was left unread for the hashers to catch up."""
        hasher.on_room = self._release_held
        self.admission = Admission(limits)
        self.bans = BanPolicy(limits)
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self.share_consumers: list[Callable[[validate.JudgedShare], None]] = []
        """Told every share's verdict after the proxy's own consumers (see `_publish`)."""
        self.forward_consumers: list[Callable[[validate.JudgedShare, SubmitOutcome], None]] = []
        """Told the upstream's verdict on every share forwarded to it."""
        # A worker of a multi-process proxy reports these to its supervisor (proxy.supervisor).
        self.on_gone: Callable[[str], None] | None = None
        """Told the IP of every connection that has ended, once each."""
        self.on_banned: Callable[[str, float], None] | None = None

    def log_miner(self, event: str, **fields: object) -> None:
        """A miner's connect, authorize or disconnect, at info: rate-limited, so a flood of
        connections cannot flood the log (what was left out is counted in the next line)."""
        if not self._log_bucket.take(time.monotonic()):
            self._log_suppressed += 1
            return
        if self._log_suppressed:
            fields["suppressed"] = self._log_suppressed
            self._log_suppressed = 0
        self.log.info(event, **fields)

    # -- backpressure -------------------------------------------------------------------------------

    def hashers_behind(self) -> bool:
        """Miners' input is left unread while the hashers are full: a burst is parsed as they free
        up, a little at a time, not all at once, so the loop keeps answering and feeding them
        between two reads, and memory stays bounded."""
        return self.hasher.full

    def hold(self, conn: MinerConnection) -> None:
        if conn not in self._held and conn.transport is not None:
            conn.transport.pause_reading()
            self._held[conn] = None
            self.holds += 1

    def wait_for_work(self, conn: MinerConnection) -> None:
        if conn not in self._waiting and conn.transport is not None:
            conn.transport.pause_reading()
            self._waiting[conn] = None

    def work_available(self) -> None:
        """An upstream has work again: the miners waiting to subscribe go on, oldest first."""
        waiting, self._waiting = self._waiting, {}
        for conn in waiting:
            if conn.closed or conn.transport is None:
                continue
            conn.transport.resume_reading()
            conn.resume()

    def _release_held(self) -> None:
        """The hashers have room: let held miners in, oldest first, until they fill it again."""
        while self._held and not self.hashers_behind():
            conn = next(iter(self._held))
            del self._held[conn]
            if conn.closed or conn.transport is None:
                continue
            conn.transport.resume_reading()
            conn.resume()

    def flush_soon(self, conn: MinerConnection) -> None:
        if not self._unflushed:
            asyncio.get_running_loop().call_soon(self._flush)
        self._unflushed.append(conn)

    def _flush(self) -> None:
        unflushed, self._unflushed = self._unflushed, []
        for conn in unflushed:
            conn.flush()

    def new_vardiff(self) -> Vardiff:
        v = self.vardiff
        # Half the message allowance for shares: a miner also subscribes, authorizes, suggests.
        return Vardiff(v.initial, v.minimum, v.maximum, v.target_interval_s, v.retarget_every_s, v.variance,
                       max_share_rate=self.limits.messages_per_second / 2)

    # -- listeners ------------------------------------------------------------------------------

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        loop = asyncio.get_running_loop()
        if self.proxy_sources and tls is not None:
            return self._listen_raw(host, port, tls)
        server = await loop.create_server(lambda: MinerConnection(self), host, port, ssl=tls,
                                          backlog=4096, reuse_address=True)
        self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="stratum-sweeper")
        bound = server.sockets[0].getsockname()[1]
        self.log.info("stratum.listening", host=host, port=bound, tls=tls is not None)
        return int(bound)

    def _listen_raw(self, host: str, port: int, tls: ssl.SSLContext) -> int:
        """The TLS port's listener with PROXY protocol on: it accepts by itself, so that the
        header can be read off the socket before the TLS handshake. (The plain port reads it in
        `MinerConnection`: the bytes behind it go to the codec anyway.)"""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=4096, reuse_port=False)
        sock.setblocking(False)
        self._raw_listeners.append(sock)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept_raw, sock, tls)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="stratum-sweeper")
        bound = int(sock.getsockname()[1])
        self.log.info("stratum.listening", host=host, port=bound, tls=True,
                      proxy_protocol_from=[str(n) for n in self.proxy_sources.networks])
        return bound

    def _accept_raw(self, listener: socket.socket, tls: ssl.SSLContext) -> None:
        for _ in range(256):  # a bounded batch: the loop has miners to serve too
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: the backlog waits
                self.log.warning("stratum.accept_failed", error=str(exc))
                return
            ip = peer[0] if peer else "?"
            HeaderReader(conn, ip, self.proxy_sources.trusts(ip), self.proxy_required, self.proxy_timeout_s,
                         lambda sock, miner, via: self._spawn(self._adopt(sock, tls, miner, via)),
                         self._header_refused)

    def _header_refused(self, sock: socket.socket, peer: str, reason: str) -> None:
        sock.close()
        self.refused_header(peer, reason, tls=True)

    def refused_header(self, peer: str, reason: str, tls: bool) -> None:
        """A connection refused for its PROXY header (or the lack of one): counted and logged."""
        self.metrics.disconnects.labels("PROXY protocol").inc()
        self.log_miner("miner.proxy_header_refused", ip=peer, reason=reason, tls=tls)

    def adopt(self, sock: socket.socket, tls: ssl.SSLContext | None, ip: str | None = None,
              via: str | None = None) -> None:
        """Serve a connection another process accepted (the supervisor of a multi-process proxy),
        with the miner's address when a PROXY header named it there."""
        if ip is None:
            ip = "?"
            with contextlib.suppress(OSError):
                ip = sock.getpeername()[0]
        self._spawn(self._adopt(sock, tls, ip, via))
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="stratum-sweeper")

    async def _adopt(self, sock: socket.socket, tls: ssl.SSLContext | None, ip: str,
                     via: str | None = None) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: MinerConnection(self, ip, via), sock, ssl=tls)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            # No protocol was made (a failed TLS handshake, a peer already gone): its slot ends here.
            self.log.info("miner.handshake_failed", ip=ip, error=str(exc))
            sock.close()
            if self.on_gone is not None:
                self.on_gone(ip)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for sock in self._raw_listeners:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        self._raw_listeners.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.close("proxy shutting down")
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    # -- admission and limits -------------------------------------------------------------------

    def admit(self, conn: MinerConnection) -> str | None:
        return self.admission.refusal(conn.ip, time.monotonic())

    def attach(self, conn: MinerConnection) -> None:
        self.connections.add(conn)
        self.admission.admitted(conn.ip)
        self.dispatch.register(conn)
        self.metrics.miners.set(len(self.connections))

    def detach(self, conn: MinerConnection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self.admission.released(conn.ip)
        self.dispatch.unregister(conn)
        self.metrics.miners.set(len(self.connections))

    async def _sweep(self) -> None:
        # A pass over ten thousand connections costs a few milliseconds of the loop: as often as
        # the shortest timeout needs (a sixth of it), at most every 5 s, at least every 0.2 s.
        every = max(0.2, min(5.0, min(self.limits.handshake_timeout_s, self.limits.idle_timeout_s) / 6))
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for conn in list(self.connections):
                session = conn.session
                if not (session.subscribed and session.authorized) and \
                        now - conn.connected_at > self.limits.handshake_timeout_s:
                    if conn in self._waiting:
                        del self._waiting[conn]
                        conn.close("no upstream work available, try again later")
                    else:
                        conn.close("did not subscribe and authorize in time")
                elif now - conn.last_activity > self.limits.idle_timeout_s:
                    conn.close("idle timeout")

    # -- shares ---------------------------------------------------------------------------------

    def check_share(self, conn: MinerConnection, check: Check) -> None:
        if conn.in_flight >= _MAX_IN_FLIGHT:
            conn.close("too many shares in flight")
            return
        conn.in_flight += 1
        self.hasher.hash(check.candidate.header, self._judge, (conn, check))

    def _judge(self, pending: tuple[MinerConnection, Check], pow_hash: bytes) -> None:
        conn, check = pending
        conn.in_flight -= 1
        candidate = check.candidate
        now = time.monotonic()
        verdict, reply = conn.session.share_hashed(check.request_id, candidate, pow_hash, now)
        job = candidate.job
        found = validate.block_hash(candidate, pow_hash) if verdict.meets_upstream else None
        judged = validate.JudgedShare(conn.ip, candidate.worker, job.upstream, job.id, candidate.difficulty,
                                      verdict, now, candidate, job.coin, found)
        self._publish(judged, conn, reply)

    def refused(self, conn: MinerConnection, refusal: Rejected) -> None:
        """A share the session refused before its hash (its error reply is already on the way)."""
        verdict = validate.Verdict(False, 0.0, False, refusal.rejection)
        self._publish(validate.JudgedShare(conn.ip, refusal.worker, refusal.upstream, refusal.job_id,
                                           refusal.difficulty, verdict, time.monotonic()), conn, [])

    def _publish(self, judged: validate.JudgedShare, conn: MinerConnection, reply: list[Action]) -> None:
        """The verdict goes out once, in this order: upstream first (a block must never wait behind
        anything), the accounting (the share's row is journaled before the miner can hear
        "accepted": a crash after the reply cannot lose it), the reply, then the counting (metrics,
        the ban policy) and whoever else subscribed (`share_consumers`)."""
        if judged.verdict.meets_upstream:
            self._spawn(self._forward(judged))
        self.accounting.record(judged)
        if reply and not conn.closed:
            conn.deliver(reply)
            if conn.closing is not None and conn.in_flight == 0:
                conn._finish_closing()
        self._count(judged)
        for consumer in self.share_consumers:
            consumer(judged)

    def _count(self, judged: validate.JudgedShare) -> None:
        rejection = judged.verdict.rejection
        if rejection is None:
            if not self._accepted_uncounted:
                asyncio.get_running_loop().call_soon(self._count_accepted)
            self._accepted_uncounted += 1
            valid = True
        else:
            stale = rejection.reason == validate.STALE
            self.metrics.shares.labels("stale" if stale else "rejected", rejection.reason).inc()
            if stale:  # a share the miner could not help: no mark against its IP
                return
            valid = False
        if self.bans.share(judged.ip, valid) and \
                not self.admission.is_banned(judged.ip, judged.now):  # not again for shares in flight
            self._ban(judged.ip)

    def _count_accepted(self) -> None:
        """Accepted shares reach the counter once per loop iteration, not one by one: with several
        workers every increment is a locked write to a shared file (1.2 µs each, measured)."""
        self._accepted_shares.inc(self._accepted_uncounted)
        self._accepted_uncounted = 0

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, judged: validate.JudgedShare) -> None:
        candidate = judged.candidate
        upstream = self.dispatch.upstream(judged.upstream)
        if candidate is None or upstream is None:
            return
        work = candidate.job.work
        outcome = await upstream.submit(work.job.job_id, candidate.extranonce2, candidate.ntime,
                                        candidate.nonce, candidate.header, candidate.worker,
                                        extranonce1=work.extranonce1)
        result = "accepted" if outcome.accepted else "rejected"
        self.metrics.upstream_submits.labels(upstream.name, result).inc()
        self.metrics.upstream_latency.labels(upstream.name).observe(outcome.latency_s)
        if outcome.block_hash is not None:
            self.metrics.blocks.labels(upstream.coin, outcome.status or result).inc()
        if not outcome.accepted:
            self.log.warning("upstream.share_rejected", upstream=upstream.name, reason=outcome.reason,
                             worker=candidate.worker, job=work.job.job_id,
                             latency_ms=round(outcome.latency_s * 1000, 1))
        else:
            self.log.debug("upstream.share_accepted", upstream=upstream.name, worker=candidate.worker,
                           job=work.job.job_id, latency_ms=round(outcome.latency_s * 1000, 1))
        for consumer in self.forward_consumers:
            consumer(judged, outcome)

    def _ban(self, ip: str) -> None:
        self.metrics.bans.inc()
        self.log.warning("miner.banned", ip=ip, seconds=self.limits.ban_seconds)
        self.ban(ip, self.limits.ban_seconds)
        if self.on_banned is not None:
            self.on_banned(ip, self.limits.ban_seconds)

    def apply_operator_bans(self, bans: BanList) -> None:
        """Refuse the operator's banned IPs and close the connections of banned IPs and workers."""
        self.admission.operator_banned = bans.ips
        for conn in list(self.connections):
            if bans.refuses_ip(conn.ip):
                conn.close("IP banned by the pool operator")
            elif any(bans.refuses_worker(w) for w in conn.session.workers):
                conn.close("worker banned by the pool operator")

    def ban(self, ip: str, seconds: float) -> None:
        """Refuse `ip` for `seconds` and close its connections (also when another worker banned it)."""
        self.admission.ban(ip, seconds, time.monotonic())
        self.bans.forget(ip)
        for conn in [c for c in self.connections if c.ip == ip]:
            conn.close("IP temporarily banned for invalid shares")
