"""The asyncio shell around the pure router: feeds it events with the clock, carries out its actions.

Upstreams' job and state listeners, the keep-alive tick and profile decisions become router events;
what it answers is done here and only here: session actions delivered to a miner's connection, a
job made for and written to every miner on its upstream (in slices of loop time, the cyclic GC
paused until the last), staggered moves put on the loop's timer, another session opened to an upstream whose
extranonce space fills, and each move logged and handed to whoever counts and records them.
"""

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from proxy.router import Deliver, FanOut, Move, MoveLater, OpenSession, Router, RouterAction
from proxy.session import Action, MinerSession
from proxy.upstream.base import Upstream, UpstreamWork
from qscrypt.log import get_logger


class Connection(Protocol):
    """What the dispatcher needs of a miner's connection (`proxy.server.MinerConnection`)."""

    session: MinerSession

    def deliver(self, actions: list[Action]) -> None: ...

    def send_now(self, data: bytes) -> None: ...


_FAN_OUT_SLICE_S = 0.002
"""Loop time one slice of a fan-out may take before the loop serves everything else (a miner's
request, a share's answer) and then the next slice: making and writing a job for 17,000 miners is
~200 ms of a core, which no miner's request should wait behind. A miner whose turn has not come
yet is judged as if the job were still on its way to it (it is, over a network)."""


class Dispatcher:
    def __init__(self, router: Router, spawn: Callable[[str, int], Upstream] | None = None,
                 on_move: Callable[[Move], None] | None = None,
                 on_fan_out: Callable[[float, int], None] | None = None) -> None:
        """`spawn(group, index)` makes another session to a group's upstream (not started);
        `on_move` hears of every move; `on_fan_out` of how long a job took to reach every miner's
        socket and how many miners."""
        self.router = router
        self.upstreams: dict[str, Upstream] = {}
        self._connections: dict[int, Connection] = {}
        self._spawn = spawn
        self._on_move = on_move
        self._on_fan_out = on_fan_out
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = get_logger(component="router")
        self._fanning: FanOut | None = None
        """The fan-out under way: `_fanned` of its miners had their turn, `_written` were written to."""
        self._fanned = 0
        self._written = 0
        self._fan_started = 0.0
        self._fan_handle: asyncio.Handle | None = None
        self._gc_resume = False
        """The cyclic GC was on when the fan-out under way began (it is off until it ends)."""

    # -- upstreams ------------------------------------------------------------------------------

    def add_group(self, name: str, priority: int, upstream: Upstream, can_grow: bool) -> None:
        self.router.add_group(name, priority, upstream.name, upstream.coin, can_grow)
        self._watch(upstream)

    def _watch(self, upstream: Upstream) -> None:
        self.upstreams[upstream.name] = upstream
        upstream.on_job(self._upstream_job)
        upstream.on_state(self._upstream_state)

    def upstream(self, name: str) -> Upstream | None:
        return self.upstreams.get(name)

    def _upstream_job(self, upstream: Upstream, work: UpstreamWork) -> None:
        started = time.perf_counter()
        # A full collection over ten thousand sessions takes tens of milliseconds: let it wait
        # until every miner has the job (at most one fan-out's worth of garbage meanwhile).
        with self._gc_paused():
            self.perform(self.router.upstream_job(upstream.name, work, time.monotonic()), started)

    def _upstream_state(self, upstream: Upstream) -> None:
        self.perform(self.router.upstream_state(upstream.name, upstream.healthy, upstream.work is not None,
                                                upstream.last_error, time.monotonic()))

    # -- miners and decisions -------------------------------------------------------------------

    def register(self, conn: Connection) -> None:
        self._connections[conn.session.conn_id] = conn
        self.router.miner_joined(conn.session)

    def unregister(self, conn: Connection) -> None:
        self._connections.pop(conn.session.conn_id, None)
        self.router.miner_left(conn.session, time.monotonic())

    def after_session(self) -> None:
        """A miner's messages went to its session: what the session's questions to the router set
        in motion (another upstream session for a filling group) happens now."""
        pending = self.router.take_pending()
        if pending:
            self.perform(pending)

    def set_decision(self, profile: str, coin: str | None, group: str | None, reason: str,
                     expected_gain: float | None = None) -> None:
        self.perform(self.router.set_decision(profile, coin, group, reason, expected_gain, time.monotonic()))

    def keepalive(self) -> None:
        started = time.perf_counter()
        with self._gc_paused():
            self.perform(self.router.keepalive(time.monotonic(), time.time()), started)

    def close(self) -> None:
        """Upstreams going down one by one at shutdown move nobody; staggered moves are dropped."""
        self.router.closing = True
        self._finish_fan_out()
        for task in self._tasks:
            task.cancel()

    # -- actions --------------------------------------------------------------------------------

    def perform(self, actions: list[RouterAction], started: float | None = None) -> None:
        """Carry the actions out; `started` (perf_counter) is when the event that made a fan-out
        came, so its time counts the sessions' notifies too, not only the writes."""
        for action in actions:
            if isinstance(action, FanOut):
                self._fan_out(action, time.perf_counter() if started is None else started)
            elif isinstance(action, Deliver):
                conn = self._connections.get(action.conn_id)
                if conn is not None:
                    conn.deliver(action.actions)
            elif isinstance(action, MoveLater):
                asyncio.get_running_loop().call_later(action.delay_s, self._move_batch, action)
            elif isinstance(action, OpenSession):
                self._open(action)
            elif isinstance(action, Move):
                self._log.warning("router.active", profile=action.profile, previous=action.previous,
                                  active=action.active, moved=action.miners, kind=action.kind,
                                  reason=action.reason)
                if self._on_move is not None:
                    self._on_move(action)

    def _move_batch(self, batch: MoveLater) -> None:
        if not self.router.closing:
            self.perform(self.router.move_batch(batch.conn_ids, batch.group, time.monotonic()))

    def _fan_out(self, fan_out: FanOut, started: float) -> None:
        self._finish_fan_out()  # one job at a time: the one under way reaches every miner first
        self._fanning, self._fanned, self._written, self._fan_started = fan_out, 0, 0, started
        # A full collection over ten thousand sessions takes tens of milliseconds: it waits until
        # every miner has the job (at most one fan-out's worth of garbage meanwhile).
        self._gc_resume = self._gc_resume or gc.isenabled()
        gc.disable()
        self._fan_slice()

    def _fan_slice(self, whole: bool = False) -> None:
        """The next slice of the fan-out under way (all the rest if `whole`)."""
        self._fan_handle = None
        fan_out = self._fanning
        if fan_out is None:
            return
        conn_ids, index, written = fan_out.conn_ids, self._fanned, self._written
        connections = self._connections
        deadline = time.perf_counter() + _FAN_OUT_SLICE_S
        while index < len(conn_ids):
            end = min(len(conn_ids), index + 64)
            for conn_id in conn_ids[index:end]:
                conn = connections.get(conn_id)
                if conn is not None:
                    data = fan_out.data_for(conn.session)
                    if data:
                        conn.send_now(data)
                        written += 1
            index = end
            if not whole and time.perf_counter() >= deadline:
                break
        self._fanned, self._written = index, written
        if index < len(conn_ids):
            self._fan_handle = asyncio.get_running_loop().call_soon(self._fan_slice)
            return
        self._fanning = None
        if self._gc_resume:
            self._gc_resume = False
            gc.enable()
        if self._on_fan_out is not None:
            self._on_fan_out(time.perf_counter() - self._fan_started, written)

    @contextlib.contextmanager
    def _gc_paused(self) -> Iterator[None]:
        """The cyclic GC off meanwhile, and still off until a fan-out begun meanwhile has ended."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if collecting:
                if self._fanning is not None:
                    self._gc_resume = True
                else:
                    gc.enable()

    def _finish_fan_out(self) -> None:
        """Make and write the rest of the fan-out under way now."""
        if self._fan_handle is not None:
            self._fan_handle.cancel()
            self._fan_slice(whole=True)

    def _open(self, action: OpenSession) -> None:
        if self._spawn is None:
            return
        upstream = self._spawn(action.group, action.index)
        self.router.add_member(action.group, upstream.name, upstream.coin)
        self._watch(upstream)
        task = asyncio.get_running_loop().create_task(upstream.start())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
