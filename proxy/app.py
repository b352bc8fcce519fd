"""Wires the proxy together from configuration: upstreams, router, listeners, accounting, metrics."""

import asyncio
import contextlib
import gc
import hashlib
import hmac
import os
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from mining.coins import Coin
from mining.coins import coin as coin_by_symbol
from payouts.accounts import refusal as account_refusal
from payouts.db import account_names
from proxy import db
from proxy.accounting import Accounting, ShareWriter, share_log
from proxy.bans import BanList
from proxy.config import ProxyConfig, UpstreamConfig
from proxy.decisions import DecisionFeed
from proxy.dispatch import Dispatcher
from proxy.hashers import HasherPool
from proxy.journal import JournalDir, RecordJournal
from proxy.metrics import ProxyMetrics, serve_metrics, top_workers
from proxy.router import DEFAULT_PROFILE, FAILBACK, FAILOVER, START, SWITCH, Move, Router
from proxy.server import StratumServer
from proxy.upstream.base import Upstream
from proxy.upstream.pool import PoolUpstream

if TYPE_CHECKING:
    from proxy.coordinator.config import CoordinatorConfig
    from proxy.supervisor import WorkerLink
from qscrypt.log import get_logger

_MAX_WORKER_NAME = 128


def _upstream_coins(upstreams: list[UpstreamConfig]) -> list[Coin]:
    """The chains whose payout addresses name accounts: each upstream's coin on its network."""
    chains: list[Coin] = []
    for upstream in upstreams:
        try:
            chain = coin_by_symbol(upstream.coin, upstream.network)
        except ValueError:
            continue  # a coin without address rules here: its miners need registered names
        if chain not in chains:
            chains.append(chain)
    return chains


def _valid_worker_name(name: str) -> bool:
    return 0 < len(name) <= _MAX_WORKER_NAME and name.isprintable()


class Proxy:
    def __init__(self, config: ProxyConfig, dsn: str | None = None, worker: int | None = None) -> None:
        """`worker`: this process's index when it is one worker of a multi-process proxy."""
        if not config.upstreams:
            raise ValueError("proxy.upstreams: configure at least one upstream pool or daemon")
        self.config = config
        self.dsn = dsn
        self.log = get_logger(component="proxy")
        self.metrics = ProxyMetrics()
        # With a database, every share row and found block is journaled on disk first (proxy.journal),
        # in a directory of this process's own under spill_dir.
        self.journal: JournalDir | None = None
        self.blocks: RecordJournal | None = None
        log = None
        if dsn:
            name = "proxy" if worker is None else f"worker-{worker}"
            self.journal = JournalDir.claim(config.spill_dir, name)
            log = share_log(self.journal.shares, memory_rows=config.share_buffer_max)
            self.blocks = RecordJournal(self.journal.blocks)
        self.host = config.host
        self.accounting = Accounting(log=log, host=self.host)
        self.operator_bans = BanList()
        self._states: dict[str, str] = {}
        self._token_hashes = {hashlib.sha256(t.encode()).hexdigest() for t in config.tokens}
        self._accounts: set[str] = set()
        """Registered account names (payouts), refreshed from the database when they are required."""
        self._account_coins = _upstream_coins(config.upstreams)
        self.router = Router(config.extranonce_prefix_size, config.failover.grace_s,
                             config.failover.fallback_to_preferred, self._authorize,
                             (config.switching.stagger_miners, config.switching.stagger_interval_s),
                             worker, config.keepalive_s, self.host)
        self.dispatch = Dispatcher(self.router, self._spawn_session, self._on_move,
                                   lambda seconds, _miners: self.metrics.fan_out.observe(seconds))
        self.decisions = DecisionFeed(self.dispatch, config.switching, config.upstreams, dsn) \
            if config.switching.api_url else None
        self.hashers = HasherPool(config.hash_processes or os.cpu_count() or 1)
        self.server = StratumServer(self.dispatch, config.limits, config.vardiff, self.accounting,
                                    self.metrics, self.hashers, config.listen)
        self.writer: ShareWriter | None = None
        if dsn and log is not None and self.journal is not None and self.blocks is not None:
            from proxy.upstream.daemon import insert_block

            self.writer = ShareWriter(log, dsn, self.journal.quarantine, self.accounting,
                                      config.share_flush_s, records=[(self.blocks, insert_block)],
                                      metrics=self.metrics, retention_days=config.share_retention_days,
                                      pplns_factor=config.pplns_factor)
        self._metrics_http: WSGIServer | None = None
        self.ports: dict[str, int] = {}
        self.link: WorkerLink | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        for upstream_config in config.upstreams:
            first = self._make_upstream(upstream_config, upstream_config.name)
            # A pool's extranonce2 space can run out of miner prefixes: then another session to it.
            self.dispatch.add_group(upstream_config.name, upstream_config.priority, first,
                                    can_grow=upstream_config.kind == "pool")

    def _spawn_session(self, group: str, index: int) -> Upstream:
        config = next(c for c in self.config.upstreams if c.name == group)
        return self._make_upstream(config, f"{config.name}#{index}")

    def upstream(self, name: str) -> Upstream | None:
        return self.dispatch.upstream(name)

    @property
    def upstreams(self) -> list[Upstream]:
        """Every upstream session, the extra ones a filling group opened too (the dispatcher
        watches them all)."""
        return list(self.dispatch.upstreams.values())

    def _make_upstream(self, config: UpstreamConfig, name: str) -> Upstream:
        if config.kind == "daemon":
            from proxy.upstream.daemon import DaemonUpstream

            daemon = DaemonUpstream(config, self.config.failover, dsn=self.dsn, journal=self.blocks,
                                    host=self.host)
            daemon.on_aux_block = self._aux_block
            upstream: Upstream = daemon
        else:
            upstream = PoolUpstream(config, self.config.failover, name=name)
        self.metrics.upstream_up.labels(upstream.name).set(0)
        upstream.on_state(self._upstream_state)
        return upstream

    def _aux_block(self, coin: str, status: str) -> None:
        """A merge-mined block (proxy.upstream.aux) went to its chain: counted as Litecoin's are."""
        self.metrics.blocks.labels(coin, status).inc()

    def _authorize(self, username: str, password: str) -> bool | str:
        if not _valid_worker_name(username) or self.operator_bans.refuses_worker(username):
            return False
        if self.config.auth_mode == "tokens":
            digest = hashlib.sha256(password.split(",")[0].encode()).hexdigest()
            if not any(hmac.compare_digest(digest, known) for known in self._token_hashes):
                return False
        if self.config.require_accounts:
            why = account_refusal(username, self._account_coins, self._accounts)
            if why is not None:
                return f"qscrypt: {why}"
        return True

    def _upstream_state(self, upstream: Upstream) -> None:
        self.metrics.upstream_up.labels(upstream.name).set(1 if upstream.healthy else 0)
        state = "up" if upstream.healthy else "down"
        if self.dsn and self._states.get(upstream.name, "down") != state:
            # The dashboard shows each upstream's latest event as its state.
            self._states[upstream.name] = state
            task = asyncio.get_running_loop().create_task(self._record_state(upstream.name, state))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if upstream.healthy:
            # Soon, not now: the router moves its miners first (it hears of the state after us).
            asyncio.get_running_loop().call_soon(self._work_available)

    def _work_available(self) -> None:
        if self.router.has_work:
            self.server.work_available()

    def _on_move(self, move: Move) -> None:
        if move.profile == DEFAULT_PROFILE:
            for group in self.router.groups:
                self.metrics.upstream_active.labels(group).set(1 if group == move.active else 0)
            if self.link is not None and move.previous is None and move.active is not None:
                self.link.ready()  # work to hand out: the supervisor may send miners here now
        if move.kind == START:
            return
        if move.kind == FAILOVER:
            self.metrics.failovers.inc()
        elif move.kind == FAILBACK:
            self.metrics.failbacks.inc()
        else:
            self.metrics.switches.labels(move.profile).inc()
        if self.dsn:
            task = asyncio.get_running_loop().create_task(self._record_move(move))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _record_move(self, move: Move) -> None:
        """A profit switch is a row in switch_events, a failover or failback one in upstream_events;
        a database outage costs the row, not the move."""
        import asyncpg

        try:
            conn = await asyncpg.connect(self.dsn, timeout=5)
            try:
                if move.kind == SWITCH:
                    await db.insert_switch_event(conn, move.profile, move.miners, move.previous, move.active,
                                                 move.reason, move.expected_gain, host=self.host)
                else:
                    detail = {"profile": move.profile, "from": move.previous, "to": move.active,
                              "miners": move.miners}
                    await db.insert_upstream_event(conn, move.active, move.kind, detail, host=self.host)
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError) as exc:
            self.log.warning("move.not_recorded", error=str(exc), kind=move.kind, profile=move.profile,
                             previous=move.previous, active=move.active)

    async def _record_state(self, upstream: str, state: str) -> None:
        import asyncpg

        try:
            conn = await asyncpg.connect(self.dsn, timeout=5)
            try:
                await db.insert_upstream_event(conn, upstream, state, {})
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError) as exc:
            self.log.warning("state.not_recorded", error=str(exc), upstream=upstream, state=state)

    async def start(self, link_fd: int | None = None) -> None:
        """Listen on the configured ports, or, as a worker of a multi-process proxy, serve the
        connections its supervisor passes over `link_fd` (which also serves the metrics)."""
        await self.hashers.start()
        for upstream in list(self.upstreams):
            await upstream.start()
        listen = self.config.listen
        tls = None
        if listen.tls_port is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(str(listen.tls_cert), str(listen.tls_key))
        if link_fd is not None:
            from proxy.supervisor import WorkerLink

            def adopt(sock: socket.socket, kind: str, ip: str | None, via: str | None) -> None:
                self.server.adopt(sock, tls if kind == "tls" else None, ip, via)

            self.link = WorkerLink(link_fd, adopt, self.server.ban)
            self.server.on_gone = self.link.closed
            self.server.on_banned = self.link.banned
            self.link.start()
            if self.router.active is not None:
                self.link.ready()
        else:
            self.ports["tcp"] = await self.server.listen(listen.host, listen.port)
            if tls is not None and listen.tls_port is not None:
                self.ports["tls"] = await self.server.listen(listen.host, listen.tls_port, tls)
            if self.config.metrics_port:
                self._metrics_http = serve_metrics(self.config.metrics_port, self.metrics.registry,
                                                   self.readiness,
                                                   host=self.config.metrics_host or listen.host)
        if self.writer is not None:
            await self.writer.start()
        if self.decisions is not None:
            await self.decisions.start()
        if self.config.auth_mode == "tokens" and self.dsn:
            self._tasks.append(asyncio.create_task(self._refresh_tokens()))
        if self.config.require_accounts and self.dsn:
            self._tasks.append(asyncio.create_task(self._refresh_accounts()))
        if self.dsn:
            self._tasks.append(asyncio.create_task(self._poll_bans(), name="operator-bans"))
        self._tasks.append(asyncio.create_task(self._report()))
        self._tasks.append(asyncio.create_task(self._keepalive()))

    async def _keepalive(self) -> None:
        every = min(5.0, self.config.keepalive_s / 4)
        while True:
            await asyncio.sleep(every)
            self.dispatch.keepalive()

    async def _refresh_tokens(self) -> None:
        """Tokens of the `workers` table (sha256 hex in token_hash) join those from the config."""
        import asyncpg

        configured = set(self._token_hashes)
        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
                try:
                    stored = await db.worker_token_hashes(conn)
                finally:
                    await conn.close()
                self._token_hashes = configured | stored
            except (OSError, asyncpg.PostgresError) as exc:
                self.log.warning("tokens.refresh_failed", error=str(exc))
            await asyncio.sleep(30)

    async def _refresh_accounts(self) -> None:
        """The registered account names, every 10 s: a name registered through the API can mine
        within seconds."""
        import asyncpg

        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
                try:
                    self._accounts = await account_names(conn)
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresError) as exc:
                self.log.warning("accounts.refresh_failed", error=str(exc))
            await asyncio.sleep(10)

    async def _poll_bans(self) -> None:
        """The operator's bans (table `bans`), every bans_poll_s; an outage keeps the last ones."""
        import asyncpg

        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
                try:
                    bans = BanList.of(await db.operator_bans(conn))
                finally:
                    await conn.close()
                if bans != self.operator_bans:
                    self.operator_bans = bans
                    self.server.apply_operator_bans(bans)
                    self.log.info("bans.applied", workers=len(bans.workers), ips=len(bans.ips))
            except (OSError, asyncpg.PostgresError) as exc:
                self.log.warning("bans.refresh_failed", error=str(exc))
            await asyncio.sleep(self.config.bans_poll_s)

    async def _report(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(10)
            now = time.monotonic()
            self._count_time_on_coins(now - last)
            last = now
            self.report_workers(now)
            self.metrics.share_buffer.set(self.accounting.rows_waiting)
            self.report_aux_chains()

    def report_aux_chains(self) -> None:
        """Whether each merge-mined chain's node answers: a chain down mines on silently otherwise
        (Litecoin goes on, that coin's blocks are lost)."""
        from proxy.upstream.daemon import DaemonUpstream

        for upstream in self.dispatch.upstreams.values():
            if isinstance(upstream, DaemonUpstream):
                for chain in upstream.aux_chains:
                    up = self.metrics.aux_chain_up.labels(upstream.name, chain.symbol)
                    up.set(1 if chain.healthy else 0)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """/readyz: whether shares and blocks are being kept (the share writer runs under its
        supervisor, the journal takes rows); the database being away is reported, not a failure."""
        if self.writer is None:
            return True, {"share_writer": "none: no database, shares are counted in memory only"}
        return self.writer.health()

    def report_workers(self, now: float) -> None:
        """Hashrate and difficulty of the top workers: to the metrics, or, in a worker of a
        multi-process proxy, to the supervisor, which ranks all processes' workers together."""
        difficulty = {w: s.difficulty for s in self.router.sessions() for w in s.workers}
        figures = [(worker, stats.hashrate(now, self.accounting.window_s), difficulty.get(worker, 0.0))
                   for worker, stats in self.accounting.workers.items()]
        self.metrics.total_hashrate.set(sum(figure[1] for figure in figures))
        if self.link is not None:
            self.link.top_workers(top_workers(figures))
        else:
            self.metrics.top_workers.show(top_workers(figures))

    def _count_time_on_coins(self, seconds: float) -> None:
        """Each worker's time on the coin it mines now (a move inside the interval is attributed
        to where the miner is at its end: at most one report interval off)."""
        for session in self.router.sessions():
            upstream = self.dispatch.upstream(session.assignment.upstream) if session.assignment else None
            if upstream is None:
                continue
            for worker in session.workers:
                self.accounting.time_on_coin(worker, upstream.coin, seconds)

    async def close(self) -> None:
        try:
            self.dispatch.close()  # upstreams going down one by one are no failover
            for task in self._tasks:
                task.cancel()
            if self.decisions is not None:
                await self.decisions.close()
            await self.server.close()
            for upstream in self.upstreams:
                with contextlib.suppress(Exception):
                    await upstream.close()
        finally:
            # Whatever failed above: what is unwritten stays journaled, then the rest closes.
            try:
                if self.writer is not None:
                    await self.writer.close()
            finally:
                if self.journal is not None:
                    self.journal.release()
                if self._metrics_http is not None:
                    await asyncio.to_thread(self._metrics_http.shutdown)
                    self._metrics_http.server_close()
                await self.hashers.close()


def _tune_gc() -> None:
    """Every share allocates a few short-lived containers, freed by reference counting; with the
    default threshold (700) the cyclic collector would run every ~70 shares and keep re-walking
    ten thousand sessions. Collect less often, and never walk what start-up built."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def run_proxy(config: ProxyConfig, dsn: str | None, stop: asyncio.Event,
                    coordinator: "CoordinatorConfig | None" = None,
                    worker: tuple[int, int] | None = None) -> None:
    """The proxy until `stop`; with `coordinator`, also the Kafka fan-out of one upstream's work,
    crediting its workers in the proxy's own accounting. With `worker` = (index, control fd) it is
    one worker of a multi-process proxy and also stops when its supervisor is gone."""
    proxy = Proxy(config, dsn, worker[0] if worker else None)
    try:
        await proxy.start(worker[1] if worker else None)
    except BaseException:
        await proxy.close()  # what did start (hashers, upstream sessions) must not outlive a failed start
        raise
    _tune_gc()
    fan_out = None
    if coordinator is not None:
        from proxy.coordinator.run import run_coordinator

        fan_out = asyncio.create_task(run_coordinator(coordinator, config, dsn, stop,
                                                      accounting=proxy.accounting,
                                                      registry=proxy.metrics.registry), name="coordinator")
    try:
        if proxy.link is None:
            await stop.wait()
        else:
            waits = {asyncio.create_task(stop.wait()), asyncio.create_task(proxy.link.lost.wait())}
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            stop.set()
    finally:
        if fan_out is not None:
            await fan_out
        await proxy.close()
