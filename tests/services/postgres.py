"""PostgreSQL fixtures: one embedded server per session, a fresh migrated database per module.

- `pg_server` (session): the running `EmbeddedPostgres` (non-durable: fsync off).
- `pg_dsn` (module): DSN of a new database with every migration applied.
- `pg_conn` (function): an asyncpg connection to `pg_dsn`, closed after the test.
- `pg_empty_dsn` (function): DSN of a new database with no schema at all.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from qscrypt.db.embedded import EmbeddedPostgres, PostgresError
from qscrypt.db.migrate import migrate
from tests.services import ServiceRecord, fixture_failure

_record = ServiceRecord("PostgreSQL (embedded)")


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[EmbeddedPostgres]:
    root = scratch_dir("postgres")
    server = EmbeddedPostgres(
        root / "data",
        durable=False,
        # Every module gets its own database, and services hold pools: allow plenty.
        settings={"max_connections": "300"},
    )
    _record.logs.append(server.log_path)
    began = time.monotonic()
    try:
        server.start()
    except PostgresError as exc:
        raise fixture_failure(f"embedded PostgreSQL did not start: {exc}") from None
    _record.startup_s["embedded PostgreSQL (initdb + start)"] = time.monotonic() - began
    yield server
    server.stop()
    if request.session.testsfailed == 0:  # keep the server log when something failed
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
async def pg_dsn(pg_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    began = time.monotonic()
    dsn = await _new_database(pg_server, request.module.__name__)
    await migrate(dsn)
    _record.startup_s.setdefault("database + migrations (first module)", time.monotonic() - began)
    return dsn


@pytest.fixture
async def pg_conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def pg_empty_dsn(pg_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    return await _new_database(pg_server, request.node.name)


async def _new_database(server: EmbeddedPostgres, label: str) -> str:
    # Named after the test for whoever opens the server afterwards; unique by the suffix.
    readable = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[-40:]
    name = f"t_{readable}_{uuid.uuid4().hex[:8]}"
    return await asyncio.to_thread(server.create_database, name)


def scratch_dir(label: str) -> Path:
    """A data directory outside pytest's temp root: every new pytest session resets that root to
    0700, which would lock the unprivileged PostgreSQL user out of a server already running."""
    return Path(tempfile.mkdtemp(prefix=f"qscrypt-test-{label}-"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    _record.report(terminalreporter, exitstatus)
