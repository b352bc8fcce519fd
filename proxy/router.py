"""Which miners mine on which upstream: routes per profile, failover, job fan-out, moves.

A pure core in the manner of h11's `Connection`: it takes events with the time — an upstream's new
job or state, a miner joining or leaving, a profile's decision, the keep-alive tick, a staggered
batch falling due — and returns actions: deliver these session actions to a miner, write this job
to these miners, move these miners later, open another session to an upstream, a move happened.
It owns no socket, timer, task or clock: `proxy.dispatch` carries the actions out. It is also the
`Hub` the miner sessions ask (subscribe, find a job, is it current).

A new upstream job is serialised once (in the JobBook) and the same bytes go to every miner on it.
Each profile has a route: the coin and upstream its decision names (none for `default` until a
decision arrives), and the upstream group its miners mine on now. Failover happens inside a route:
the decided group first, then the route's coin's other groups by priority, then any healthy one.
"""

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mining import stratum
from proxy.extranonce import PrefixAllocator, PrefixSpaceFull, host_tag
from proxy.jobs import JobBook, ProxyJob
from proxy.session import Action, Assignment, MinerSession, Send
from proxy.upstream.base import UpstreamWork
from qscrypt.log import get_logger

MIN_MINER_EXTRANONCE2 = 2
"""Bytes of extranonce2 each miner keeps for itself: 65536 coinbases per job before ntime rolls."""
DEFAULT_PROFILE = "default"
STARTUP_S = 10.0
"""Moves in a route's first seconds (a preferred upstream that connected a moment after another)
are part of starting up, not failbacks."""
_DIFFICULTIES_REMEMBERED = 100_000
_PROFILES_REMEMBERED = 100_000

START, FAILOVER, FAILBACK, SWITCH = "start", "failover", "failback", "switch"


# -- actions ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deliver:
    """Actions of one miner's session (a move, a message) for its connection."""

    conn_id: int
    actions: list[Action]


@dataclass(frozen=True, slots=True)
class FanOut:
    """A job for the miners on an upstream. Each miner's bytes are made when its turn to be written
    comes (`data_for`): a job to many miners goes out in slices, and making every miner's bytes at
    once would hold the loop for all of them."""

    upstream: str
    job: ProxyJob
    conn_ids: list[int]
    now: float

    def data_for(self, session: MinerSession) -> bytes:
        """The miner's notify (with a difficulty first if one is due); nothing if it moved since."""
        if not session.mines_on(self.upstream):
            return b""
        return session.notify_data(self.job, self.now)


@dataclass(frozen=True, slots=True)
class MoveLater:
    """A batch of a staggered switch: call `Router.move_batch` with these after `delay_s`."""

    delay_s: float
    conn_ids: tuple[int, ...]
    group: str


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Open one more session to the group's upstream (its extranonce space is nearly full) and
    tell the router with `add_member`."""

    group: str
    index: int


@dataclass(frozen=True, slots=True)
class Move:
    """A route changed upstream: what switch_events records (switches only) and the metrics count.

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


RouterAction = Deliver | FanOut | MoveLater | OpenSession | Move


# -- state -------------------------------------------------------------------------------------


@dataclass
class Member:
    """One upstream session inside a group, as its events describe it, with the extranonce
    prefixes it hands to miners."""

    name: str
    coin: str
    healthy: bool = False
    """READY with work: the upstream says it can take shares."""
    has_work: bool = False
    error: str | None = None
    allocator: PrefixAllocator | None = None
    layout: tuple[bytes, int] | None = None
    """(extranonce1, extranonce2_size) the allocator was made for; a change re-homes its miners."""


@dataclass
class Group:
    """Upstream sessions to one configured upstream. More than one only when its extranonce2 space
    is too small to give every miner a prefix (`can_grow`)."""

    name: str
    priority: int
    members: list[Member] = field(default_factory=list)
    can_grow: bool = False
    opening: bool = False
    """An extra session was asked for and has not been added yet."""

    @property
    def healthy(self) -> bool:
        """Can take miners: an upstream with work, and the extranonce space to place them in."""
        return any(m.healthy and m.allocator is not None for m in self.members)


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
    failed_over: bool = False
    """The route has left a failed upstream: the proxy is past starting, whatever the clock says."""


class Router:
    def __init__(self, prefix_size: int, grace_s: float, fallback_to_preferred: bool,
                 authorize: Callable[[str, str], bool | str], stagger: tuple[int, float] = (200, 0.1),
                 worker: int | None = None, keepalive_s: float = 30.0, host: str = "") -> None:
        self.prefix_size = prefix_size
        self.worker = worker
        """This process's index in a multi-process proxy: its session ids carry it."""
        self.tag = host_tag(host)
        """This host's tag (`[proxy] host_name`, hashed): its session ids carry it too."""
        self.grace_s = grace_s
        self.fallback_to_preferred = fallback_to_preferred
        self._authorize = authorize
        self.stagger = stagger
        """Profit switches move (miners, every seconds): a pool never sees them all at once."""
        self.keepalive_s = keepalive_s
        """A miner that has had no job for this long gets the current one again (fresh ntime)."""
        self.book = JobBook()
        self.groups: dict[str, Group] = {}
        self.routes: dict[str, Route] = {DEFAULT_PROFILE: Route(DEFAULT_PROFILE)}
        self.closing = False
        """Set at shutdown: upstreams closing one by one must not move miners around."""
        self._sessions: dict[int, MinerSession] = {}
        self._by_upstream: dict[str, set[int]] = {}
        self._current: dict[str, ProxyJob] = {}
        self._member_of: dict[str, tuple[Group, Member]] = {}
        self._left_at: dict[str, float] = {}
        self._fanned_at: dict[str, float] = {}
        self._profile_of: OrderedDict[str, str] = OrderedDict()  # subscription id -> profile, for resumes
        self._difficulty_of: OrderedDict[str, float] = OrderedDict()  # worker -> last difficulty
        self._pending: list[RouterAction] = []
        """Actions that came of a session's question (a subscribe that filled a group): the shell
        takes them with `take_pending` after handing a miner's messages to its session."""
        self._log = get_logger(component="router")

    def take_pending(self) -> list[RouterAction]:
        pending, self._pending = self._pending, []
        return pending

    # -- upstreams ------------------------------------------------------------------------------

    def add_group(self, name: str, priority: int, upstream: str, coin: str, can_grow: bool = False) -> Group:
        group = Group(name, priority, can_grow=can_grow)
        self.groups[name] = group
        self.add_member(name, upstream, coin)
        return group

    def add_member(self, group_name: str, upstream: str, coin: str) -> Member:
        group = self.groups[group_name]
        member = Member(upstream, coin)
        group.members.append(member)
        group.opening = False
        self._member_of[upstream] = (group, member)
        return member

    def ordered_groups(self) -> list[Group]:
        return sorted(self.groups.values(), key=lambda g: (g.priority, g.name))

    def upstream_job(self, upstream: str, work: UpstreamWork, now: float) -> list[RouterAction]:
        """The upstream has new work (a new job, or the same one on a new extranonce)."""
        group, member = self._member_of[upstream]
        actions: list[RouterAction] = []
        member.has_work = True
        layout = (work.extranonce1, work.extranonce2_size)
        if member.layout != layout:
            actions += self._new_layout(group, member, layout, now)
        job = self.book.add(upstream, work, now, member.coin)
        self._current[upstream] = job
        actions += self.reroute(now)
        actions.append(self._fan_out(upstream, job, now))
        return actions + self.take_pending()

    def upstream_state(self, upstream: str, healthy: bool, has_work: bool, error: str | None,
                       now: float) -> list[RouterAction]:
        _, member = self._member_of[upstream]
        member.healthy, member.has_work, member.error = healthy, has_work, error
        if self.closing:
            return []
        if healthy:
            return self.reroute(now) + self.take_pending()
        self._current.pop(upstream, None)
        actions = self.reroute(now)
        stranded = [c for c in self._by_upstream.get(upstream, ()) if c in self._sessions]
        if stranded:
            # Nowhere to move them: say so, rather than answer every share "stale" without a word.
            message = Send(stratum.notify("client.show_message", [
                f"qscrypt: upstream {upstream} has no work ({error or 'down'}); "
                "shares are refused until it is back"]))
            self._log.warning("router.no_work", upstream=upstream, miners=len(stranded), error=error)
            actions += [Deliver(conn_id, [message]) for conn_id in stranded]
        return actions + self.take_pending()

    def _new_layout(self, group: Group, member: Member, layout: tuple[bytes, int],
                    now: float) -> list[RouterAction]:
        extranonce2_size = layout[1]
        size = max(0, min(self.prefix_size, extranonce2_size - MIN_MINER_EXTRANONCE2))
        had_miners = member.allocator is not None and member.allocator.live > 0
        member.allocator = PrefixAllocator(size, self.tag, worker=self.worker)
        member.layout = layout
        self._log.info("upstream.layout", upstream=member.name, extranonce1=layout[0].hex(),
                       extranonce2_size=extranonce2_size, prefix_size=size,
                       capacity=member.allocator.capacity)
        if not had_miners:
            return []
        # The pool changed our extranonce (mining.set_extranonce or a reconnect): every miner on
        # it needs a new one too.
        actions: list[RouterAction] = []
        for conn_id in list(self._by_upstream.get(member.name, ())):
            actions += self._move(self._sessions[conn_id], group, now, reason="extranonce changed")
        return actions

    @property
    def active(self) -> str | None:
        """The group the default profile mines on."""
        return self.routes[DEFAULT_PROFILE].active

    @property
    def has_work(self) -> bool:
        """Whether a new miner (on the default profile) can be given work now."""
        active = self.active
        return active is not None and self.groups[active].healthy

    def route_for(self, profile: str | None) -> Route:
        return self.routes.get(profile or DEFAULT_PROFILE) or self.routes[DEFAULT_PROFILE]

    def _candidates(self, route: Route) -> list[Group]:
        """Groups in the order the route wants them: decided group, its coin's, then the rest."""
        ordered = self.ordered_groups()
        rank = {g.name: i for i, g in enumerate(ordered)}

        def key(group: Group) -> tuple[int, int]:
            if group.name == route.preferred:
                return (0, 0)
            same_coin = route.coin is None or group.members[0].coin == route.coin
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

    def reroute(self, now: float) -> list[RouterAction]:
        if self.closing:
            return []
        actions: list[RouterAction] = []
        for route in list(self.routes.values()):
            best = self._best_group(route)
            if best is not None and self._wants_move(route, best):
                actions += self._switch(route, best, now)
        return actions

    def set_decision(self, profile: str, coin: str | None, group: str | None, reason: str,
                     expected_gain: float | None, now: float) -> list[RouterAction]:
        """A profile's decision changed: route its miners to `group` (or the best of `coin`)."""
        route = self.routes.setdefault(profile, Route(profile))
        route.coin, route.preferred = coin, group if group in self.groups else None
        route.reason, route.expected_gain = reason, expected_gain
        route.decided = True
        if route.active is None:
            # A new route starts where the default route is, so only a real change moves miners.
            route.active = self.routes[DEFAULT_PROFILE].active
            route.started_at = self.routes[DEFAULT_PROFILE].started_at
        try:
            return self.reroute(now) + self.take_pending()
        finally:
            route.decided = False

    def _switch(self, route: Route, best: Group, now: float) -> list[RouterAction]:
        previous = route.active
        route.active = best.name
        failover = previous is not None and not self.groups[previous].healthy
        if route.started_at is None:
            route.started_at = now
        starting = not route.failed_over and now - route.started_at < STARTUP_S
        if previous is None or (not failover and not route.decided and starting):
            kind = START
        elif failover:
            kind = FAILOVER
            route.failed_over = True
        elif route.decided and best.name == route.preferred:
            kind = SWITCH
        else:
            kind = FAILBACK
        if previous is not None and previous not in {r.active for r in self.routes.values()}:
            # No route mines there any more: its jobs stay good only for the grace window.
            for member in self.groups[previous].members:
                self._left_at[member.name] = now
        moving = [s for s in self._sessions.values()
                  if s.assignment is not None and self.route_for(s.profile) is route
                  and self._group_of(s.assignment.upstream) is not best]
        reason = route.reason if kind == SWITCH else kind
        actions: list[RouterAction] = []
        if failover or not moving:
            for session in moving:  # the old upstream is gone: every second counts
                actions += self._move(session, best, now, reason)
        else:
            batch, interval = self.stagger
            ids = [s.conn_id for s in moving]
            actions += [MoveLater(interval * (index // batch), tuple(ids[index:index + batch]), best.name)
                        for index in range(0, len(ids), batch)]
        actions.append(Move(route.profile, previous, best.name, len(moving), reason,
                            route.expected_gain if kind == SWITCH else None, kind))
        return actions

    def move_batch(self, conn_ids: Iterable[int], group_name: str, now: float) -> list[RouterAction]:
        """A staggered batch fell due: move those of its miners that still belong there."""
        group = self.groups[group_name]
        actions: list[RouterAction] = []
        for conn_id in conn_ids:
            session = self._sessions.get(conn_id)
            if session is not None and session.assignment is not None and \
                    self.route_for(session.profile).active == group_name and \
                    self._group_of(session.assignment.upstream) is not group:
                actions += self._move(session, group, now, "switch")
        return actions + self.take_pending()

    def _group_of(self, upstream_name: str) -> Group | None:
        entry = self._member_of.get(upstream_name)
        return entry[0] if entry else None

    def _move(self, session: MinerSession, group: Group, now: float, reason: str) -> list[RouterAction]:
        assignment = self._reassign(session, group, now)
        if assignment is None:
            self._log.warning("router.move_failed", conn=session.conn_id, reason=reason,
                              problem="no capacity")
            return []
        job = self._current.get(assignment.upstream)
        return [Deliver(session.conn_id, session.move(assignment, job, now))]

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

    def _allocate(self, group: Group, now: float, resume_id: str | None) -> Assignment | None:
        for member in group.members:
            # Work, not READY: a new layout moves miners before the upstream is READY again.
            if not member.has_work or member.allocator is None or member.layout is None:
                continue
            try:
                prefix, session_id = member.allocator.allocate(now, resume_id)
            except PrefixSpaceFull:
                continue
            self._ensure_spare(group, member)
            extranonce1, extranonce2_size = member.layout
            return Assignment(member.name, extranonce1 + prefix, extranonce2_size - len(prefix), prefix,
                              session_id)
        self._ensure_spare(group, None)
        return None

    def _ensure_spare(self, group: Group, used: Member | None) -> None:
        """Ask for one more upstream session before this group runs out of prefixes."""
        if not group.can_grow or group.opening:
            return
        spare = [m for m in group.members if m.allocator is None or not m.allocator.full]
        if used is not None and used.allocator is not None and used.allocator.full:
            spare = [m for m in spare if m is not used]
        if spare:
            return
        group.opening = True
        self._log.info("upstream.extra_session", group=group.name, sessions=len(group.members) + 1)
        self._pending.append(OpenSession(group.name, len(group.members) + 1))

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

    # -- miners -----------------------------------------------------------------------------------

    def miner_joined(self, session: MinerSession) -> None:
        self._sessions[session.conn_id] = session

    def miner_left(self, session: MinerSession, now: float) -> None:
        """Its extranonce prefix is kept a while for a resume; its workers' difficulty too
        (after a reconnect for a switch or a failover, vardiff does not begin again from scratch)."""
        self._sessions.pop(session.conn_id, None)
        if session.assignment is not None:
            self._release(session.conn_id, session.assignment, now)
        for worker in session.workers:
            self._difficulty_of[worker] = session.difficulty
            self._difficulty_of.move_to_end(worker)
        while len(self._difficulty_of) > _DIFFICULTIES_REMEMBERED:
            self._difficulty_of.popitem(last=False)

    @property
    def miner_count(self) -> int:
        return len(self._sessions)

    def sessions(self) -> Iterable[MinerSession]:
        return self._sessions.values()

    # -- the hub the sessions ask -----------------------------------------------------------------

    def subscribe(self, session: MinerSession, resume_id: str | None, now: float) -> Assignment | None:
        if resume_id is not None and session.profile is None:
            # A miner told to reconnect for a profile switch comes back on its profile's route.
            session.profile = self._profile_of.get(resume_id)
        active = self.route_for(session.profile).active
        if active is None:
            return None
        assignment = self._allocate(self.groups[active], now, resume_id)
        if assignment is not None:
            self._by_upstream.setdefault(assignment.upstream, set()).add(session.conn_id)
        return assignment

    def authorize(self, session: MinerSession, username: str, password: str) -> bool | str:
        return self._authorize(username, password)

    def known_profile(self, profile: str) -> bool:
        return profile in self.routes

    def profile_chosen(self, session: MinerSession,
                       now: float) -> tuple[Assignment, ProxyJob | None] | None:
        """A miner named its profile at authorize: where it must mine, when that is elsewhere."""
        assignment = session.assignment
        if assignment is None:
            return None
        self._profile_of[assignment.session_id] = session.profile or DEFAULT_PROFILE
        while len(self._profile_of) > _PROFILES_REMEMBERED:  # only resumes of the last minutes need it
            self._profile_of.popitem(last=False)
        active = self.route_for(session.profile).active
        if active is None or self._group_of(assignment.upstream) is self.groups[active]:
            return None
        new = self._reassign(session, self.groups[active], now)
        return None if new is None else (new, self._current.get(new.upstream))

    def find_job(self, job_id: str) -> ProxyJob | None:
        return self.book.get(job_id)

    def retired_job(self, job_id: str) -> tuple[str, int] | None:
        return self.book.retired(job_id)

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

    def known_difficulty(self, worker: str) -> float | None:
        return self._difficulty_of.get(worker)

    # -- fan-out --------------------------------------------------------------------------------

    def keepalive(self, now: float, wall: float) -> list[RouterAction]:
        """Every upstream whose miners have had no job for `keepalive_s` sends its current job
        again with a fresh ntime (wall clock, POSIX seconds) and clean_jobs false."""
        actions: list[RouterAction] = []
        for upstream, job in list(self._current.items()):
            if now - self._fanned_at.get(upstream, now) < self.keepalive_s:
                continue
            if not self._by_upstream.get(upstream):
                self._fanned_at[upstream] = now  # no miner to keep alive
                continue
            fresh = self.book.refreshed(job, int(wall), now)
            self._current[upstream] = fresh
            actions.append(self._fan_out(upstream, fresh, now))
        return actions

    def _fan_out(self, upstream: str, job: ProxyJob, now: float) -> FanOut:
        self._fanned_at[upstream] = now
        members = self._by_upstream.get(upstream, set())
        conn_ids = []
        for conn_id in list(members):
            session = self._sessions.get(conn_id)
            if session is None or not session.mines_on(upstream):
                members.discard(conn_id)
                continue
            conn_ids.append(conn_id)
        return FanOut(upstream, job, conn_ids, now)
