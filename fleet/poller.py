"""The poller: every `poll_s`, each registered device's summary, pools and stats, at most
`concurrency` at a time, each command within `timeout_s`; a device that fails is retried after
poll_s, 2·poll_s, 4·poll_s… up to `backoff_max_s`, and its error is recorded, never raised. After
each good reading the device's own hashrate over `window_s` is set beside the proxy's measure of
its worker over the same window.

The schedule and the comparison are pure (`Backoff`, `fleet.measure`); this module is their
asyncio shell. Devices come from the database (the config file's, kept in step at start, and
those the API registered), re-read every poll, or from the config alone when there is no database.
"""

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import asyncpg
import structlog

from fleet import db
from fleet.cgminer import Reply
from fleet.client import DeviceError, query
from fleet.config import DeviceConfig, FleetConfig
from fleet.families import ReadingError, read
from fleet.measure import Sample, device_window, disagreement, proxy_hashrate
from fleet.metrics import FleetMetrics
from fleet.reading import Reading

log = structlog.get_logger("fleet")
Query = Callable[[str, int, str], Awaitable[Mapping[str, Reply]]]


@dataclass(frozen=True)
class Backoff:
    poll_s: float
    max_s: float

    def delay(self, failures: int) -> float:
        """Seconds to the next poll after `failures` failed polls in a row."""
        if failures <= 0:
            return self.poll_s
        return min(self.max_s, self.poll_s * 2.0 ** min(failures - 1, 30))


@dataclass
class DeviceState:
    device: DeviceConfig
    next_at: float = 0.0
    failures: int = 0
    reading: Reading | None = None
    read_at: float | None = None
    error: str | None = None
    samples: deque[Sample] = field(default_factory=deque)
    last_hw: tuple[float, int] | None = None


class Poller:
    def __init__(self, config: FleetConfig, metrics: FleetMetrics, pool: asyncpg.Pool | None = None,
                 clock: Callable[[], float] = time.time, query_fn: Query | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.pool = pool
        self.clock = clock
        self.backoff = Backoff(config.poll_s, config.backoff_max_s)
        self.states: dict[str, DeviceState] = {}
        self._limit = asyncio.Semaphore(config.concurrency)
        self._query = query_fn or self._tcp_query

    async def _tcp_query(self, host: str, port: int, command: str) -> Mapping[str, Reply]:
        return await query(host, port, command, timeout_s=self.config.timeout_s,
                           json_format=self.config.json_format)

    async def start(self) -> None:
        if self.pool is not None:
            await db.sync_config_devices(self.pool, self.config.devices)
        await self.refresh_devices()

    async def refresh_devices(self) -> None:
        """The registered devices now; a changed device starts afresh, a removed one leaves."""
        if self.pool is not None:
            registered = await db.devices(self.pool)
        else:
            registered = list(self.config.devices)
        registered = registered[: self.config.max_devices]
        wanted = {d.name: d for d in registered}
        for name in list(self.states):
            if name not in wanted or wanted[name] != self.states[name].device:
                del self.states[name]
                self.metrics.forget(name)
        for name, device in wanted.items():
            self.states.setdefault(name, DeviceState(device))
        self.metrics.devices.set(len(self.states))

    async def poll_due(self) -> int:
        """Polls every device whose time has come, concurrently; how many were polled."""
        now = self.clock()
        due = [s for s in self.states.values() if s.next_at <= now]
        await asyncio.gather(*(self._guarded(s) for s in due))
        return len(due)

    async def _guarded(self, state: DeviceState) -> None:
        async with self._limit:
            try:
                await self.poll(state)
            except asyncpg.PostgresError as exc:  # the reading stands; the database is the caller's worry
                log.warning("fleet.record_failed", device=state.device.name, error=str(exc))
            except (OSError, asyncpg.InterfaceError) as exc:
                log.warning("fleet.record_failed", device=state.device.name, error=str(exc))
            except Exception as exc:  # a bug must cost one device one poll, never the poller
                log.exception("fleet.poll_bug", device=state.device.name)
                state.failures += 1
                state.error = f"internal error reading the answer: {type(exc).__name__}: {exc}"
                state.next_at = self.clock() + self.backoff.delay(state.failures)
                self.metrics.down(state.device.name)

    async def read_device(self, device: DeviceConfig) -> Reading:
        """One reading: `summary+pools` then `stats` (a firmware that cannot join commands is asked
        for each alone). Raises DeviceError or ReadingError."""
        replies = dict(await self._query(device.host, device.port, "summary+pools"))
        summary = replies.get("summary")
        if summary is not None and summary.status.failed and replies.get("pools") is summary:
            replies = dict(await self._query(device.host, device.port, "summary"))
            with contextlib.suppress(DeviceError):
                replies.update(await self._query(device.host, device.port, "pools"))
        try:
            replies.update(await self._query(device.host, device.port, "stats"))
        except DeviceError as exc:
            # Summary alone is a reading: temperatures and chains are missing, and say why.
            replies.pop("stats", None)
            reading = read(replies, model_hint=device.model, rate_unit=device.rate_unit)
            return _with_problem(reading, f"stats: {exc}")
        return read(replies, model_hint=device.model, rate_unit=device.rate_unit)

    async def poll(self, state: DeviceState) -> None:
        device = state.device
        started = time.perf_counter()
        try:
            reading = await self.read_device(device)
        except (DeviceError, ReadingError) as exc:
            at = self.clock()
            state.failures += 1
            state.error = str(exc) if isinstance(exc, DeviceError) else f"{device.host}:{device.port}: {exc}"
            state.next_at = at + self.backoff.delay(state.failures)
            self.metrics.polls.labels(device.name, "error").inc()
            self.metrics.down(device.name)
            log.warning("fleet.poll_failed", device=device.name, error=state.error, failures=state.failures,
                        retry_in_s=round(state.next_at - at, 1))
            if self.pool is not None:
                await db.record_failure(self.pool, device.name, at, state.error, state.failures)
            return
        finally:
            self.metrics.poll_seconds.observe(time.perf_counter() - started)
        at = self.clock()
        state.failures, state.error = 0, None
        state.reading, state.read_at = reading, at
        state.next_at = at + self.backoff.delay(0)
        self.metrics.polls.labels(device.name, "ok").inc()
        self.metrics.show(device.name, reading, self._hw_rate(state, at, reading))
        state.samples.append(Sample(at, reading.total_hashes, reading.hashrate_hs, reading.elapsed_s))
        horizon = at - self.config.window_s - self.config.share_lag_s - 2 * self.config.poll_s
        while state.samples and state.samples[0].at < horizon:
            state.samples.popleft()
        if self.pool is not None:
            await db.record_reading(self.pool, device.name, at, reading)
            if device.worker:
                await self.compare(state, at)

    @staticmethod
    def _hw_rate(state: DeviceState, at: float, reading: Reading) -> float | None:
        previous, state.last_hw = state.last_hw, None
        if reading.hw_errors is None:
            return None
        state.last_hw = (at, reading.hw_errors)
        if previous is None or at <= previous[0] or reading.hw_errors < previous[1]:
            return None
        return (reading.hw_errors - previous[1]) / (at - previous[0])

    async def compare(self, state: DeviceState, now: float) -> None:
        """The device's hashrate against the proxy's measure of its worker, over the window that
        ends share_lag_s ago (shares still on their way to PostgreSQL are not missed)."""
        assert self.pool is not None
        end = now - self.config.share_lag_s
        window = device_window(state.samples, end - self.config.window_s, end)
        if window is None or window.end - window.start < 0.5 * self.config.window_s:
            return
        difficulty, shares = await db.worker_difficulty(self.pool, state.device.worker, window.start,
                                                        window.end)
        seconds = window.end - window.start
        measured = proxy_hashrate(difficulty, seconds)
        ratio = disagreement(window.hashrate_hs, measured)
        self.metrics.compare(state.device.name, window.hashrate_hs, measured, shares, ratio)
        await db.record_comparison(self.pool, state.device.name, seconds, window.hashrate_hs, measured,
                                   shares, ratio)

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        log.info("fleet.polling", devices=len(self.states), poll_s=self.config.poll_s)
        while not stop.is_set():
            try:
                await self.refresh_devices()
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                log.warning("fleet.devices_unavailable", error=str(exc))
            await self.poll_due()
            now = self.clock()
            next_at = min((s.next_at for s in self.states.values()), default=now + self.config.poll_s)
            # Wake at the next device's time, and at least every poll_s for newly registered ones.
            wait = max(0.05, min(next_at - now, self.config.poll_s))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)


def _with_problem(reading: Reading, problem: str) -> Reading:
    from dataclasses import replace

    return replace(reading, problems=(*reading.problems, problem))
