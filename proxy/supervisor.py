"""Several event loops behind one port: a supervisor accepts miners and hands each connection to
the worker process holding the fewest.

One asyncio loop is one core: writing a job to 10,000 sockets is ~90 ms of it here. With
`proxy.workers = N` the supervisor owns the listening sockets, accepts, applies the limits that
must hold across all workers (total connections, per IP, bans) and passes the socket to a worker
over a Unix socket (SCM_RIGHTS). Each worker is a whole proxy — its own upstream sessions, router,
hashers and accounting — so a job reaches N sets of miners in parallel. Accepting here rather than
in every worker with SO_REUSEPORT costs one sendmsg per connection and buys exact global limits
and load-aware placement (the kernel's hash would ignore load and spread a NATed farm blindly).

Workers' upstream sessions are their own, so miners of two workers never share an extranonce1:
pools give every session its own, and the daemon upstream draws 4 random bytes per instance.
So a miner resuming its session id must land on the worker that holds its reserved prefix: on the
plain port the supervisor waits for a new miner's first line (up to `_FIRST_LINE_WAIT_S`), reads
it without taking it (MSG_PEEK), and sends a `mining.subscribe` that resumes an id back to the
worker written in it (`proxy.extranonce.session_worker`). A TLS miner's first line is ciphertext
here: it goes to the least-loaded worker and resumes only if that is its own.

A worker busy when a burst of miners connects lets its control socket's queue fill (its send
buffer holds a few hundred sockets' messages): the miners behind wait in its backlog, in order,
until the queue has room (none is dropped for it).

Control messages are single JSON objects on a SOCK_SEQPACKET pair (boundaries kept, fds attached):
supervisor → worker `{"conn": "tcp"|"tls", "ip": …, "via": …}` + the socket (`ip` the miner's,
`via` the load balancer's where a PROXY header named the miner), `{"ban": ip, "seconds": s}`;
worker → supervisor `{"ready": true}` (an upstream has work), `{"closed": ip}`, `{"ban": ip, "seconds": s}`,
`{"top": [[worker, hashrate, difficulty], …]}` (its top workers, every report).
"""

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import prometheus_client
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from mining import stratum
from proxy.admission import Admission
from proxy.config import ProxyConfig
from proxy.extranonce import host_tag, session_worker
from proxy.metrics import TopWorkerGauges, WorkerFigure, top_workers
from proxy.proxy_protocol import TrustedSources
from proxy.server import HeaderReader
from qscrypt.log import get_logger

CONTROL_FD_ENV = "QSCRYPT_CONTROL_FD"
WORKER_ENV = "QSCRYPT_WORKER"
"""`INDEX/COUNT` of a worker process."""
DSN_ENV = "QSCRYPT_PROXY_DSN"
"""The database the supervisor resolved, handed to workers outside their command line."""
_MESSAGE_MAX = 65536
"""Room for the largest control message: 20 top workers with 128-character, JSON-escaped names."""
_RESTART_DELAY_S = 1.0
_FIRST_LINE_WAIT_S = 1.0
"""How long a new plain-TCP miner may stay silent before it is placed without its first line
(Stratum clients speak first, at once; a silent one meets the worker's handshake timeout)."""
_PEEK_BYTES = 1024


def _encode(message: dict[str, object]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


class WorkerLink:
    """The worker's end of the control socket: sockets in, closes and bans out."""

    def __init__(self, fd: int, adopt: Callable[[socket.socket, str, str | None, str | None], None],
                 banned_elsewhere: Callable[[str, float], None]) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(False)
        self._adopt = adopt
        self._banned_elsewhere = banned_elsewhere
        self._outbox: list[bytes] = []
        self.lost = asyncio.Event()
        """Set when the supervisor is gone: the worker should stop."""

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, _MESSAGE_MAX, 4)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
                self.lost.set()
                return
            try:
                message = json.loads(data)
            except ValueError:
                message = {}
            if "conn" in message and fds:
                ip, via = message.get("ip"), message.get("via")
                self._adopt(socket.socket(fileno=fds[0]), str(message["conn"]),
                            str(ip) if ip else None, str(via) if via else None)
                fds = fds[1:]
            elif "ban" in message:
                self._banned_elsewhere(str(message["ban"]), float(message.get("seconds", 0)))
            for fd in fds:  # anything unexpected must not leak
                os.close(fd)

    def ready(self) -> None:
        """An upstream has work: the supervisor may hand this worker miners."""
        self._send({"ready": True})

    def closed(self, ip: str) -> None:
        self._send({"closed": ip})

    def banned(self, ip: str, seconds: float) -> None:
        self._send({"ban": ip, "seconds": seconds})

    def top_workers(self, top: list[WorkerFigure]) -> None:
        self._send({"top": [list(figure) for figure in top]})

    def _send(self, message: dict[str, object]) -> None:
        data = _encode(message)
        if not self._outbox:
            try:
                self.sock.send(data)
                return
            except BlockingIOError:
                asyncio.get_running_loop().add_writer(self.sock.fileno(), self._drain)
            except OSError:
                return  # the supervisor is gone; `lost` stops this worker
        self._outbox.append(data)

    def _drain(self) -> None:
        while self._outbox:
            try:
                self.sock.send(self._outbox[0])
            except BlockingIOError:
                return
            except OSError:
                self._outbox.clear()
                break
            self._outbox.pop(0)
        asyncio.get_running_loop().remove_writer(self.sock.fileno())


@dataclass
class _Worker:
    index: int
    control: socket.socket | None = None
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    ips: Counter[str] = field(default_factory=Counter)
    """Connections this worker holds, by IP (those in its backlog too)."""
    backlog: deque[tuple[socket.socket, str, bytes]] = field(default_factory=deque)
    """Miners' sockets waiting for room in the control socket's queue, with their IP and message."""

    @property
    def connections(self) -> int:
        return self.ips.total()

    @property
    def up(self) -> bool:
        return self.ready and self.control is not None and self.process is not None and \
            self.process.returncode is None


class Supervisor:
    """Runs `config.workers` proxy processes and feeds them connections until `stop`."""

    def __init__(self, config: ProxyConfig, worker_command: list[str], dsn: str | None) -> None:
        self.config = config
        self.worker_command = worker_command
        self.dsn = dsn
        self.workers = [_Worker(i) for i in range(config.workers)]
        self.admission = Admission(config.limits)
        self.proxy_sources = TrustedSources(config.listen.proxy_protocol_from)
        self.tag = host_tag(config.host)
        """This host's tag: a resumed session id without it was made by another host."""
        self._vias: dict[socket.socket, str] = {}
        """Accepted sockets whose miner a PROXY header named, with the balancer that relayed it."""
        self._headers: dict[socket.socket, str] = {}
        """Accepted sockets whose PROXY header (or first bytes) is being read, with their port's kind."""
        self.ports: dict[str, int] = {}
        # Its own figures, served beside the workers' (the supervisor is no multiprocess writer).
        self.registry = registry = prometheus_client.CollectorRegistry()
        self.refused = prometheus_client.Counter(
            "qscrypt_connections_refused_total", "Connections refused at accept", ["reason"],
            registry=registry)
        self.restarts = prometheus_client.Counter(
            "qscrypt_worker_restarts_total", "Worker processes started again", registry=registry)
        self.workers_ready = prometheus_client.Gauge(
            "qscrypt_workers_ready", "Workers taking miners", registry=registry)
        self.top = TopWorkerGauges(registry)
        self._tops: dict[int, list[WorkerFigure]] = {}
        """Each worker process's latest top workers, ranked together for the metrics."""
        self._listeners: list[socket.socket] = []
        self._silent: dict[socket.socket, asyncio.TimerHandle] = {}
        """Accepted plain-TCP miners whose first line has not arrived yet, with their deadline."""
        self._metrics_dir = ""
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.log = get_logger(component="supervisor")

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        listen = self.config.listen
        self.ports["tcp"] = self._listen(listen.host, listen.port, "tcp")
        if listen.tls_port is not None:
            self.ports["tls"] = self._listen(listen.host, listen.tls_port, "tls")
        self._metrics_dir = tempfile.mkdtemp(prefix="qscrypt-metrics-")
        if self.config.metrics_port:
            MultiProcessCollector(self.registry, path=self._metrics_dir)  # type: ignore[no-untyped-call]
            prometheus_client.start_http_server(self.config.metrics_port, registry=self.registry)
        for worker in self.workers:
            await self._spawn(worker)
        self.log.info("supervisor.started", workers=len(self.workers), **self.ports)

    def _listen(self, host: str, port: int, kind: str) -> int:
        sock = socket.create_server((host, port), backlog=4096, reuse_port=False)
        sock.setblocking(False)
        self._listeners.append(sock)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock, kind)
        return int(sock.getsockname()[1])

    async def _spawn(self, worker: _Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        env = dict(os.environ)
        env[CONTROL_FD_ENV] = str(theirs.fileno())
        env[WORKER_ENV] = f"{worker.index}/{len(self.workers)}"
        env["PROMETHEUS_MULTIPROC_DIR"] = self._metrics_dir
        if self.dsn:
            env[DSN_ENV] = self.dsn
        # Its own session: a terminal's Ctrl-C reaches the supervisor alone, which stops its workers
        # in order (uvloop's spawn resets signals to their defaults, so a worker still importing
        # would otherwise die of it).
        worker.process = await asyncio.create_subprocess_exec(
            *self.worker_command, env=env, pass_fds=(theirs.fileno(),), start_new_session=True)
        theirs.close()
        worker.control = ours
        worker.ready = False
        worker.ips.clear()
        asyncio.get_running_loop().add_reader(ours.fileno(), self._from_worker, worker)
        task = asyncio.get_running_loop().create_task(self._watch(worker), name=f"worker-{worker.index}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, worker: _Worker) -> None:
        assert worker.process is not None
        code = await worker.process.wait()
        self._forget(worker)
        if self._closing:
            return
        self.log.error("supervisor.worker_died", worker=worker.index, exit_code=code)
        with contextlib.suppress(OSError):
            mark_process_dead(worker.process.pid, self._metrics_dir)  # type: ignore[no-untyped-call]
        await asyncio.sleep(_RESTART_DELAY_S)
        if not self._closing:
            self.restarts.inc()
            await self._spawn(worker)

    def _forget(self, worker: _Worker) -> None:
        """A worker's connections died with it: they no longer count against the limits."""
        if worker.control is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(worker.control.fileno())
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_writer(worker.control.fileno())
            worker.control.close()
            worker.control = None
        for conn, _, _ in worker.backlog:  # never handed over: they reconnect (counted in `ips`)
            conn.close()
        worker.backlog.clear()
        for ip, count in worker.ips.items():
            self.admission.released(ip, count)
        worker.ips.clear()
        worker.ready = False
        self._count_ready()
        if self._tops.pop(worker.index, None) is not None:
            self._show_top()

    def _show_top(self) -> None:
        self.top.show(top_workers(itertools.chain.from_iterable(self._tops.values())))

    def _count_ready(self) -> None:
        self.workers_ready.set(sum(w.up for w in self.workers))

    async def close(self) -> None:
        self._closing = True
        loop = asyncio.get_running_loop()
        for sock in self._listeners:
            loop.remove_reader(sock.fileno())
            sock.close()
        for conn, deadline in self._silent.items():
            deadline.cancel()
            loop.remove_reader(conn.fileno())
            conn.close()
        self._silent.clear()
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                await asyncio.wait_for(worker.process.wait(), 15)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
            self._forget(worker)
        for task in list(self._tasks):
            task.cancel()
        shutil.rmtree(self._metrics_dir, ignore_errors=True)

    # -- connections ----------------------------------------------------------------------------

    def _accept(self, listener: socket.socket, kind: str) -> None:
        for _ in range(256):  # a bounded batch: the loop also serves the workers' messages
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log and let the backlog wait
                self.log.warning("supervisor.accept_failed", error=str(exc))
                return
            ip = peer[0] if peer else "?"
            if self.proxy_sources and (kind == "tls" or self.proxy_sources.trusts(ip)):
                # The PROXY header first: the limits then apply to the miner's address, not the
                # balancer's. (An untrusted plain-TCP miner's first bytes are checked by its worker.)
                listen = self.config.listen
                HeaderReader(conn, ip, self.proxy_sources.trusts(ip), listen.proxy_protocol == "required",
                             listen.proxy_protocol_timeout_s, self._after_header, self._header_refused)
                self._headers[conn] = kind
            else:
                self._place(conn, ip, kind)

    def _after_header(self, conn: socket.socket, ip: str, via: str | None) -> None:
        kind = self._headers.pop(conn)
        if self._closing:
            conn.close()
            return
        if via is not None:
            self._vias[conn] = via
        self._place(conn, ip, kind)

    def _header_refused(self, conn: socket.socket, peer: str, reason: str) -> None:
        kind = self._headers.pop(conn)
        conn.close()
        self.refused.labels("PROXY protocol").inc()
        self.log.info("miner.proxy_header_refused", ip=peer, reason=reason, tls=kind == "tls")

    def _place(self, conn: socket.socket, ip: str, kind: str) -> None:
        refusal = self.admission.refusal(ip, time.monotonic())
        if refusal is None and not any(w.up for w in self.workers):
            refusal = "no upstream work yet: try again shortly"
        if refusal is not None:
            self._vias.pop(conn, None)
            self._refuse(conn, kind, refusal)
            return
        self.admission.admitted(ip)  # from here on the miner holds its slot, placed or not yet
        if kind != "tcp":
            self._hand_off(conn, ip, kind, None)
            return
        conn.setblocking(False)
        loop = asyncio.get_running_loop()
        self._silent[conn] = loop.call_later(_FIRST_LINE_WAIT_S, self._first_line, conn, ip)
        loop.add_reader(conn.fileno(), self._first_line, conn, ip)

    def _refuse(self, conn: socket.socket, kind: str, reason: str) -> None:
        self.refused.labels(reason.split(":")[0]).inc()
        if kind == "tcp":  # a TLS client could not read plain text anyway
            with contextlib.suppress(OSError):
                conn.send(stratum.notify("client.show_message", [f"qscrypt: {reason}"]))
        conn.close()

    def _first_line(self, conn: socket.socket, ip: str) -> None:
        """The miner spoke, or its wait is over: place it, by the session id it resumes if any."""
        deadline = self._silent.pop(conn, None)
        if deadline is None:
            return  # placed already: its data and its deadline came in the same loop iteration
        deadline.cancel()
        asyncio.get_running_loop().remove_reader(conn.fileno())
        try:
            data: bytes | None = conn.recv(_PEEK_BYTES, socket.MSG_PEEK)  # left for the worker to read
        except BlockingIOError:
            data = None
        except OSError:
            data = b""
        if data == b"":  # gone before it said anything
            self._vias.pop(conn, None)
            conn.close()
            self.admission.released(ip)
            return
        self._hand_off(conn, ip, "tcp", _resumed_worker(data, self.tag) if data else None)

    def _hand_off(self, conn: socket.socket, ip: str, kind: str, resumed: int | None) -> None:
        via = self._vias.pop(conn, None)
        ready = [w for w in self.workers if w.up]
        if not ready:  # every worker went down while this miner was waiting
            self.admission.released(ip)
            self._refuse(conn, kind, "no upstream work yet: try again shortly")
            return
        worker = min(ready, key=lambda w: w.connections)
        if resumed is not None and resumed < len(self.workers):
            home = self.workers[resumed]
            # Any client can send any id: a resume never piles miners onto one worker.
            if home.up and home.connections <= 2 * worker.connections + 64:
                worker = home
        assert worker.control is not None
        message: dict[str, object] = {"conn": kind, "ip": ip}
        if via is not None:
            message["via"] = via
        worker.ips[ip] += 1  # its load from now on, waiting in its backlog or not
        handoff = (conn, ip, _encode(message))
        if worker.backlog:
            worker.backlog.append(handoff)
        elif self._send_handoff(worker, handoff):
            worker.backlog.append(handoff)
            asyncio.get_running_loop().add_writer(worker.control.fileno(), self._drain_backlog, worker)

    def _send_handoff(self, worker: _Worker, handoff: tuple[socket.socket, str, bytes]) -> bool:
        """Pass a miner's socket to `worker`; True when its control socket's queue is full (a
        busy worker meets a burst of connects: the miner waits its turn, it is not dropped)."""
        conn, ip, data = handoff
        assert worker.control is not None
        try:
            socket.send_fds(worker.control, [data], [conn.fileno()])
        except BlockingIOError:
            return True
        except OSError as exc:  # it just died: this miner reconnects
            self.log.warning("supervisor.handoff_failed", worker=worker.index, error=str(exc))
            conn.close()
            self._released(worker, ip)
            return False
        conn.close()  # the worker holds its own copy of the socket now
        return False

    def _drain_backlog(self, worker: _Worker) -> None:
        while worker.backlog:
            if self._send_handoff(worker, worker.backlog[0]):
                return
            worker.backlog.popleft()
        if worker.control is not None:
            asyncio.get_running_loop().remove_writer(worker.control.fileno())

    def _released(self, worker: _Worker, ip: str) -> None:
        """One of `worker`'s connections from `ip` is gone."""
        if worker.ips[ip] > 0:
            worker.ips[ip] -= 1
            self.admission.released(ip)
        if worker.ips[ip] <= 0:
            del worker.ips[ip]

    def _from_worker(self, worker: _Worker) -> None:
        control = worker.control
        if control is None:
            return
        while True:
            try:
                data = control.recv(_MESSAGE_MAX)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._forget(worker)
                return
            try:
                message = json.loads(data)
            except ValueError:
                continue
            if "ready" in message:
                worker.ready = True
                self._count_ready()
                self.log.info("supervisor.worker_ready", worker=worker.index, pid=worker.process.pid
                              if worker.process else None)
            elif "top" in message:
                try:
                    self._tops[worker.index] = [(str(w), float(h), float(d)) for w, h, d in message["top"]]
                except (TypeError, ValueError):
                    self.log.warning("supervisor.bad_message", worker=worker.index, kind="top")
                    continue
                self._show_top()
            elif "closed" in message:
                self._released(worker, str(message["closed"]))
            elif "ban" in message:
                ip, seconds = str(message["ban"]), float(message.get("seconds", 0))
                self.admission.ban(ip, seconds, time.monotonic())
                for other in self.workers:
                    if other is not worker and other.up and other.ips[ip] > 0:
                        assert other.control is not None
                        with contextlib.suppress(OSError):
                            other.control.send(_encode({"ban": ip, "seconds": seconds}))


def _resumed_worker(data: bytes, tag: str) -> int | None:
    """The worker written in the session id that a miner's first line, a `mining.subscribe`,
    resumes; None for any other first line, and for an id another host made (its miner came
    through the balancer from there and is placed like a new one)."""
    line, newline, _ = data.partition(b"\n")
    if not newline:
        return None
    event = stratum.decode_line(line.strip())
    if not isinstance(event, stratum.Request) or event.method != "mining.subscribe" or len(event.params) < 2:
        return None
    session_id = event.params[1]
    return session_worker(session_id, tag) if isinstance(session_id, str) else None


async def run_supervisor(config: ProxyConfig, command: list[str], dsn: str | None,
                         stop: asyncio.Event) -> None:
    supervisor = Supervisor(config, command, dsn)
    await supervisor.start()
    try:
        await stop.wait()
    finally:
        await supervisor.close()
