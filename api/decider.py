"""The decision loop: every profile's choice, re-evaluated every second and whenever new data
lands, persisted when it changes (with a NOTIFY), and held in memory for the handlers.

Reads are served from memory, so a decision request costs no database round trip. Each pass
asks PostgreSQL one cheap question (has a new profitability run, a profile or another process's
decision appeared?) and reloads and re-decides everything only then; otherwise only the verdicts
the clock alone can change (a dwell ending, data going stale) are decided again. A switch is
re-decided inside a transaction that locks the profile's row, so several API processes never
switch the same profile twice.
"""

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from api import db
from api.decision import Choice, Held, Option, Rule, Verdict, decide
from api.market import Figures, Market
from api.metrics import ApiMetrics
from api.profiles import Profile
from api.strategies import rank

Clock = Callable[[], datetime]

log = structlog.get_logger("api.decider")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DecisionView:
    """One profile's decision as last evaluated, with what it was made from."""

    profile: Profile
    verdict: Verdict
    held: db.HeldRow | None
    options: tuple[Option, ...]
    figures: dict[Choice, Figures]
    data_as_of: datetime | None
    hashrate_hs: float | None
    evaluated_at: datetime
    etag: str


class Decider:
    def __init__(
        self,
        pool: asyncpg.Pool,
        rule: Rule,
        metrics: ApiMetrics,
        *,
        clock: Clock = utcnow,
        every_s: float = 1.0,
    ) -> None:
        self.rule = rule
        self._pool = pool
        self._metrics = metrics
        self._clock = clock
        self._every_s = every_s
        self._lock = asyncio.Lock()
        self._version: tuple[Any, ...] | None = None
        self._generation = 0
        self._profiles: list[Profile] = []
        self._held: dict[str, db.HeldRow] = {}
        self._markets: dict[str, Market] = {}
        self._views: dict[str, DecisionView] = {}
        self.last_pass: datetime | None = None

    def now(self) -> datetime:
        return self._clock()

    async def run(self) -> None:
        """Evaluate every `every_s` until cancelled; a failed pass (database away) is logged and the
        last decisions keep being served."""
        while True:
            try:
                await self.refresh()
            except db.UNAVAILABLE as exc:
                self._metrics.evaluations.labels("error").inc()
                log.warning("decision pass failed", error=str(exc) or type(exc).__name__)
            except Exception:  # a bug in one pass must not stop every later decision
                self._metrics.evaluations.labels("error").inc()
                log.exception("decision pass failed")
            await asyncio.sleep(self._every_s)

    async def refresh(self, *, reload: bool = False) -> None:
        """One pass: after a change (or with `reload`) reload and decide for every profile; else
        decide again only where the clock alone can change the verdict, so that a quiet pass
        costs one query and leaves the event loop to the requests."""
        async with self._lock:
            current = await db.version(self._pool)
            changed = reload or current != self._version
            if changed:
                await self._reload(current)
            now = self._clock()
            views = {}
            switched = []
            for profile in self._profiles:
                view = self._views.get(profile.name)
                due = view is None or (view.verdict.recheck_at is not None and now >= view.verdict.recheck_at)
                if changed or due:
                    view = await self._evaluate(profile, now)
                    if view is not None and view.verdict.switch:
                        switched.append(profile.name)
                if view is not None:
                    views[profile.name] = view
            self._views = views
            self.last_pass = now
            self._metrics.evaluations.labels("ok").inc()
            for algorithm, market in self._markets.items():
                self._metrics.data_age.labels(algorithm).set((now - market.computed_at).total_seconds())
            if switched:
                await db.announce(self._pool, switched)

    async def market(self, algorithm: str) -> Market | None:
        """The latest run for `algorithm`: from memory when this process has loaded it since the
        last change, else from the database (and kept, unless data changed meanwhile)."""
        cached = self._markets.get(algorithm)
        if cached is not None:
            return cached
        generation = self._generation
        loaded = await db.market(self._pool, algorithm)
        # Only algorithms with data are kept: a client asking for made-up ones must not grow memory.
        if loaded is not None and generation == self._generation:
            self._markets[algorithm] = loaded
        return loaded

    def view(self, name: str) -> DecisionView | None:
        view = self._views.get(name)
        if view is None or view.verdict.stale or view.data_as_of is None:
            return view
        now = self._clock()
        if (now - view.data_as_of).total_seconds() <= self.rule.max_data_age_s:
            return view
        # The data went stale since the last pass: say so now rather than up to a pass later. The
        # rule never moves on stale data, so there is nothing to persist.
        verdict = decide(
            view.held.held if view.held else None,
            view.options,
            data_as_of=view.data_as_of,
            now=now,
            rule=self.rule,
        )
        return _with_etag(replace(view, verdict=verdict, evaluated_at=now))

    def views(self) -> list[DecisionView]:
        return [v for v in (self.view(name) for name in sorted(self._views)) if v is not None]

    async def _reload(self, current: tuple[Any, ...]) -> None:
        self._generation += 1
        profiles = await db.profiles(self._pool)
        held = await db.held(self._pool)
        algorithms = {p.algorithm for p in profiles} | set(self._markets)
        markets = {}
        for algorithm in sorted(algorithms):
            market = await db.market(self._pool, algorithm)
            if market is not None:
                markets[algorithm] = market
        self._profiles, self._held, self._markets, self._version = profiles, held, markets, current

    async def _evaluate(self, profile: Profile, now: datetime) -> DecisionView | None:
        market = self._markets.get(profile.algorithm)
        ranked = rank(profile, market) if market else []
        figures = {Choice(f.candidate.coin, f.candidate.pool): f for f in ranked}
        options = tuple(Option(choice, f.usd_per_day_net) for choice, f in figures.items())
        data_as_of = market.computed_at if market else None
        held = self._held.get(profile.name)
        pin = _pin(profile)
        verdict = decide(held.held if held else None, options, data_as_of=data_as_of, now=now, rule=self.rule,
                         pin=pin)
        if verdict.switch:
            saved = await self._switch(profile.name, options, figures, data_as_of, now, pin)
            if saved is None:
                return None
            verdict, held = saved
        hashrate = (profile.hashrate_hs or market.reference_hashrate_hs) if market else profile.hashrate_hs
        return _with_etag(
            DecisionView(profile, verdict, held, options, figures, data_as_of, hashrate, now, "")
        )

    async def _switch(
        self,
        name: str,
        options: tuple[Option, ...],
        figures: dict[Choice, Figures],
        data_as_of: datetime | None,
        now: datetime,
        pin: Choice | None,
    ) -> tuple[Verdict, db.HeldRow | None] | None:
        """Persist a switch after deciding again under the profile's row lock, against the held
        choice as stored (another process may have moved first); None when the profile is gone."""
        async with self._pool.acquire() as conn, conn.transaction():
            exists, held = await db.lock_held(conn, name)
            if not exists:
                return None
            verdict = decide(
                held.held if held else None, options, data_as_of=data_as_of, now=now, rule=self.rule, pin=pin
            )
            if not verdict.switch or verdict.choice is None:
                return verdict, held
            chosen = figures.get(verdict.choice)
            url = chosen.candidate.endpoints[0] if chosen and chosen.candidate.endpoints else None
            await db.save_decision(
                conn,
                name,
                verdict.choice,
                stratum_url=url,
                usd_per_day_net=chosen.usd_per_day_net if chosen else None,
                gain_pct=verdict.gain_pct,
                reason=verdict.reason,
                data_as_of=data_as_of,
                decided_at=now,
            )
        new = db.HeldRow(Held(verdict.choice, now), url)
        self._held[name] = new
        self._metrics.switches.labels(name).inc()
        log.info(
            "decision changed",
            profile=name,
            choice=str(verdict.choice),
            previous=str(held.held.choice) if held else None,
            reason=verdict.reason,
        )
        return verdict, new


def _pin(profile: Profile) -> Choice | None:
    """A `fixed` profile's coin and pool: chosen whatever the market data says, or without any."""
    return Choice(profile.coin, profile.pool) if profile.strategy == "fixed" and profile.coin else None


def _with_etag(view: DecisionView) -> DecisionView:
    """A weak validator over what the decision says, leaving out what moves with the clock alone
    (ages, the reason's seconds): a client polling an unchanged decision gets 304s."""
    v = view.verdict
    stable = [
        view.profile.name,
        view.profile.strategy,
        str(v.choice),
        v.since,
        v.stale,
        view.data_as_of,
        str(v.runner_up.choice) if v.runner_up else None,
        view.hashrate_hs,
        *((o.choice.coin, o.choice.pool, o.usd_per_day_net) for o in (v.chosen, v.runner_up) if o),
    ]
    digest = hashlib.sha256(json.dumps(stable, default=str).encode()).hexdigest()[:32]
    return replace(view, etag=f'W/"{digest}"')
