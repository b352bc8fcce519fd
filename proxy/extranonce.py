"""Per-miner extranonce prefixes inside one upstream session's extranonce2 space.

A miner's extranonce1 is the upstream's extranonce1 followed by a prefix no other live miner on
that upstream session holds, so two miners can never build the same coinbase. A disconnected
miner's prefix stays reserved for a while under its session id, so a reconnecting miner that
passes the id back to `mining.subscribe` resumes with the same extranonce1.

A session id is 24 hex digits: the host's tag (8), the worker process's index (2) and 56 random
bits (14). The tag makes ids of differently named hosts behind one balancer differ by
construction, and lets a host tell a miner that comes back from another host (which it can only
start afresh) from one of its own; the index sends a resuming miner back to the worker holding
its prefix; the random part keeps ids unguessable, so nobody takes over another miner's prefix.
"""

import hashlib
import secrets
import string
from collections import OrderedDict

HOST_TAG_DIGITS = 8
SESSION_ID_DIGITS = 24


def host_tag(host: str) -> str:
    """A host's identity in its session ids and solo coinbases: 8 hex digits of sha256(name), so
    the name itself goes neither to miners nor onto the public chain."""
    return hashlib.sha256(host.encode()).hexdigest()[:HOST_TAG_DIGITS]


def new_session_id(tag: str, worker: int | None = None) -> str:
    """A fresh session id of the host tagged `tag`, made in worker `worker` (None: a single-process
    proxy, written as worker 0)."""
    if len(tag) != HOST_TAG_DIGITS or not all(c in string.hexdigits for c in tag):
        raise ValueError(f"a host tag is {HOST_TAG_DIGITS} hex digits")
    index = worker or 0
    if not 0 <= index <= 0xFF:
        raise ValueError("a worker index is 0..255")
    random_digits = SESSION_ID_DIGITS - HOST_TAG_DIGITS - 2
    return f"{tag}{index:02x}{secrets.token_hex(random_digits // 2)}"


def session_worker(session_id: str, tag: str) -> int | None:
    """The worker index written in a session id this host (tagged `tag`) made; None for an id of
    another host, or anything no worker could have made."""
    if len(session_id) != SESSION_ID_DIGITS or not session_id.startswith(tag) \
            or not all(c in string.hexdigits for c in session_id):
        return None
    return int(session_id[HOST_TAG_DIGITS:HOST_TAG_DIGITS + 2], 16)


class PrefixSpaceFull(Exception):
    pass


class PrefixAllocator:
    def __init__(self, size: int, tag: str, resume_window_s: float = 300.0,
                 worker: int | None = None) -> None:
        if not 0 <= size <= 4:
            raise ValueError("prefix size must be 0..4 bytes")
        self.size = size
        self.tag = tag
        """The host's tag (`host_tag`), written into its session ids."""
        self.worker = worker
        """The worker process this allocator lives in, written into its session ids."""
        self.capacity = 1 << (8 * size)
        self._resume_window_s = resume_window_s
        self._live: dict[int, str] = {}  # prefix -> session id
        # session id -> (prefix, expires_at), oldest first so eviction is O(1)
        self._reserved: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._reserved_prefixes: set[int] = set()
        self._cursor = 0

    @property
    def live(self) -> int:
        return len(self._live)

    @property
    def full(self) -> bool:
        return len(self._live) >= self.capacity

    def _expire(self, now: float) -> None:
        while self._reserved:
            session_id, (prefix, expires_at) = next(iter(self._reserved.items()))
            if expires_at > now:
                break
            self._drop_reservation(session_id, prefix)

    def _drop_reservation(self, session_id: str, prefix: int) -> None:
        del self._reserved[session_id]
        self._reserved_prefixes.discard(prefix)

    def allocate(self, now: float, resume_id: str | None = None) -> tuple[bytes, str]:
        """A free prefix and the session id a reconnecting miner can pass back to keep it."""
        self._expire(now)
        if resume_id is not None and resume_id in self._reserved:
            prefix, _ = self._reserved[resume_id]
            self._drop_reservation(resume_id, prefix)
            self._live[prefix] = resume_id
            return self._encode(prefix), resume_id
        if self.full:
            raise PrefixSpaceFull(f"all {self.capacity} extranonce prefixes are in use")
        prefix = self._find_free()
        session_id = new_session_id(self.tag, self.worker)
        self._live[prefix] = session_id
        return self._encode(prefix), session_id

    def _find_free(self) -> int:
        # Reserved prefixes are skipped while free ones remain; when only reserved ones are left,
        # the oldest reservation gives way (a live miner beats a maybe-returning one).
        for _ in range(self.capacity):
            candidate = self._cursor
            self._cursor = (self._cursor + 1) % self.capacity
            if candidate not in self._live and candidate not in self._reserved_prefixes:
                return candidate
        session_id, (prefix, _) = next(iter(self._reserved.items()))
        self._drop_reservation(session_id, prefix)
        return prefix

    def release(self, prefix: bytes, now: float, keep_for_resume: bool = True) -> None:
        value = int.from_bytes(prefix, "big") if prefix else 0
        session_id = self._live.pop(value, None)
        if session_id is None or not keep_for_resume:
            return
        self._reserved[session_id] = (value, now + self._resume_window_s)
        self._reserved_prefixes.add(value)

    def _encode(self, prefix: int) -> bytes:
        return prefix.to_bytes(self.size, "big") if self.size else b""
