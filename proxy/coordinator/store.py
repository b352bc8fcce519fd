"""Where a coordinator's nonce cursor and epoch survive restarts.

PostgreSQL, not a compacted Kafka topic: a coordinator must never hand out a range twice, and that
takes an exclusive owner per (coordinator id, upstream). A session advisory lock gives exactly that
(a second process configured with the same id is refused at start, and a crashed one releases it
with its connection), and a row update is durable when it returns. A compacted topic has neither a
lock nor read-your-write on restart without reading the topic to its end, and compaction is lazy.
The proxy already depends on PostgreSQL; the bus stays optional.

Writes are rare: the cursor reserves `reserve_nonces` positions at a time, so there is one write
per that many nonces issued, plus one per job change.
"""

import abc
import contextlib
from dataclasses import dataclass

import asyncpg

from proxy import db
from qscrypt.log import get_logger


class StoreError(RuntimeError):
    """The cursor could not be read or saved: stop issuing until it can."""


@dataclass(frozen=True, slots=True)
class Cursor:
    job_key: str  # the job and extranonce1 (service.job_key): one nonce space
    epoch: int
    reserved: int  # positions below may have been issued in that space


class CursorStore(abc.ABC):
    @abc.abstractmethod
    async def open(self, coordinator_id: int, upstream: str) -> Cursor | None:
        """Take ownership of the (coordinator, upstream) cursor and return it; raises StoreError if owned."""

    @abc.abstractmethod
    async def save(self, cursor: Cursor) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class MemoryCursorStore(CursorStore):
    """No persistence beyond the process: for one-machine use without a database, and tests."""

    def __init__(self) -> None:
        self.cursors: dict[tuple[int, str], Cursor] = {}
        self._owner: tuple[int, str] | None = None

    async def open(self, coordinator_id: int, upstream: str) -> Cursor | None:
        self._owner = (coordinator_id, upstream)
        return self.cursors.get(self._owner)

    async def save(self, cursor: Cursor) -> None:
        if self._owner is None:
            raise StoreError("store not opened")
        self.cursors[self._owner] = cursor

    async def close(self) -> None:
        self._owner = None


class PostgresCursorStore(CursorStore):
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._key: tuple[int, str] | None = None
        self._log = get_logger(component="coordinator-store")

    async def _connection(self) -> asyncpg.Connection:
        """The connection holding the lock; after a drop, a new one that takes the lock again."""
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        if self._key is None:
            raise StoreError("store not opened")
        coordinator_id, upstream = self._key
        try:
            conn = await asyncpg.connect(self.dsn, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"PostgreSQL unreachable: {exc}") from exc
        if not await db.lock_cursor(conn, coordinator_id, upstream):
            await conn.close()
            raise StoreError(f"coordinator {coordinator_id} on upstream {upstream!r} is running elsewhere: "
                             "give each coordinator its own coordinator_id")
        self._conn = conn
        return conn

    async def open(self, coordinator_id: int, upstream: str) -> Cursor | None:
        self._key = (coordinator_id, upstream)
        conn = await self._connection()
        saved = await db.load_cursor(conn, coordinator_id, upstream)
        return None if saved is None else Cursor(*saved)

    async def save(self, cursor: Cursor) -> None:
        conn = await self._connection()
        assert self._key is not None
        try:
            await db.save_cursor(conn, *self._key, cursor.job_key, cursor.epoch, cursor.reserved)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._drop()
            raise StoreError(f"saving the cursor failed: {exc}") from exc

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.terminate()
        self._conn = None

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None
