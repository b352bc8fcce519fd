"""The real `qscrypt proxy` command, started by a test as a service manager starts it: its own
process group, JSON log lines in one file, on loopback ports picked free.

A port found free can be taken before the proxy binds it (by another process's outgoing connection
in the ephemeral range, on a busy machine): the proxy then exits with "Address already in use", and
`start_proxy_command` picks the ports again, up to three times.
"""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now; see the module's note on why it may be taken later."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ProxyCommand:
    process: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int]

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (the supervisor's and its workers')."""
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def stop(self) -> int | None:
        return stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM to a proxy started in its own process group, as a service manager sends it; the
    whole group killed if it has not exited within 20 s. Its exit status (negative for the kill)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def spawn_proxy(config: Path, log: Path, args: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """`qscrypt -c config proxy *args` in its own process group (a kill of the group takes the
    whole host: supervisor, workers, hashers), stdout and stderr into `log`."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "cli", "-c", str(config), "proxy", *args],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def start_proxy_command(
        config: Path, text: Callable[[dict[str, int]], str], ready: Callable[[str], bool], *,
        port_names: Sequence[str] = ("port", "tls_port", "metrics_port"),
        args: Sequence[str] = ("--no-database",), timeout: float = 60.0) -> ProxyCommand:
    """Write `text(ports)` to `config`, start `qscrypt -c config proxy *args` logging to
    `config` + ".log", and wait until `ready(the log so far)`."""
    log = config.with_suffix(".log")
    for _attempt in range(3):
        ports = {name: free_port() for name in port_names}
        config.write_text(text(ports))
        process = spawn_proxy(config, log, args)
        running = ProxyCommand(process, log, ports)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while process.poll() is None and not ready(log.read_text()):
            if loop.time() > deadline:
                running.stop()
                raise AssertionError(f"the proxy was not ready in {timeout} s:\n{log.read_text()[-3000:]}")
            await asyncio.sleep(0.05)
        if process.poll() is None:
            return running
        with contextlib.suppress(ProcessLookupError):  # a worker may outlive the supervisor's exit
            os.killpg(process.pid, signal.SIGKILL)
        if "Address already in use" not in log.read_text():
            raise AssertionError(f"the proxy exited with {process.returncode}:\n{log.read_text()[-3000:]}")
    raise AssertionError("the proxy found its ports taken three times")
