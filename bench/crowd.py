"""Many idle miners for `bench.proxy`, held by child processes with as little Python as possible.

One process can hold only as many sockets as its file limit (here 20,000, the hard limit: it
cannot be raised without privileges this machine does not give), and one source address reaches
one destination port from ~28,000 ephemeral ports. So the miners beyond the bench's own are held
by several `Crowd` processes, each connecting from its own loopback addresses (127.0.0.2, …).

Each crowd miner is a bare non-blocking socket (no protocol object, no buffer once it is
subscribed): it connects, sends `mining.subscribe` and `mining.authorize` in one write, and is
held once its first `mining.notify` came. For a fan-out round the crowd reads nothing while the
job goes out: it only asks epoll, every `_POLL_S`, which sockets got bytes since it last asked
(one-shot events: each socket is reported once); once all
have (or the round's time is up), it reads each socket once with `recvmsg`, which carries the
kernel's receive timestamp (SO_TIMESTAMPNS) of the bytes read. The timestamps go back to the
bench, which takes the fan-out from them: this process's own scheduling does not enter the figure,
only the CPU it takes from the proxy while it polls (reported as `crowd_cpu_s`).

Commands over a pipe, answered in order: `("connect",)` → held count, connect failures;
`("drain",)` → bytes read and dropped; `("stamps", seconds)` → array of nanoseconds (0: no data
within the time); `("cpu",)` → its CPU seconds; `("close",)`.
"""

import errno
import json
import os
import resource
import select
import socket
import struct
import time
from array import array
from multiprocessing.connection import Connection

_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
"""Bind the source address now, its port at connect: the port is then chosen per destination
(4-tuple), not reserved against every destination at bind."""
_POLL_S = 0.05
_HANDSHAKE_S = 120.0
_CMSG_SPACE = socket.CMSG_SPACE(16)


def _handshake_bytes(index: int) -> bytes:
    subscribe = {"id": 1, "method": "mining.subscribe", "params": ["crowd/1.0"]}
    authorize = {"id": 2, "method": "mining.authorize", "params": [f"crowd.{index}", "d=0.000001"]}
    return (json.dumps(subscribe) + "\n" + json.dumps(authorize) + "\n").encode()


class Crowd:
    def __init__(self, port: int, sources: list[str], count: int, burst: int, first: int) -> None:
        self.port = port
        self.sources = sources
        self.count = count
        self.burst = burst
        self.first = first
        self.socks: list[socket.socket] = []
        self.epoll = select.epoll()
        self.failures = 0

    def connect(self) -> tuple[int, int]:
        """Connect `count` miners, `burst` at a time: each burst is subscribed and has its first
        job before the next is started, so the proxy's listen backlog never holds more than a
        burst from each crowd."""
        made = 0
        while made < self.count:
            size = min(self.burst, self.count - made)
            self._connect_burst(made, size)
            made += size
        return len(self.socks), self.failures

    def _connect_burst(self, start: int, size: int) -> None:
        pending: dict[int, tuple[socket.socket, bytes]] = {}
        for offset in range(size):
            index = self.first + start + offset
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.sources[index % len(self.sources)], 0))
            sock.setblocking(False)
            code = sock.connect_ex(("127.0.0.1", self.port))
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                self.failures += 1
                continue
            pending[sock.fileno()] = (sock, _handshake_bytes(index))
            self.epoll.register(sock.fileno(), select.EPOLLOUT)
        received: dict[int, bytes] = {}
        deadline = time.monotonic() + _HANDSHAKE_S
        while pending and time.monotonic() < deadline:
            for fd, events in self.epoll.poll(1.0):
                sock, hello = pending[fd]
                if fd not in received:  # connected (or failed): say hello, then wait for the job
                    if events & (select.EPOLLERR | select.EPOLLHUP) or \
                            sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        self._fail(fd, pending, received)
                        continue
                    sock.send(hello)
                    received[fd] = b""
                    self.epoll.modify(fd, select.EPOLLIN)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._fail(fd, pending, received)
                    continue
                seen = received[fd] + data
                if b'"mining.notify"' in seen and b'"id":2' in seen.replace(b" ", b""):
                    self.epoll.unregister(fd)
                    del pending[fd], received[fd]
                    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                    self.socks.append(sock)
                else:
                    received[fd] = seen[-4096:]
        for fd in list(pending):
            self._fail(fd, pending, received)

    def _fail(self, fd: int, pending: dict[int, tuple[socket.socket, bytes]],
              received: dict[int, bytes]) -> None:
        sock, _ = pending.pop(fd)
        received.pop(fd, None)
        self.epoll.unregister(fd)
        sock.close()
        self.failures += 1

    def _register_all(self) -> None:
        # One-shot: epoll reports each socket once, so counting the arrivals costs one event each,
        # not a list of every ready socket at every look.
        for sock in self.socks:
            self.epoll.register(sock.fileno(), select.EPOLLIN | select.EPOLLONESHOT)

    def _unregister_all(self) -> None:
        for sock in self.socks:
            self.epoll.unregister(sock.fileno())

    def drain(self) -> int:
        """Read whatever is waiting (a difficulty, a job of an earlier phase) and drop it."""
        dropped = 0
        for sock in self.socks:
            while True:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    break
                except OSError:
                    break
                dropped += len(data)
                if not data:
                    break
        return dropped

    def stamps(self, seconds: float) -> bytes:
        """Wait (reading nothing) until every socket has bytes or `seconds` passed; then the kernel
        receive time of each socket's bytes, 0 where none came."""
        self._register_all()
        deadline = time.monotonic() + seconds
        arrived = 0
        try:
            while arrived < len(self.socks) and time.monotonic() < deadline:
                time.sleep(_POLL_S)
                while events := self.epoll.poll(0, 4096):
                    arrived += len(events)
        finally:
            self._unregister_all()
        stamps = array("q", bytes(8 * len(self.socks)))
        for index, sock in enumerate(self.socks):
            try:
                _, ancillary, _, _ = sock.recvmsg(65536, _CMSG_SPACE)
            except OSError:
                continue
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                    secs, nanos = struct.unpack("qq", payload[:16])
                    stamps[index] = secs * 1_000_000_000 + nanos
        return stamps.tobytes()

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()
        self.epoll.close()


def serve(pipe: Connection, port: int, sources: list[str], count: int, burst: int, first: int) -> None:
    """A crowd process's main: hold `count` miners and answer the bench's commands."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    crowd = Crowd(port, sources, count, burst, first)
    while True:
        command = pipe.recv()
        if command[0] == "connect":
            pipe.send(crowd.connect())
        elif command[0] == "drain":
            pipe.send(crowd.drain())
        elif command[0] == "stamps":
            pipe.send_bytes(crowd.stamps(float(command[1])))
        elif command[0] == "cpu":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            pipe.send(usage.ru_utime + usage.ru_stime)
        elif command[0] == "pid":
            pipe.send(os.getpid())
        else:
            crowd.close()
            pipe.send(True)
            return
