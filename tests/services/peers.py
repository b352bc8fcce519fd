"""Real third-party peers: pooler's cpuminer, BFGMiner and blinkhash's foundation-v2-litecoin pool.

Built once per machine from the source snapshots in ../shared/peers/ (their build scripts cache the
result in ~/.cache/qscrypt-peers, or $QSCRYPT_PEERS_CACHE) and run as subprocesses whose output is
read line by line as it comes and parsed into counts. A peer that cannot be built or started fails
the test with the reason: these fixtures never skip.

- `cpuminer_path`, `bfgminer_path`, `foundation_pool_build` (session): the built programs.
- `peers` (function): a `PeerFactory` starting `CpuMiner` and `BfgMiner` runners; every runner it
  started is stopped after the test (SIGTERM, then SIGKILL), and its output kept in a log file.
- `foundation_pool` (module): a `FoundationPool` running on a Litecoin Core regtest pair of its own.
  A module sets its ports and timings with a module-level `FOUNDATION_POOL = PoolSettings(...)`.
  Tests may stop and start it (same ports); it is running again when the module ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qscrypt.devnet.litecoind import LitecoinError, RegtestPair, free_ports, start_pair
from qscrypt.jsonrpc import RpcError
from tests.services import ServiceRecord, fixture_failure

PEERS_SOURCES = Path(__file__).resolve().parents[3] / "shared" / "peers"
CACHE_ENV = "QSCRYPT_PEERS_CACHE"
BUILD_TIMEOUT_S = 1200  # BFGMiner and the pool's npm install take ~35 s each here; far more on a slow box
_MAX_LINE = 1 << 20
_TAIL_LINES = 40

_record = ServiceRecord("Third-party peers (cpuminer, BFGMiner, foundation-v2-litecoin)")


class PeerError(RuntimeError):
    """A peer could not be built, started or driven."""


# -- building -------------------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "qscrypt-peers")


def build_peer(script: str, name: str) -> Path:
    """Run `script` from shared/peers (idempotent: a cached build returns at once) into the cache;
    the path it prints last. A lock keeps two test sessions from building into one place at once."""
    path = PEERS_SOURCES / script
    if not path.is_file():
        raise PeerError(f"{path} not found: the peers' source snapshots live in ../shared/peers/")
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            done = subprocess.run(["bash", str(path), str(root / name)], capture_output=True, text=True,
                                  timeout=BUILD_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise PeerError(f"{script} did not finish within {BUILD_TIMEOUT_S} s") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise PeerError(f"{script} failed (exit {done.returncode}); the Debian packages it needs are in "
                        f"shared/peers/README.md (`make system-deps` installs them):\n{_last(output)}")
    lines = done.stdout.strip().splitlines()
    result = Path(lines[-1]) if lines else None
    if result is None or not result.exists():
        raise PeerError(f"{script} printed no build path:\n{_last(output)}")
    return result


def _built(script: str, name: str, label: str) -> Path:
    began = time.monotonic()
    try:
        path = build_peer(script, name)
    except PeerError as exc:
        raise fixture_failure(f"{label} could not be built: {exc}") from None
    _record.startup_s.setdefault(f"{label} (build or cache check)", time.monotonic() - began)
    return path


@pytest.fixture(scope="session")
def cpuminer_path() -> Path:
    return _built("build-cpuminer.sh", "cpuminer", "cpuminer")


@pytest.fixture(scope="session")
def bfgminer_path() -> Path:
    return _built("build-bfgminer.sh", "bfgminer", "BFGMiner")


@pytest.fixture(scope="session")
def foundation_pool_build() -> Path:
    return _built("build-foundation-pool.sh", "foundation-v2-litecoin", "foundation-v2-litecoin")


# -- running --------------------------------------------------------------------------------------


class PeerProcess:
    """A third-party program in its own process group, stdout and stderr read line by line as they
    come: each line is kept (with the monotonic time it arrived), written to `log_path` and handed
    to `_parse`. `start` may follow `stop` (a restart); the lines of every run are kept."""

    label = "peer"

    def __init__(self, argv: list[str], log_path: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None, nice: int = 0, stderr_only: bool = False) -> None:
        """`stderr_only`: read only stderr (a program that logs the same lines to both)."""
        self.argv = argv
        self.stderr_only = stderr_only
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.nice = nice
        self.lines: list[tuple[float, str]] = []
        self.starts: list[float] = []
        self.exit_codes: list[int | None] = []
        self.parse_errors: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._log: Any = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    async def start(self) -> None:
        if self.running:
            raise PeerError(f"{self.label} is running already")
        argv = ["nice", "-n", str(self.nice), *self.argv] if self.nice else list(self.argv)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("a", encoding="utf-8", buffering=1)
        self._log.write(f"--- {time.strftime('%H:%M:%S')} start: {shlex.join(argv)}\n")
        if self.stderr_only:
            streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
        else:
            streams = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
        try:
            self._process = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, **streams, cwd=self.cwd, env=self.env,
                start_new_session=True, limit=_MAX_LINE)
        except OSError as exc:
            self._log.close()
            raise PeerError(f"{self.label} could not be started ({shlex.join(argv)}): {exc}") from None
        self.starts.append(time.monotonic())
        self._reader = asyncio.create_task(self._read(self._process), name=f"{self.label}-output")

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        stream = process.stderr if self.stderr_only else process.stdout
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the limit: the reader dropped it
                continue
            if not raw:
                return
            now = time.monotonic()
            text = raw.decode(errors="replace").rstrip("\r\n")
            self.lines.append((now, text))
            self._log.write(text + "\n")
            try:
                self._parse(now, text)
            except Exception as exc:  # a line we misread must not stop the reading
                self.parse_errors.append(f"{type(exc).__name__}: {exc} in {text[:200]!r}")

    def _parse(self, at: float, line: str) -> None:
        """Note what `line` says (subclasses)."""

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after `timeout`; the exit code."""
        process = self._process
        if process is None:
            return None
        if process.returncode is None:
            self._signal(process, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                self._signal(process, signal.SIGKILL)
                await process.wait()
        self._signal(process, signal.SIGKILL)  # children left behind (the pool's worker)
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reader, 5)
        self._log.write(f"--- {time.strftime('%H:%M:%S')} exit code {process.returncode}\n")
        self._log.close()
        self.exit_codes.append(process.returncode)
        self._process = None
        return process.returncode

    @staticmethod
    def _signal(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
        # The group is the one start() made for this process (start_new_session): its id is the pid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    def since(self, at: float) -> list[str]:
        return [line for when, line in self.lines if when >= at]

    def tail(self, count: int = _TAIL_LINES) -> str:
        return "\n".join(line for _, line in self.lines[-count:])

    def describe(self) -> str:
        state = "running" if self.running else f"exit codes {self.exit_codes}"
        problems = f"\nparse errors: {self.parse_errors[:3]}" if self.parse_errors else ""
        return (f"{self.label} ({state}; {self.command}); full output in {self.log_path}; "
                f"last lines:\n{self.tail()}{problems}")

    async def wait_for(self, condition: Callable[[], object], timeout: float, what: str) -> float:
        """Seconds until `condition()` holds; fails with this peer's output if it does not in time
        or the process ends first."""
        began = time.monotonic()
        while not condition():
            if not self.running:
                raise AssertionError(f"{self.label} exited while waiting for {what}\n{self.describe()}")
            if time.monotonic() - began > timeout:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.describe()}")
            await asyncio.sleep(0.05)
        return time.monotonic() - began


_STAMP = re.compile(r"^\s*\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\] ")


def _message(line: str) -> str:
    """A miner's log line without its timestamp."""
    return _STAMP.sub("", line, count=1)


def _json(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Submit:
    at: float
    job_id: str
    extranonce2: str
    ntime: str
    nonce: str


@dataclass(frozen=True)
class Verdict:
    at: float
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True)
class Notify:
    at: float
    job_id: str
    ntime: int
    clean: bool


class StratumMiner(PeerProcess):
    """What a Stratum miner's protocol dump and log say: connections, jobs, difficulties, submits,
    the answers and the miner's own share verdicts, and the errors it reported."""

    def __init__(self, argv: list[str], log_path: Path, **kwargs: Any) -> None:
        super().__init__(argv, log_path, **kwargs)
        self.subscribes: list[float] = []  # one per connection that got as far as subscribing
        self.notifies: list[Notify] = []
        self.difficulties: list[tuple[float, float]] = []  # mining.set_difficulty as received
        self.submits: list[Submit] = []
        self.answers: list[tuple[float, Any, Any]] = []  # (time, result, error) of submit answers
        self.results: list[Verdict] = []  # the miner's own accepted/rejected lines
        self.errors: list[tuple[float, str]] = []
        self.messages: list[tuple[float, str]] = []  # client.show_message texts
        self.reconnect_requests: list[float] = []

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r.accepted)

    @property
    def rejected(self) -> int:
        return sum(1 for r in self.results if not r.accepted)

    def accepted_since(self, at: float) -> list[Verdict]:
        return [r for r in self.results if r.accepted and r.at >= at]

    def _sent(self, at: float, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params") or []
        if method == "mining.subscribe":
            self.subscribes.append(at)
        elif method == "mining.submit" and len(params) >= 5:
            self.submits.append(Submit(at, *[str(p) for p in params[1:5]]))

    def _received(self, at: float, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params") or []
        if method == "mining.notify" and len(params) >= 9:
            self.notifies.append(Notify(at, str(params[0]), int(str(params[7]), 16), bool(params[8])))
        elif method == "mining.set_difficulty" and params:
            self.difficulties.append((at, float(params[0])))
        elif method == "client.show_message" and params:
            self.messages.append((at, str(params[0])))
        elif method == "client.reconnect":
            self.reconnect_requests.append(at)


class CpuMiner(StratumMiner):
    """pooler's cpuminer 2.5.1 (`minerd -a scrypt -t 1 -D -P`): its protocol dump (`>` sent, `<`
    received) and its lines `accepted: A/T (…) (yay!!!|booooo)`, `thread 0: N hashes, X khash/s`,
    `Stratum connection timed out`, `…retry after N seconds` and the like."""

    label = "cpuminer"
    _RESULT = re.compile(r"^accepted: (\d+)/(\d+) \([\d.]+%\), [\d.]+ khash/s \((yay!!!|booooo)\)")
    _HASHES = re.compile(r"^thread (\d+): (\d+) hashes, ([\d.]+) khash/s")
    _ERRORS = ("Stratum connection timed out", "Stratum connection interrupted", "Stratum connection failed",
               "...retry after", "Stratum authentication failed", "stratum_send_line failed",
               "stratum_recv_line failed", "stratum_subscribe", "JSON decode failed")

    def __init__(self, binary: Path, url: str, user: str, password: str, log_path: Path,
                 threads: int = 1, extra: tuple[str, ...] = (), nice: int = 0) -> None:
        argv = [str(binary), "-a", "scrypt", "-t", str(threads), "-D", "-P", "-o", url, "-u", user,
                "-p", password, *extra]
        super().__init__(argv, log_path, nice=nice)
        self.user = user
        self.hash_reports: list[tuple[float, int, float]] = []  # (time, hashes, kH/s)
        self.timeouts: list[float] = []
        self.discarded_stale = 0

    def _parse(self, at: float, line: str) -> None:
        text = _message(line)
        if text.startswith("> ") and (message := _json(text[2:])) is not None:
            self._sent(at, message)
            return
        if text.startswith("< ") and (message := _json(text[2:])) is not None:
            self._received(at, message)
            # cpuminer sends every submit with id 4 (and never matches answers to requests)
            if message.get("id") == 4 and "method" not in message:
                self.answers.append((at, message.get("result"), message.get("error")))
            return
        if match := self._RESULT.match(text):
            self.results.append(Verdict(at, match.group(3) == "yay!!!"))
        elif text.startswith("DEBUG: reject reason: ") and self.results and not self.results[-1].accepted:
            self.results[-1] = dataclasses.replace(self.results[-1], reason=text.split(": ", 2)[2])
        elif match := self._HASHES.match(text):
            self.hash_reports.append((at, int(match.group(2)), float(match.group(3))))
        elif text.startswith("DEBUG: stale work detected"):
            self.discarded_stale += 1
        elif text.startswith("Server requested reconnection"):
            self.reconnect_requests.append(at)
        elif any(text.startswith(error) for error in self._ERRORS):
            self.errors.append((at, text))
            if text.startswith("Stratum connection timed out"):
                self.timeouts.append(at)

    def hashes_between(self, start: float, end: float) -> int:
        return sum(hashes for at, hashes, _ in self.hash_reports if start <= at < end)


class BfgMiner(StratumMiner):
    """BFGMiner 5.5.0 (`bfgminer --scrypt -S cpu:auto -t 1 -T -D -P`): `Accepted …`/`Rejected …`
    lines, `Pool 0 stratum difficulty set to X` (X is its "pdiff" after its own scrypt reading:
    target (2^224 - 1)/X, so the scrypt share difficulty it mines at is X·0xFFFF), its TLS probe
    (`Stratum connect failed with TLS to pool 0: …`) and the protocol dump (`Pool 0: SEND: …`,
    `Pool 0: RECV: …`). It logs every line to stdout and stderr alike: only stderr is read."""

    label = "BFGMiner"
    _RESULT = re.compile(r"^(Accepted|Rejected) [0-9a-f]{8} (\S+).*?Diff (\S+)/(\S+)(?: \((.*)\))?")
    _DIFFICULTY = re.compile(r"^Pool \d+ stratum difficulty set to (\S+)")
    _TLS_FAILED = re.compile(r"^Stratum connect failed with TLS to pool \d+: (.*)")
    _SENT = re.compile(r"^Pool \d+: SEND: (\{.*)")
    _RECEIVED = re.compile(r"^Pool \d+: RECV: (\{.*)")

    def __init__(self, binary: Path, url: str, user: str, password: str, log_path: Path,
                 threads: int = 1, extra: tuple[str, ...] = ()) -> None:
        argv = [str(binary), "--scrypt", "-S", "cpu:auto", "-t", str(threads), "-T", "-D", "-P",
                "--no-default-config", "-o", url, "-u", user, "-p", password, *extra]
        super().__init__(argv, log_path, stderr_only=True)
        self.user = user
        self.read_difficulties: list[tuple[float, float]] = []  # "stratum difficulty set to", as read
        self.tls_failures: list[tuple[float, str]] = []

    @property
    def scrypt_difficulties(self) -> list[tuple[float, float]]:
        """The scrypt share difficulty (target 0xFFFF·2^224 / d) it mines at after each change."""
        return [(at, value * 0xFFFF) for at, value in self.read_difficulties]

    def _parse(self, at: float, line: str) -> None:
        text = _message(line).strip()
        if (match := self._SENT.match(text)) and (message := _json(match.group(1))) is not None:
            self._sent(at, message)
            return
        if (match := self._RECEIVED.match(text)) and (message := _json(match.group(1))) is not None:
            self._received(at, message)
            if "method" not in message and message.get("id") not in (None, "auth", "capa") and \
                    isinstance(message.get("result"), bool | type(None)):
                self.answers.append((at, message.get("result"), message.get("error")))
            return
        if match := self._RESULT.match(text):
            self.results.append(Verdict(at, match.group(1) == "Accepted", match.group(5)))
        elif match := self._DIFFICULTY.match(text):
            self.read_difficulties.append((at, float(match.group(1))))
        elif match := self._TLS_FAILED.match(text):
            self.tls_failures.append((at, match.group(1)))
        elif "Stratum connection" in text and ("failed" in text or "interrupted" in text or "lost" in text):
            self.errors.append((at, text))


@dataclass
class PeerFactory:
    """Starts miners for one test, and stops every one of them after it."""

    cpuminer: Path
    bfgminer_build: Callable[[], Path]
    log_dir: Path
    started: list[PeerProcess] = field(default_factory=list)

    async def start_cpuminer(self, url: str, user: str, password: str = "x", **kwargs: Any) -> CpuMiner:
        miner = CpuMiner(self.cpuminer, url, user, password, self._log_path("cpuminer"), **kwargs)
        await self._start(miner)
        return miner

    async def start_bfgminer(self, url: str, user: str, password: str = "x", **kwargs: Any) -> BfgMiner:
        miner = BfgMiner(self.bfgminer_build(), url, user, password, self._log_path("bfgminer"), **kwargs)
        await self._start(miner)
        return miner

    def _log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}-{sum(1 for p in self.started if p.log_path.name.startswith(name))}.log"

    async def _start(self, peer: PeerProcess) -> None:
        self.started.append(peer)
        await peer.start()

    async def stop_all(self) -> None:
        for peer in self.started:
            await peer.stop()


@pytest.fixture
async def peers(cpuminer_path: Path, request: pytest.FixtureRequest,
                tmp_path: Path) -> AsyncIterator[PeerFactory]:
    def bfgminer() -> Path:
        return request.getfixturevalue("bfgminer_path")  # type: ignore[no-any-return]

    factory = PeerFactory(cpuminer_path, bfgminer, tmp_path / "peers")
    try:
        yield factory
    finally:
        await factory.stop_all()
        _record.logs.extend(p.log_path for p in factory.started if p.log_path not in _record.logs)


# -- the pool --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolPort:
    """One Stratum port of the pool: its difficulty and vardiff (the pool's own keys)."""

    initial: float
    minimum: float
    maximum: float
    target_time_s: float = 15.0
    retarget_time_s: float = 90.0
    variance: float = 0.3


@dataclass(frozen=True)
class PoolSettings:
    """A module's pool: named ports, how often it re-sends the job of a quiet chain (its default
    is 60 s), and how often it polls the daemon for a new block (1 s)."""

    ports: dict[str, PoolPort] = field(default_factory=lambda: {"main": PoolPort(1.0, 0.5, 4.0)})
    rebroadcast_s: float = 30.0
    poll_ms: int = 1000


@dataclass(frozen=True)
class PoolShare:
    """One share verdict from the pool's log."""

    at: float
    accepted: bool
    difficulty: float | None  # the difficulty the pool credited (accepted shares)
    actual: float | None  # the difficulty the share's hash reached, as the pool computed it
    address: str
    error: str | None = None


class FoundationPool(PeerProcess):
    """blinkhash's foundation-v2-litecoin (`node index.js`) in a directory of its own: the build's
    files copied (node_modules linked), `configs/litecoin.js` written for this pool. Parses every
    share verdict (`A share was accepted at difficulty D/ACTUAL by ADDRESS [IP]`, `A share was
    rejected (ERROR) from …`), submitted blocks and authorizations."""

    label = "foundation-v2-litecoin"
    _ACCEPTED = re.compile(r"A share was accepted at difficulty (\S+)/(\S+) by (\S+) \[")
    _REJECTED = re.compile(r"A share was rejected \((.*)\) from (\S+) \[")
    _LOW = re.compile(r"low difficulty share of (\S+)")
    _BLOCK = re.compile(r"Submitted a primary block \(\w+:(\d+)\) successfully")
    _AUTHORIZED = re.compile(r"(Authorized|Unauthorized) worker: (\S+) ")

    def __init__(self, build: Path, work_dir: Path, pair: RegtestPair, address: str,
                 settings: PoolSettings) -> None:
        super().__init__(["node", "index.js"], work_dir / "pool.log", cwd=work_dir,
                         env={**os.environ, "POOL_BIND_HOST": "127.0.0.1"})
        self.build = build
        self.work_dir = work_dir
        self.pair = pair
        self.address = address
        self.settings = settings
        self.ports = dict(zip(settings.ports, free_ports(len(settings.ports)), strict=True))
        self.shares: list[PoolShare] = []
        self.blocks: list[tuple[float, int]] = []  # (time, height) of each block it submitted
        self.blocks_refused = 0  # "The block was rejected by the network": not in the best chain
        self.authorized: list[str] = []
        self.errors: list[tuple[float, str]] = []
        self.ready_at: list[float] = []

    def url(self, port: str = "main") -> str:
        return f"stratum+tcp://127.0.0.1:{self.ports[port]}"

    def prepare(self) -> None:
        """The pool reads its configs relative to its own files: a tree of its own for each pool."""
        shutil.copytree(self.build, self.work_dir, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("node_modules", ".qscrypt-built"))
        modules = self.work_dir / "node_modules"
        if not modules.exists():
            modules.symlink_to(self.build / "node_modules", target_is_directory=True)
        configs = self.work_dir / "configs"
        main = {"language": "english", "identifier": "",
                "logger": {"logColors": False, "logLevel": "log"},
                "clustering": {"enabled": True, "forks": 1},
                "tls": {"ca": "", "key": "", "cert": ""}}
        node = self.pair.nodes[0]
        settings = self.settings
        pool = {
            "enabled": True,
            "name": "Pool-Litecoin",
            "settings": {
                "banning": {"banLength": 600000, "checkThreshold": 500, "invalidPercent": 50,
                            "purgeInterval": 300000},
                "timeout": {"connection": 600000, "rebroadcast": int(settings.rebroadcast_s * 1000)},
                "interval": {"blocks": settings.poll_ms},
            },
            "ports": [{"port": number, "enabled": True, "tls": False,
                       "difficulty": {"initial": p.initial, "minimum": p.minimum, "maximum": p.maximum,
                                      "targetTime": p.target_time_s, "retargetTime": p.retarget_time_s,
                                      "variance": p.variance}}
                      for p, number in zip(settings.ports.values(), self.ports.values(), strict=True)],
            "primary": {
                "address": self.address,
                "coin": {"name": "Litecoin", "symbol": "LTC", "algorithm": "scrypt"},
                "daemons": [{"host": "127.0.0.1", "port": node.rpc_port, "username": self.pair.user,
                             "password": self.pair.password}],
                "recipients": [],
                "zmq": {"enabled": False, "host": "127.0.0.1", "port": 29000},
            },
        }
        for name, value in (("main.js", main), ("litecoin.js", pool)):
            (configs / name).write_text(f"module.exports = {json.dumps(value, indent=2)};\n")

    async def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until its Stratum ports answer."""
        if not (self.work_dir / "index.js").exists():
            self.prepare()
        began = time.monotonic()
        await super().start()
        ready = len(self.ready_at)
        try:
            await self.wait_for(lambda: len(self.ready_at) > ready or self._start_error(began), timeout,
                                "the pool to initialize")
            if len(self.ready_at) <= ready:
                error = self._start_error(began)
                raise AssertionError(f"the pool failed to start: {error}\n{self.describe()}")
            for port in self.ports.values():
                await self.wait_for(lambda p=port: _answers(p), 10, f"the pool's port {port} to answer")
        except BaseException:
            await self.stop()
            raise

    def _start_error(self, since: float) -> str | None:
        return next((line for at, line in self.errors if at >= since), None)

    def _parse(self, at: float, line: str) -> None:
        if match := self._ACCEPTED.search(line):
            self.shares.append(PoolShare(at, True, float(match.group(1)), float(match.group(2)),
                                         match.group(3)))
        elif match := self._REJECTED.search(line):
            error = match.group(1)
            low = self._LOW.search(error)
            self.shares.append(PoolShare(at, False, None, float(low.group(1)) if low else None,
                                         match.group(2), error))
        elif match := self._BLOCK.search(line):
            self.blocks.append((at, int(match.group(1))))
        elif "The block was rejected by the network" in line:
            self.blocks_refused += 1
        elif match := self._AUTHORIZED.search(line):
            if match.group(1) == "Authorized":
                self.authorized.append(match.group(2))
        elif "Server initialized successfully" in line:
            self.ready_at.append(at)
        elif "[ERROR]" in line or line.startswith("Error") or "Error:" in line:
            self.errors.append((at, line))

    def shares_since(self, at: float) -> list[PoolShare]:
        return [s for s in self.shares if s.at >= at]


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@contextlib.asynccontextmanager
async def running_pool(build: Path, work_dir: Path, pair: RegtestPair,
                       settings: PoolSettings) -> AsyncIterator[FoundationPool]:
    """A foundation pool on `pair` (paying a new address of its wallet), stopped afterwards."""
    address = pair.wallet.call("getnewaddress", "pool", "bech32")
    pool = FoundationPool(build, work_dir, pair, address, settings)
    _record.logs.append(pool.log_path)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()


@pytest.fixture(scope="module")
async def foundation_pool(foundation_pool_build: Path, request: pytest.FixtureRequest,
                          tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FoundationPool]:
    settings: PoolSettings = getattr(request.module, "FOUNDATION_POOL", PoolSettings())
    base = tmp_path_factory.mktemp("foundation-pool")
    began = time.monotonic()
    try:
        pair = await asyncio.to_thread(start_pair, base / "litecoin")
    except (LitecoinError, RpcError) as exc:
        raise fixture_failure(f"the pool's litecoind regtest pair did not start: {exc}") from None
    with _stopping(pair):
        async with contextlib.AsyncExitStack() as stack:
            try:
                pool = await stack.enter_async_context(
                    running_pool(foundation_pool_build, base / "pool", pair, settings))
            except (AssertionError, PeerError) as exc:
                raise fixture_failure(f"foundation-v2-litecoin did not start: {exc}") from None
            _record.startup_s.setdefault("foundation-v2-litecoin on its litecoind pair",
                                         time.monotonic() - began)
            yield pool


@contextlib.contextmanager
def _stopping(pair: RegtestPair) -> Iterator[RegtestPair]:
    try:
        yield pair
    finally:
        pair.stop()


def _last(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    _record.report(terminalreporter, exitstatus)
