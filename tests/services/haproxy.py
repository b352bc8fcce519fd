"""HAProxy in TCP mode (Debian `haproxy`, /usr/sbin/haproxy) in front of proxies under test.

- `haproxy` (function): a starter; `await haproxy.start([Frontend(...), ...])` writes a config,
  runs `haproxy -db` in the foreground, waits until every frontend accepts and returns their
  ports. It connects to the backends from `Frontend.source` (127.0.0.5 by default), a loopback
  address of its own, so the proxy can tell the balancer from the miners behind it.

Started for each test that asks (about 0.1 s); stopped after it. A missing binary fails the test
with the reason (`make system-deps` installs it), it never skips.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.services import ServiceRecord, fixture_failure
from tests.services.peers import PeerProcess
from tests.services.proxy_command import free_port

HAPROXY = Path("/usr/sbin/haproxy")
BALANCER_IP = "127.0.0.5"
"""Where HAProxy's connections to the proxies come from: the one address to trust."""

_record = ServiceRecord("HAProxy")


@dataclass
class Frontend:
    name: str
    servers: list[tuple[str, int]]
    """The proxies' Stratum ports (host, port) it balances over."""
    send_proxy: str | None = "v2"
    """"v1" (send-proxy), "v2" (send-proxy-v2) or None (no header at all)."""
    check: bool = False
    """Health-check the servers (every 200 ms, one failure takes a server out): for a killed host."""
    source: str = BALANCER_IP
    balance: str = "leastconn"


@dataclass
class HAProxy:
    work_dir: Path
    process: PeerProcess | None = None
    ports: dict[str, int] = field(default_factory=dict)

    async def start(self, frontends: list[Frontend]) -> dict[str, int]:
        if not HAPROXY.exists() and shutil.which("haproxy") is None:
            raise fixture_failure("haproxy is not installed (Debian package `haproxy`; `make system-deps`)")
        binary = str(HAPROXY) if HAPROXY.exists() else str(shutil.which("haproxy"))
        self.ports = {f.name: free_port() for f in frontends}
        config = self.work_dir / "haproxy.cfg"
        config.write_text(self._config(frontends))
        log = self.work_dir / "haproxy.log"
        _record.logs.append(log)
        self.process = PeerProcess([binary, "-db", "-f", str(config)], log)
        began = time.monotonic()
        await self.process.start()
        deadline = time.monotonic() + 15
        while not all(_listening(port) for port in self.ports.values()):
            if not self.process.running:
                raise fixture_failure(f"haproxy exited at start: {self.process.tail()}")
            if time.monotonic() > deadline:
                raise fixture_failure(f"haproxy did not listen within 15 s: {self.process.tail()}")
            await asyncio.sleep(0.05)
        _record.startup_s.setdefault("haproxy", time.monotonic() - began)
        return self.ports

    def _config(self, frontends: list[Frontend]) -> str:
        lines = [
            "global",
            "    maxconn 4096",
            "    log stdout format raw local0 info",
            "defaults",
            "    mode tcp",
            "    log global",
            "    option tcplog",
            "    option redispatch",  # a server that refuses: the connection tries another
            "    retries 3",
            "    timeout connect 2s",
            "    timeout client 10m",
            "    timeout server 10m",
            "    timeout check 1s",
        ]
        for f in frontends:
            lines += [f"frontend {f.name}", f"    bind 127.0.0.1:{self.ports[f.name]}",
                      f"    default_backend {f.name}_servers",
                      f"backend {f.name}_servers", f"    balance {f.balance}"]
            header = {"v1": " send-proxy", "v2": " send-proxy-v2", None: ""}[f.send_proxy]
            check = " check inter 200ms fall 1 rise 2" + (" check-send-proxy" if f.send_proxy else "") \
                if f.check else ""
            for i, (host, port) in enumerate(f.servers):
                lines.append(f"    server s{i} {host}:{port}{header} source {f.source}{check}")
        return "\n".join(lines) + "\n"

    async def stop(self) -> None:
        if self.process is not None and self.process.running:
            await self.process.stop()



def _listening(port: int) -> bool:
    """Whether something listens on the port, found without connecting (a connection would reach
    the proxies behind HAProxy and show up in what the tests count): a bind to a listening port
    fails, SO_REUSEADDR or not."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


@pytest.fixture
async def haproxy(tmp_path: Path) -> AsyncIterator[HAProxy]:
    work = tmp_path / "haproxy"
    work.mkdir()
    balancer = HAProxy(work)
    yield balancer
    await balancer.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    _record.report(terminalreporter, exitstatus)
