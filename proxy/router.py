"""Which miners mine on which upstream: routes per profile, failover, job fan-out, moves.

The router is the `Hub` every miner session talks to. It owns no sockets: connections register a
`deliver` callback and the router hands each the actions its session produced. A new upstream job
is serialised once (in the JobBook) and the same bytes go to every miner on that upstream.

Each profile has a route: the coin and upstream its decision names (none for `default` until a
decision arrives), and the upstream group its miners mine on now. Failover happens inside a route:
the decided group first, then the route's coin's other groups by priority, then any healthy one.
"""

import asyncio
import gc
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from mining import stratum
from proxy.extranonce import PrefixAllocator, PrefixSpaceFull
from proxy.jobs import JobBook, ProxyJob
from proxy.session import Action, Assignment, MinerSession
from proxy.upstream.base import Upstream, UpstreamWork
from qscrypt.log import get_logger

MIN_MINER_EXTRANONCE2 = 2
"""Bytes of extranonce2 each miner keeps for itself: 65536 coinbases per job before ntime rolls."""


class Connection(Protocol):
    session: MinerSession

    def deliver(self, actions: list[Action]) -> None: ...

    def write(self, data: bytes) -> None: ...

    def write_now(self, data: bytes) -> None: ...


@dataclass
class Member:
    """One upstream session inside a group, with the extranonce prefixes it hands to miners."""

    upstream: Upstream
    allocator: PrefixAllocator | None = None
    layout: tuple[bytes, int] | None = None
    """(extranonce1, extranonce2_size) the allocator was made for; a change re-homes its miners."""


@dataclass
class Group:
    """Upstream sessions to one configured upstream. More than one only when its extranonce2 space
    is too small to give every miner a prefix."""

    name: str
    priority: int
    members: list[Member] = field(default_factory=list)
    spawn: Callable[[int], Upstream] | None = None

    @property
    def healthy(self) -> bool:
        """Can take miners: an upstream with work, and the extranonce space to place them in."""
        return any(m.upstream.healthy and m.allocator is not None for m in self.members)


@dataclass
class Route:
    profile: str
    coin: str | None = None
    preferred: str | None = None
    """The upstream group the profile's decision names."""
    active: str | None = None
    reason: str = ""
    expected_gain: float | None = None
    decided: bool = False
    """A decision changed the route and its move is still to come: that move is a switch."""
    started_at: float | None = None
    """When the route first had an upstream."""


START, FAILOVER, FAILBACK, SWITCH = "start", "failover", "failback", "switch"


@dataclass(frozen=True, slots=True)
class Move:
    """A route changed upstream: what `on_move` reports (and switch_events records, switches only).

    `kind`: START (the route's first upstream, or a better one coming up while the proxy starts),
    FAILOVER (off an upstream that failed), FAILBACK (back to the preferred one once it is healthy
    again), SWITCH (a decision named another upstream)."""

    profile: str
    previous: str | None
    active: str
    miners: int
    reason: str
    expected_gain: float | None
    kind: str = SWITCH


DEFAULT_PROFILE = "default"
STARTUP_S = 10.0
"""Moves in a route's first seconds (a preferred upstream that connected a moment after another)
are part of starting up, not failbacks."""
_DIFFICULTIES_REMEMBERED = 100_000


class Router:
    def __init__(self, prefix_size: int, grace_s: float, fallback_to_preferred: bool,
                 authorize: Callable[[str, str], bool],
                 on_move: Callable[[Move], None] | None = None,
                 stagger: tuple[int, float] = (200, 0.1), worker: int | None = None,
                 keepalive_s: float = 30.0) -> None:
        self.prefix_size = prefix_size
        self.worker = worker
        """This process's index in a multi-process proxy: its session ids carry it."""
        self.grace_s = grace_s
        self.fallback_to_preferred = fallback_to_preferred
        self._authorize = authorize
        self._on_move = on_move
        self.book = JobBook()
        self.groups: dict[str, Group] = {}
        self.routes: dict[str, Route] = {DEFAULT_PROFILE: Route(DEFAULT_PROFILE)}
        self.on_fan_out: Callable[[float, int], None] | None = None
        """Told how long each job took to reach every miner's socket, and how many miners."""
        self.stagger = stagger
        """Profit switches move (miners, every seconds): a pool never sees them all at once."""
        self._profile_of: dict[str, str] = {}  # subscription session id -> profile, for resumes
        self._connections: dict[int, Connection] = {}
        self._by_upstream: dict[str, set[int]] = {}
        self._current: dict[str, ProxyJob] = {}
        self._member_of: dict[str, tuple[Group, Member]] = {}
        self._left_at: dict[str, float] = {}
        self._fanned_at: dict[str, float] = {}
        self.keepalive_s = keepalive_s
        """A miner that has had no job for this long gets the current one again (fresh ntime)."""
        self._difficulty_of: OrderedDict[str, float] = OrderedDict()  # worker -> last difficulty
        self.closing = False
        """Set at shutdown: upstreams closing one by one must not move miners around."""
        self._log = get_logger(component="router")

    # -- upstreams ------------------------------------------------------------------------------

    def add_group(self, name: str, priority: int, first: Upstream,
                  spawn: Callable[[int], Upstream] | None = None) -> Group:
        group = Group(name, priority, spawn=spawn)
        self.groups[name] = group
        self._add_member(group, first)
        return group

    def _add_member(self, group: Group, upstream: Upstream) -> Member:
        member = Member(upstream)
        group.members.append(member)
        self._member_of[upstream.name] = (group, member)
        upstream.on_job(self._on_job)
        upstream.on_state(self._on_state)
        return member

    def upstream(self, name: str) -> Upstream | None:
        entry = self._member_of.get(name)
        return entry[1].upstream if entry else None

    def ordered_groups(self) -> list[Group]:
        return sorted(self.groups.values(), key=lambda g: (g.priority, g.name))

    def _on_job(self, upstream: Upstream, work: UpstreamWork) -> None:
        now = time.monotonic()
        group, member = self._member_of[upstream.name]
        layout = (work.extranonce1, work.extranonce2_size)
        if member.layout != layout:
            self._new_layout(group, member, layout, now)
        job = self.book.add(upstream.name, work, now, upstream.coin)
        self._current[upstream.name] = job
        self.reroute(now)
        self._fan_out(upstream.name, job, now)

    def _on_state(self, upstream: Upstream) -> None:
        if self.closing:
            return
        if upstream.healthy:
            self.reroute(time.monotonic())
            return
        self._current.pop(upstream.name, None)
        self.reroute(time.monotonic())
        stranded = [self._connections[c] for c in self._by_upstream.get(upstream.name, ())
                    if c in self._connections]
        if stranded:
            # Nowhere to move them: say so, rather than answer every share "stale" without a word.
            message = stratum.notify("client.show_message", [
                f"qscrypt: upstream {upstream.name} has no work ({upstream.last_error or 'down'}); "
                "shares are refused until it is back"])
            self._log.warning("router.no_work", upstream=upstream.name, miners=len(stranded),
                              error=upstream.last_error)
            for conn in stranded:
                conn.write(message)

    def _new_layout(self, group: Group, member: Member, layout: tuple[bytes, int], now: float) -> None:
        extranonce2_size = layout[1]
        size = max(0, min(self.prefix_size, extranonce2_size - MIN_MINER_EXTRANONCE2))
        had_miners = member.allocator is not None and member.allocator.live > 0
        member.allocator = PrefixAllocator(size, worker=self.worker)
        member.layout = layout
        self._log.info("upstream.layout", upstream=member.upstream.name, extranonce1=layout[0].hex(),
                       extranonce2_size=extranonce2_size, prefix_size=size,
                       capacity=member.allocator.capacity)
        if had_miners:
            # The pool changed our extranonce (mining.set_extranonce or a reconnect): every miner
            # on it needs a new one too.
            for conn_id in list(self._by_upstream.get(member.upstream.name, ())):
                self._move(self._connections[conn_id], group, now, reason="extranonce changed")

    @property
    def active(self) -> str | None:
        """The group the default profile mines on."""
        return self.routes[DEFAULT_PROFILE].active

    def route_for(self, profile: str | None) -> Route:
        return self.routes.get(profile or DEFAULT_PROFILE) or self.routes[DEFAULT_PROFILE]

    def _candidates(self, route: Route) -> list[Group]:
        """Groups in the order the route wants them: decided group, its coin's, then the rest."""
        ordered = self.ordered_groups()
        rank = {g.name: i for i, g in enumerate(ordered)}

        def key(group: Group) -> tuple[int, int]:
            if group.name == route.preferred:
                return (0, 0)
            same_coin = route.coin is None or group.members[0].upstream.coin == route.coin
            return (1 if same_coin else 2, rank[group.name])

        return sorted(ordered, key=key)

    def _best_group(self, route: Route) -> Group | None:
        for group in self._candidates(route):
            if group.healthy:
                return group
        return None

    def _wants_move(self, route: Route, best: Group) -> bool:
        if route.active is None:
            return True
        current = self.groups[route.active]
        if not current.healthy:
            return best.name != route.active
        if best.name == route.active or (not self.fallback_to_preferred and route.preferred != best.name):
            return False
        order = [g.name for g in self._candidates(route)]
        return order.index(best.name) < order.index(route.active)

    def reroute(self, now: float) -> None:
        if self.closing:
            return
        for route in list(self.routes.values()):
            best = self._best_group(route)
            if best is not None and self._wants_move(route, best):
                self._switch(route, best, now)

    def set_decision(self, profile: str, coin: str | None, group: str | None, reason: str,
                     expected_gain: float | None = None) -> None:
        """A profile's decision changed: route its miners to `group` (or the best of `coin`)."""
        route = self.routes.setdefault(profile, Route(profile))
        route.coin, route.preferred = coin, group if group in self.groups else None
        route.reason, route.expected_gain = reason, expected_gain
        route.decided = True
        if route.active is None:
            # A new route starts where the default route is, so only a real change moves miners.
            route.active = self.routes[DEFAULT_PROFILE].active
            route.started_at = self.routes[DEFAULT_PROFILE].started_at
        self.reroute(time.monotonic())
        route.decided = False

    def _switch(self, route: Route, best: Group, now: float) -> None:
        previous = route.active
        route.active = best.name
        failover = previous is not None and not self.groups[previous].healthy
        if route.started_at is None:
            route.started_at = now
        if previous is None or (not failover and not route.decided and now - route.started_at < STARTUP_S):
            kind = START
        elif failover:
            kind = FAILOVER
        elif route.decided and best.name == route.preferred:
            kind = SWITCH
        else:
            kind = FAILBACK
        if previous is not None and previous not in {r.active for r in self.routes.values()}:
            # No route mines there any more: its jobs stay good only for the grace window.
            for member in self.groups[previous].members:
                self._left_at[member.upstream.name] = now
        conns = [c for c in self._connections.values()
                 if c.session.assignment is not None and self.route_for(c.session.profile) is route
                 and self._group_of(c.session.assignment.upstream) is not best]
        reason = route.reason if kind == SWITCH else kind
        self._log.warning("router.active", profile=route.profile, previous=previous, active=best.name,
                          moved=len(conns), kind=kind, reason=reason)
        if failover or not conns:
            for conn in conns:  # the old upstream is gone: every second counts
                self._move(conn, best, now, reason)
        else:
            self._stagger(conns, best.name)
        if self._on_move is not None:
            self._on_move(Move(route.profile, previous, best.name, len(conns), reason,
                               route.expected_gain if kind == SWITCH else None, kind))

    def _stagger(self, conns: list[Connection], group_name: str) -> None:
        batch, interval = self.stagger
        loop = asyncio.get_running_loop()
        for index in range(0, len(conns), batch):
            loop.call_later(interval * (index // batch), self._move_batch, conns[index:index + batch],
                            group_name)

    def _move_batch(self, conns: list[Connection], group_name: str) -> None:
        now = time.monotonic()
        group = self.groups[group_name]
        for conn in conns:
            session = conn.session
            if session.conn_id in self._connections and session.assignment is not None and \
                    self.route_for(session.profile).active == group_name and \
                    self._group_of(session.assignment.upstream) is not group:
                self._move(conn, group, now, "switch")

    def _group_of(self, upstream_name: str) -> Group | None:
        entry = self._member_of.get(upstream_name)
        return entry[0] if entry else None

    def _move(self, conn: Connection, group: Group, now: float, reason: str) -> None:
        session = conn.session
        assignment = self._reassign(session, group, now)
        if assignment is None:
            self._log.warning("router.move_failed", conn=session.conn_id, reason=reason,
                              problem="no capacity")
            return
        conn.deliver(session.move(assignment, self._current.get(assignment.upstream), now))

    def _reassign(self, session: MinerSession, group: Group, now: float) -> Assignment | None:
        """A new place for a miner in `group`, its old one given back (in this order: after a
        layout change the new place can be on the same upstream)."""
        assignment = self._allocate(group, now, resume_id=None)
        if assignment is None:
            return None
        if session.assignment is not None:
            self._release(session.conn_id, session.assignment, now)
        self._by_upstream.setdefault(assignment.upstream, set()).add(session.conn_id)
        return assignment

    # -- hub for miner sessions -----------------------------------------------------------------

    def register(self, conn: Connection) -> None:
        self._connections[conn.session.conn_id] = conn

    def unregister(self, conn: Connection, now: float) -> None:
        self._connections.pop(conn.session.conn_id, None)
        if conn.session.assignment is not None:
            self._release(conn.session.conn_id, conn.session.assignment, now)

    @property
    def miner_count(self) -> int:
        return len(self._connections)

    def subscribe(self, session: MinerSession, resume_id: str | None) -> Assignment | None:
        if resume_id is not None and session.profile is None:
            # A miner told to reconnect for a profile switch comes back on its profile's route.
            session.profile = self._profile_of.get(resume_id)
        active = self.route_for(session.profile).active
        if active is None:
            return None
        assignment = self._allocate(self.groups[active], time.monotonic(), resume_id)
        if assignment is not None:
            self._by_upstream.setdefault(assignment.upstream, set()).add(session.conn_id)
        return assignment

    def _allocate(self, group: Group, now: float, resume_id: str | None) -> Assignment | None:
        for member in group.members:
            upstream = member.upstream
            # Work, not READY: a new layout moves miners before the upstream is READY again.
            if upstream.work is None or member.allocator is None or member.layout is None:
                continue
            try:
                prefix, session_id = member.allocator.allocate(now, resume_id)
            except PrefixSpaceFull:
                continue
            self._ensure_spare(group, member)
            extranonce1, extranonce2_size = member.layout
            return Assignment(upstream.name, extranonce1 + prefix, extranonce2_size - len(prefix),
                              prefix, session_id)
        self._ensure_spare(group, None)
        return None

    def _ensure_spare(self, group: Group, used: Member | None) -> None:
        """Open one more upstream session before this group runs out of prefixes."""
        if group.spawn is None:
            return
        spare = [m for m in group.members if m.allocator is None or not m.allocator.full]
        if used is not None and used.allocator is not None and used.allocator.full:
            spare = [m for m in spare if m is not used]
        if spare:
            return
        upstream = group.spawn(len(group.members) + 1)
        self._add_member(group, upstream)
        self._log.info("upstream.extra_session", group=group.name, sessions=len(group.members))
        asyncio.get_running_loop().create_task(upstream.start())

    def _release(self, conn_id: int, assignment: Assignment, now: float) -> None:
        self._by_upstream.get(assignment.upstream, set()).discard(conn_id)
        entry = self._member_of.get(assignment.upstream)
        if entry is None:
            return
        member = entry[1]
        # After a layout change the allocator is new: the old prefix is not its to free.
        if member.allocator is not None and member.layout is not None and \
                assignment.extranonce1 == member.layout[0] + assignment.prefix:
            member.allocator.release(assignment.prefix, now)

    def authorize(self, session: MinerSession, username: str, password: str) -> bool:
        return self._authorize(username, password)

    def known_profile(self, profile: str) -> bool:
        return profile in self.routes

    def profile_chosen(self, session: MinerSession) -> tuple[Assignment, ProxyJob | None] | None:
        """A miner named its profile at authorize: where it must mine, when that is elsewhere."""
        assignment = session.assignment
        if assignment is None:
            return None
        if len(self._profile_of) > 100_000:
            self._profile_of.clear()  # bounded: only resumes in the last few minutes need it
        self._profile_of[assignment.session_id] = session.profile or DEFAULT_PROFILE
        active = self.route_for(session.profile).active
        if active is None or self._group_of(assignment.upstream) is self.groups[active]:
            return None
        new = self._reassign(session, self.groups[active], time.monotonic())
        return None if new is None else (new, self._current.get(new.upstream))

    def find_job(self, job_id: str) -> ProxyJob | None:
        return self.book.get(job_id)

    def is_current(self, job: ProxyJob, now: float) -> bool:
        if job.epoch != self.book.current_epoch(job.upstream) or job.upstream not in self._current:
            return False
        group = self._group_of(job.upstream)
        if group is not None:
            for route in self.routes.values():  # a loop, not any(): this runs for every share
                if route.active == group.name:
                    return True
        left = self._left_at.get(job.upstream)
        return left is not None and now - left <= self.grace_s

    def current_job(self, upstream: str) -> ProxyJob | None:
        return self._current.get(upstream)

    def remember_difficulty(self, worker: str, difficulty: float) -> None:
        """A worker's difficulty when its connection ends: where it starts when it comes back
        (after a reconnect for a switch or a failover, vardiff does not begin again from scratch)."""
        self._difficulty_of[worker] = difficulty
        self._difficulty_of.move_to_end(worker)
        while len(self._difficulty_of) > _DIFFICULTIES_REMEMBERED:
            self._difficulty_of.popitem(last=False)

    def known_difficulty(self, worker: str) -> float | None:
        return self._difficulty_of.get(worker)

    def keepalive(self, now: float, wall: float) -> int:
        """Every upstream whose miners have had no job for `keepalive_s` sends its current job
        again with a fresh ntime (wall clock) and clean_jobs false. Returns how many went out."""
        sent = 0
        for upstream, job in list(self._current.items()):
            if now - self._fanned_at.get(upstream, now) < self.keepalive_s:
                continue
            if not self._by_upstream.get(upstream):
                self._fanned_at[upstream] = now  # no miner to keep alive
                continue
            fresh = self.book.refreshed(job, int(wall), now)
            self._current[upstream] = fresh
            self._fan_out(upstream, fresh, now)
            sent += 1
        return sent

    # -- fan-out --------------------------------------------------------------------------------

    def _fan_out(self, upstream: str, job: ProxyJob, now: float) -> None:
        started = time.perf_counter()
        self._fanned_at[upstream] = now
        members = self._by_upstream.get(upstream, set())
        # A full collection over ten thousand sessions takes tens of milliseconds: let it wait
        # until every miner has the job (at most one fan-out's worth of garbage meanwhile).
        collecting = gc.isenabled()
        gc.disable()
        try:
            for conn_id in list(members):
                conn = self._connections.get(conn_id)
                if conn is None or conn.session.assignment is None or \
                        conn.session.assignment.upstream != upstream:
                    members.discard(conn_id)
                    continue
                data = conn.session.notify_data(job, now)
                if data:
                    conn.write_now(data)
        finally:
            if collecting:
                gc.enable()
        if self.on_fan_out is not None:
            self.on_fan_out(time.perf_counter() - started, len(members))

    def sessions(self) -> Iterable[MinerSession]:
        return (c.session for c in self._connections.values())
