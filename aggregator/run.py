"""One aggregator run (fetch every source concurrently, reconcile, compute, write) and the loop."""

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import asyncpg
import structlog

from aggregator import metrics
from aggregator.config import AggregatorConfig
from aggregator.http import HttpClient
from aggregator.model import CoinId, SourceData
from aggregator.profit import CoinEconomics, Profitability, power_cost_per_day, profitability
from aggregator.reconcile import Reconciliation, reconcile
from aggregator.sources import Source, build_sources
from aggregator.sources.base import utcnow
from aggregator.store import SourceOutcome, WriteCounts, source_ages, write_run

log = structlog.get_logger("aggregator")


@dataclass(frozen=True)
class RunReport:
    started_at: datetime
    duration_s: float
    sources: tuple[SourceOutcome, ...]
    written: WriteCounts
    outliers: int
    conflicts: int
    stale_observations: int

    @property
    def ok(self) -> bool:
        """True when every enabled source answered usefully."""
        return all(s.ok for s in self.sources)

    @property
    def failed(self) -> tuple[SourceOutcome, ...]:
        return tuple(s for s in self.sources if not s.ok)

    def summary(self) -> str:
        """One line per source, then the totals: what `qscrypt aggregator run-once` prints."""
        lines = []
        for s in self.sources:
            status = f"ok, {s.observations} values" if s.ok else f"FAILED: {s.error}"
            lines.append(f"{s.name:<28} {s.duration_s * 1000:7.0f} ms  {status}")
            lines.extend(f"{'':<28}             warning: {w}" for w in s.warnings)
        w = self.written
        lines.append(
            f"run took {self.duration_s:.2f} s: {w.coins} coins, {w.pools} pools, "
            f"{w.hardware} hardware figures, "
            f"{w.profitability} profitability rows, {w.coin_history + w.pool_history} history rows "
            f"({w.deleted_history} expired deleted), {self.outliers} outliers, {self.conflicts} conflicts, "
            f"{len(self.failed)} of {len(self.sources)} sources failed"
        )
        return "\n".join(lines)


async def _fetch(source: Source, session: aiohttp.ClientSession) -> tuple[SourceOutcome, SourceData | None]:
    started = time.perf_counter()
    try:
        data = await source.fetch(HttpClient(session, source.name, source.config))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a source failing for any reason must not take the run down
        duration = time.perf_counter() - started
        error = str(exc) or type(exc).__name__
        log.warning("source failed", source=source.name, error=error, duration_s=round(duration, 3))
        metrics.SOURCE_FETCHES.labels(source.name, "failure").inc()
        metrics.FETCH_SECONDS.labels(source.name).observe(duration)
        return SourceOutcome(source.name, source.kind, False, duration, error=error), None
    duration = time.perf_counter() - started
    for warning in data.warnings:
        log.info("source warning", source=source.name, warning=warning)
    metrics.SOURCE_FETCHES.labels(source.name, "success").inc()
    metrics.FETCH_SECONDS.labels(source.name).observe(duration)
    outcome = SourceOutcome(
        source.name, source.kind, True, duration, observations=len(data.observations), warnings=data.warnings
    )
    return outcome, data


def _economics(config: AggregatorConfig, rec: Reconciliation) -> dict[CoinId, CoinEconomics]:
    economics = {}
    for coin in config.coins:
        coin_id = CoinId.of(coin.symbol, coin.algorithm)
        fresh = rec.of("coin", str(coin_id))
        if "difficulty" in fresh and "block_reward" in fresh:
            price = fresh["price_usd"].value if "price_usd" in fresh else None
            economics[coin_id] = CoinEconomics(
                coin_id, fresh["difficulty"].value, fresh["block_reward"].value, price
            )
    return economics


def solo_coins(config: AggregatorConfig, coin: CoinId) -> list[CoinId]:
    """What solo mining `coin` on its daemon earns: the coin, and what the proxy merge-mines on it."""
    merged = config.solo_merged.get(coin.symbol, ())
    return [coin, *(CoinId.of(symbol, coin.algorithm) for symbol in merged)]


def compute_profitability(config: AggregatorConfig, rec: Reconciliation) -> list[Profitability]:
    """Solo rows for every coin with fresh data, and a row for every pool whose main coin has it."""
    economics = _economics(config, rec)
    power = power_cost_per_day(config.reference_power_w, config.power_cost_usd_per_kwh)
    rows: list[Profitability | None] = [
        profitability(solo_coins(config, coin), economics, hashrate_hs=config.reference_hashrate_hs,
                      power_usd_per_day=power)
        for coin in economics
    ]
    for pool in config.pools:
        coins = [CoinId.of(symbol, pool.algorithm) for symbol in pool.coins]
        rows.append(profitability(
            coins, economics, hashrate_hs=config.reference_hashrate_hs, pool=pool.name,
            fee_percent=pool.fee_percent, power_usd_per_day=power,
        ))  # fmt: skip
    return [r for r in rows if r is not None]


async def run_once(
    config: AggregatorConfig,
    pool: asyncpg.Pool,
    *,
    environ: Mapping[str, str] | None = None,
) -> RunReport:
    """Fetch, reconcile, compute and write once. Source failures are reported, not raised; a
    database failure raises (nothing of the run is written then). `environ` stands in for
    os.environ when looking up API keys."""
    started_at = utcnow()
    started = time.perf_counter()
    chosen = build_sources(config, environ)
    # Each request carries its source's own timeout; the session must not cap them all at once.
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(headers={"User-Agent": config.user_agent}, timeout=timeout) as session:
        results = await asyncio.gather(*(_fetch(s, session) for s in chosen))
    outcomes = tuple(outcome for outcome, _ in results)
    data = [d for _, d in results if d is not None]
    rec = reconcile(
        data,
        now=started_at,
        stale_after_s=config.stale_after_s,
        band=config.outlier_band,
        authoritative={s.name for s in chosen if s.authoritative},
    )
    _log_reconciliation(rec)
    profits = compute_profitability(config, rec)
    async with pool.acquire() as conn, conn.transaction():
        written = await write_run(conn, config, started_at, outcomes, data, rec, profits)
        ages = await source_ages(conn, utcnow())
    for name, age in ages.items():
        metrics.DATA_AGE_SECONDS.labels(name).set(age)
    duration = time.perf_counter() - started
    metrics.RUN_SECONDS.observe(duration)
    report = RunReport(
        started_at, duration, outcomes, written, len(rec.outliers), len(rec.conflicts), len(rec.stale)
    )
    metrics.RUNS.labels("ok" if report.ok else "partial").inc()
    log.info("aggregator run", duration_s=round(duration, 3), failed=[s.name for s in report.failed],
             profitability_rows=written.profitability)  # fmt: skip
    return report


def _log_reconciliation(rec: Reconciliation) -> None:
    for outlier in rec.outliers:
        o = outlier.observation
        metrics.OUTLIERS.labels(o.source, o.quantity).inc()
        log.warning(
            "outlier rejected",
            source=o.source,
            subject=o.subject,
            quantity=o.quantity,
            value=o.value,
            reference=outlier.reference,
            deviation=round(outlier.deviation, 4),
        )
    for conflict in rec.conflicts:
        _kind, subject, quantity = conflict.key
        log.warning("sources disagree, value not updated", subject=subject, quantity=quantity,
                    values={o.source: o.value for o in conflict.observations})  # fmt: skip
    for o in rec.stale:
        log.info("stale value ignored", source=o.source, subject=o.subject, quantity=o.quantity,
                 observed_at=o.observed_at.isoformat())  # fmt: skip


async def run_every(
    config: AggregatorConfig,
    pool: asyncpg.Pool,
    seconds: float,
    *,
    runs: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """`run_once` every `seconds` until cancelled (or `runs` times). Runs never overlap: a run
    that takes longer than the period delays the next one instead of racing it. Any failure, the
    database's included, is logged and the loop goes on."""
    if seconds <= 0:
        raise ValueError("the period must be positive")
    done = 0
    next_at = time.monotonic()
    while runs is None or done < runs:
        try:
            await run_once(config, pool, environ=environ)
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.RUNS.labels("error").inc()
            log.exception("aggregator run failed")
        done += 1
        if runs is not None and done >= runs:
            break
        next_at += seconds
        now = time.monotonic()
        if next_at < now:  # overran: start again at once, and count the period from here
            next_at = now
        await asyncio.sleep(next_at - now)
