"""Whole runs over the fixture APIs into the real (embedded) PostgreSQL."""

import asyncio
import itertools
import json
from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from aggregator import run_every, run_once
from aggregator.config import SourceConfig
from aggregator.store import ranked
from tests.aggregator.fixture_server import ENVIRON, FixtureServer, Reply, fixture_config

SOURCES = {
    "coingecko", "binance", "whattomine", "minerstat", "minerstat_hardware", "hashrate_no", "daemon:LTC",
    "twominers:2miners-ltc", "nanopool:nanopool-etc",
}  # fmt: skip
# Worked out by hand in test_profit.py: 1 GH/s, LTC at D 9e7 / 6.25 LTC / 84.10 USD,
# DOGE at D 3.6e7 / 10 000 DOGE / 0.38 USD.
LTC_PER_DAY = 6_000_000 / 2**32  # 0.0013969838619232178
LTC_USD = LTC_PER_DAY * 84.10  # 0.1174863427877426
DOGE_PER_DAY = 24_000_000_000 / 2**32  # 5.587935447692871
DOGE_USD = DOGE_PER_DAY * 0.38  # 2.123415470123291


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def coin(db: asyncpg.Pool, symbol: str) -> asyncpg.Record:
    return await db.fetchrow("SELECT * FROM coins WHERE symbol = $1", symbol)


async def test_a_run_over_the_fixtures_fills_every_table(
    db: asyncpg.Pool, fixture_server: FixtureServer
) -> None:
    successes_before = sample("qscrypt_aggregator_source_fetches_total", source="coingecko", result="success")
    report = await run_once(fixture_config(fixture_server), db, environ=ENVIRON)

    assert report.ok, report.summary()
    assert {s.name for s in report.sources} == SOURCES
    assert report.outliers == 1  # minerstat's DOGE price, ten times too low
    assert report.conflicts == 0

    ltc = await coin(db, "LTC")
    # The daemon is authoritative: its difficulty, reward (coinbasevalue 625000000) and hashrate.
    assert (ltc["name"], ltc["algorithm"], ltc["stale"]) == ("Litecoin", "scrypt", False)
    assert float(ltc["price_usd"]) == 84.1  # median of 84.0, 84.10000000 and 84.2
    assert ltc["difficulty"] == 90_000_000.0
    assert float(ltc["block_reward"]) == 6.25
    assert ltc["block_time_s"] == 150.0
    assert ltc["network_hashrate"] == 2581234567890123.5
    assert ltc["height"] == 3012345
    assert ltc["updated_at"] == report.started_at
    sources = json.loads(ltc["sources"])
    assert sources["difficulty"]["rule"] == "authoritative"
    assert set(sources["difficulty"]["sources"]) == {"daemon:LTC"}
    assert sources["price_usd"]["rule"] == "median"
    assert set(sources["price_usd"]["sources"]) == {"coingecko", "binance", "minerstat"}

    doge = await coin(db, "DOGE")
    assert float(doge["price_usd"]) == 0.38  # minerstat's 0.038 rejected
    assert doge["difficulty"] == 36_000_000.0  # median of 35e6 and 37e6
    assert float(doge["block_reward"]) == 10000
    assert doge["block_time_s"] == 60.0
    assert doge["network_hashrate"] == (2505397589333333 + 2648849612800000) / 2
    assert doge["stale"] is False
    assert set(json.loads(doge["sources"])["price_usd"]["sources"]) == {"coingecko", "binance"}

    etc = await coin(db, "ETC")  # tracked for its pool; no source knows its network: stale
    assert etc["price_usd"] is None and etc["stale"] is True

    history = await db.fetch(
        "SELECT c.symbol, h.source, h.price_usd, h.difficulty"
        " FROM coin_history h JOIN coins c ON c.id = h.coin_id"
    )
    by_key = {(r["symbol"], r["source"]): r for r in history}
    assert set(by_key) == {
        ("LTC", s) for s in ("coingecko", "binance", "whattomine", "minerstat", "daemon:LTC", "consensus")
    } | {("DOGE", s) for s in ("coingecko", "binance", "whattomine", "minerstat", "consensus")}
    assert float(by_key[("DOGE", "minerstat")]["price_usd"]) == 0.038  # raw, outlier included
    assert by_key[("LTC", "whattomine")]["difficulty"] == 89_000_000.0
    assert by_key[("LTC", "consensus")]["difficulty"] == 90_000_000.0

    pools = {r["name"]: r for r in await db.fetch(
        "SELECT p.*, c.symbol FROM pools p JOIN coins c ON c.id = p.coin_id"
    )}  # fmt: skip
    assert set(pools) == {"2miners-ltc", "merged-ltc-doge", "nanopool-etc"}
    twominers = pools["2miners-ltc"]
    assert (twominers["symbol"], twominers["hashrate"], twominers["miners"], float(twominers["fee_pct"])) == (
        "LTC", 312456789012.0, 287, 1.0,
    )  # fmt: skip
    assert (twominers["source"], twominers["stale"]) == ("twominers:2miners-ltc", False)
    assert json.loads(twominers["endpoints"]) == [{"url": "stratum+tcp://ltc.2miners.com:8080"}]
    merged = pools["merged-ltc-doge"]
    assert (merged["symbol"], merged["merged_coins"], merged["source"], merged["hashrate"]) == (
        "LTC", ["DOGE"], "config", None,
    )  # fmt: skip
    nanopool = pools["nanopool-etc"]
    assert (nanopool["symbol"], nanopool["hashrate"], nanopool["miners"]) == (
        "ETC",
        pytest.approx(9876543.21e6),
        3456,
    )
    assert await db.fetchval("SELECT count(*) FROM pool_history") == 3

    hardware = {r["slug"]: r for r in await db.fetch(
        "SELECT h.slug, h.name, h.vendor, h.kind, m.algorithm, m.hashrate_hs, m.power_w, m.source, m.stale "
        "FROM hardware h JOIN hardware_mining m ON m.hardware_id = h.id"
    )}  # fmt: skip
    assert set(hardware) == {"antminer-l7", "antminer-l9", "elphapex-dg1"}
    l7 = hardware["antminer-l7"]
    assert (l7["name"], l7["vendor"], l7["kind"], l7["algorithm"]) == (
        "Antminer L7",
        "antminer",
        "asic",
        "scrypt",
    )
    assert l7["hashrate_hs"] == 9.4e9  # median of minerstat 9.5 GH/s and hashrate.no 9.3 GH/s
    assert l7["power_w"] == 3412.5
    assert l7["source"] == "hashrate_no,minerstat_hardware"
    assert hardware["antminer-l9"]["power_w"] == pytest.approx(3360.0)
    assert (hardware["elphapex-dg1"]["hashrate_hs"], hardware["elphapex-dg1"]["power_w"]) == (14e9, None)

    rows = await _ranked(db)
    assert [(r["symbol"], r["pool"]) for r in rows] == [
        ("LTC", "merged-ltc-doge"), ("DOGE", None), ("LTC", None), ("LTC", "2miners-ltc"),
    ]  # fmt: skip
    merged_row, doge_row, ltc_row, twominers_row = rows
    assert merged_row["coins_per_day"] == pytest.approx(LTC_PER_DAY)
    assert merged_row["usd_per_day"] == pytest.approx(LTC_USD + DOGE_USD)  # 2.2409018129110336
    assert merged_row["usd_per_day_net"] == pytest.approx((LTC_USD + DOGE_USD) * 0.98)  # 2.196083776652813
    assert doge_row["usd_per_day_net"] == pytest.approx(DOGE_USD)
    assert (ltc_row["coins_per_day"], ltc_row["usd_per_day_net"]) == (
        pytest.approx(LTC_PER_DAY),
        pytest.approx(LTC_USD),
    )
    assert twominers_row["usd_per_day_net"] == pytest.approx(LTC_USD * 0.99)  # 0.11631147935986517
    assert float(twominers_row["fee_pct"]) == 1.0
    assert json.loads(merged_row["inputs"])["coins"]["DOGE"]["price_usd"] == 0.38
    assert {r["hashrate_hs"] for r in rows} == {1e9}

    statuses = await db.fetch("SELECT * FROM source_status")
    assert {r["source"] for r in statuses} == SOURCES
    assert all(r["last_success_at"] == report.started_at and r["consecutive_failures"] == 0 for r in statuses)
    assert await db.fetchval("SELECT count(*) FROM source_observations WHERE stale") == 0
    assert sample("qscrypt_aggregator_source_fetches_total", source="coingecko", result="success") == (
        successes_before + 1
    )
    assert sample("qscrypt_aggregator_fetch_seconds_count", source="daemon:LTC") >= 1
    assert 0 <= sample("qscrypt_aggregator_data_age_seconds", source="binance") < 60
    assert sample("qscrypt_aggregator_outliers_total", source="minerstat", quantity="price_usd") >= 1


async def _ranked(db: asyncpg.Pool) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return await ranked(conn, "scrypt")


async def test_the_ranking_is_one_indexed_query(db: asyncpg.Pool, fixture_server: FixtureServer) -> None:
    await run_once(fixture_config(fixture_server), db, environ=ENVIRON)
    async with db.acquire() as conn, conn.transaction():
        # A handful of rows is cheaper to scan: forbid that to see the plan a full table gets.
        await conn.execute("SET LOCAL enable_seqscan = off")
        from aggregator.store import RANKED_SQL

        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {RANKED_SQL}", "scrypt"))
    assert "profitability_best_idx" in plan


async def test_a_second_run_appends_history_and_upserts_realtime_rows(
    db: asyncpg.Pool, fixture_server: FixtureServer
) -> None:
    config = fixture_config(fixture_server)
    first = await run_once(config, db, environ=ENVIRON)
    # CoinGecko moves: LTC at 90.00, so the median of 90.0, 84.1 and 84.2 is 84.2.
    fixture_server.script("/coingecko/api/v3/simple/price", Reply(
        b'{"litecoin":{"usd":90.0,"last_updated_at":1795400100},"dogecoin":{"usd":0.38,"last_updated_at":1795400100}}'
    ))  # fmt: skip
    second = await run_once(config, db, environ=ENVIRON)
    assert first.ok and second.ok

    counts = {
        table: await db.fetchval(f"SELECT count(*) FROM {table}")
        for table in ("coins", "coin_history", "pools", "pool_history", "hardware", "hardware_mining",
                      "profitability", "source_observations", "source_status")
    }  # fmt: skip
    assert counts == {
        "coins": 3, "coin_history": 22, "pools": 3, "pool_history": 6, "hardware": 3, "hardware_mining": 3,
        "profitability": 8, "source_observations": counts["source_observations"], "source_status": 9,
    }  # fmt: skip
    ltc = await coin(db, "LTC")
    assert float(ltc["price_usd"]) == 84.2
    assert ltc["updated_at"] == second.started_at
    computed = [r[0] for r in await db.fetch("SELECT DISTINCT computed_at FROM profitability ORDER BY 1")]
    assert computed == [first.started_at, second.started_at]
    rows = await _ranked(db)
    assert {r["computed_at"] for r in rows} == {second.started_at}  # the latest run only
    solo_ltc = next(r for r in rows if r["symbol"] == "LTC" and r["pool"] is None)
    assert solo_ltc["usd_per_day"] == pytest.approx(LTC_PER_DAY * 84.2)


async def test_failing_sources_leave_the_others_written_and_their_data_stale(
    db: asyncpg.Pool, fixture_server: FixtureServer
) -> None:
    config = fixture_config(fixture_server)
    config = replace(config, coingecko=replace(config.coingecko, timeout_s=0.3))
    assert (await run_once(config, db, environ=ENVIRON)).ok
    fixture_server.script(
        "/coingecko/api/v3/simple/price", Reply.file("coingecko/simple_price.json", delay_s=1)
    )
    fixture_server.script("/2miners-ltc/api/stats", Reply(b"Internal Server Error", 500))
    fixture_server.script("/minerstat/v2/hardware", Reply.file("common/cloudflare_502.html"))
    fixture_server.script("/whattomine/coins/6.json", Reply(b'{"id":6,"tag":"DOGE","difficu'))
    fixture_server.script("/whattomine/coins/4.json", Reply(b"[1, 2"))

    report = await run_once(config, db, environ=ENVIRON)

    assert not report.ok
    errors = {s.name: s.error for s in report.failed}
    assert set(errors) == {"coingecko", "twominers:2miners-ltc", "minerstat_hardware", "whattomine"}
    assert "timed out after 0.3 s (after 3 attempts)" in errors["coingecko"]
    assert "HTTP 500 (Internal Server Error) (after 3 attempts)" in errors["twominers:2miners-ltc"]
    assert (
        "HTML page where JSON was expected: 'api.example.com | 502: Bad gateway'"
        in errors["minerstat_hardware"]
    )
    assert "truncated JSON" in errors["whattomine"]
    summary = report.summary()
    assert all(name in summary for name in errors) and "4 of 9 sources failed" in summary

    # The failed sources' own values are marked stale; the others' are fresh.
    stale = {r["source"]: r["n"] for r in await db.fetch(
        "SELECT source, count(*) FILTER (WHERE stale) AS n FROM source_observations GROUP BY source"
    )}  # fmt: skip
    assert stale["coingecko"] == 2 and stale["whattomine"] == 10 and stale["twominers:2miners-ltc"] == 5
    assert stale["binance"] == 0 and stale["minerstat"] == 0 and stale["daemon:LTC"] == 0
    status = {r["source"]: r for r in await db.fetch("SELECT * FROM source_status")}
    assert (
        status["coingecko"]["consecutive_failures"] == 1 and "timed out" in status["coingecko"]["last_error"]
    )
    assert status["coingecko"]["last_success_at"] < report.started_at
    assert status["binance"]["last_success_at"] == report.started_at

    # LTC goes on without CoinGecko: the median of Binance and Minerstat.
    ltc = await coin(db, "LTC")
    assert float(ltc["price_usd"]) == pytest.approx(84.15) and ltc["stale"] is False
    assert set(json.loads(ltc["sources"])["price_usd"]["sources"]) == {"binance", "minerstat"}
    # DOGE's price is left to Binance (0.38) and Minerstat (0.038), which disagree: the old price
    # stays, marked stale, and so does its difficulty, now known from Minerstat alone.
    doge = await coin(db, "DOGE")
    assert float(doge["price_usd"]) == 0.38 and doge["stale"] is True
    doge_sources = json.loads(doge["sources"])
    assert doge_sources["price_usd"]["stale"] is True
    assert doge["difficulty"] == 37_000_000.0 and doge_sources["difficulty"]["rule"] == "single"
    assert report.conflicts == 1

    # The pool keeps its last figures, flagged; its history row for this run has none.
    twominers = await db.fetchrow("SELECT * FROM pools WHERE name = '2miners-ltc'")
    assert (twominers["hashrate"], twominers["stale"]) == (312456789012.0, True)
    history = await db.fetch(
        "SELECT h.hashrate FROM pool_history h JOIN pools p ON p.id = h.pool_id"
        " WHERE p.name = '2miners-ltc' ORDER BY ts"
    )
    hashrates = [r[0] for r in history]
    assert hashrates == [312456789012.0, None]

    # Hardware: hashrate.no still answers for the L7 and L9; the DG1+ was Minerstat's alone.
    figures = await db.fetch(
        "SELECT h.slug, m.hashrate_hs, m.source, m.stale"
        " FROM hardware h JOIN hardware_mining m ON m.hardware_id = h.id"
    )
    mining = {r["slug"]: r for r in figures}
    assert (mining["antminer-l7"]["hashrate_hs"], mining["antminer-l7"]["stale"]) == (9.3e9, False)
    assert (mining["elphapex-dg1"]["hashrate_hs"], mining["elphapex-dg1"]["stale"]) == (14e9, True)

    # Profitability uses fresh values only: DOGE has no trusted price, so its USD is unknown
    # and the merged pool counts LTC alone.
    rows = {(r["symbol"], r["pool"]): r for r in await _ranked(db)}
    assert rows[("DOGE", None)]["usd_per_day"] is None
    assert rows[("DOGE", None)]["coins_per_day"] == pytest.approx(86400 * 1e9 * 10_000 / (37e6 * 2**32))
    merged = rows[("LTC", "merged-ltc-doge")]
    assert merged["usd_per_day"] == pytest.approx(LTC_PER_DAY * 84.15)
    assert json.loads(merged["inputs"])["missing"] == ["DOGE"]
    assert sample("qscrypt_aggregator_source_fetches_total", source="whattomine", result="failure") >= 1


async def test_values_older_than_stale_after_are_not_used(
    db: asyncpg.Pool, fixture_server: FixtureServer
) -> None:
    # With the production default (30 min), the fixtures' own timestamps (2026-11-23) are old:
    # only sources stamped at fetch time (Binance, the daemon, pools without `now`, hardware) count.
    report = await run_once(fixture_config(fixture_server, stale_after_s=1800.0), db, environ=ENVIRON)
    assert report.ok and report.stale_observations > 0
    ltc = await coin(db, "LTC")
    assert float(ltc["price_usd"]) == 84.1 and json.loads(ltc["sources"])["price_usd"]["rule"] == "single"
    assert ltc["difficulty"] == 90_000_000.0 and ltc["stale"] is False  # the daemon's, fetched now
    doge = await coin(db, "DOGE")
    assert doge["difficulty"] is None and doge["stale"] is True
    stale_sources = {
        r[0] for r in await db.fetch("SELECT DISTINCT source FROM source_observations WHERE stale")
    }
    assert stale_sources == {"coingecko", "whattomine", "minerstat", "twominers:2miners-ltc"}


async def test_history_older_than_the_retention_is_deleted(
    db: asyncpg.Pool, fixture_server: FixtureServer
) -> None:
    config = fixture_config(fixture_server, history_retention_days=30.0)
    first = await run_once(config, db, environ=ENVIRON)
    old = first.started_at - timedelta(days=31)
    await db.execute("UPDATE coin_history SET ts = $1", old)
    await db.execute("UPDATE pool_history SET ts = $1", old)
    await db.execute("UPDATE profitability SET computed_at = $1", old)
    second = await run_once(config, db, environ=ENVIRON)
    assert second.written.deleted_history == 11 + 3 + 4
    assert await db.fetchval("SELECT min(ts) FROM coin_history") == second.started_at
    assert await db.fetchval("SELECT count(*) FROM profitability") == 4


async def test_run_every_never_overlaps_and_survives_failures(
    db: asyncpg.Pool, fixture_server: FixtureServer
) -> None:
    config = fixture_config(fixture_server)
    # Each run takes at least 0.3 s (a slow CoinGecko) against a 0.05 s period.
    fixture_server.script(
        "/coingecko/api/v3/simple/price", Reply.file("coingecko/simple_price.json", delay_s=0.3)
    )
    fixture_server.script("/2miners-ltc/api/stats", Reply(b"garbage{"))
    await asyncio.wait_for(run_every(config, db, 0.05, runs=3, environ=ENVIRON), timeout=30)
    starts = [r[0] for r in await db.fetch("SELECT DISTINCT computed_at FROM profitability ORDER BY 1")]
    assert len(starts) == 3
    assert all(b - a >= timedelta(seconds=0.3) for a, b in itertools.pairwise(starts))
    # A database that cannot be reached fails the run, not the loop.
    unreachable = await asyncpg.create_pool("postgresql://postgres@127.0.0.1:9/none", min_size=0)
    errors_before = sample("qscrypt_aggregator_runs_total", result="error")
    await asyncio.wait_for(run_every(config, unreachable, 0.01, runs=2, environ=ENVIRON), timeout=30)
    assert sample("qscrypt_aggregator_runs_total", result="error") == errors_before + 2
    await unreachable.close()


async def test_a_run_with_every_source_off_still_writes_the_configured_rows(
    db: asyncpg.Pool, fixture_server: FixtureServer
) -> None:
    off = SourceConfig(enabled=False)
    names = ("coingecko", "binance", "whattomine", "minerstat", "minerstat_hardware", "hashrate_no", "daemon",
             "twominers", "nanopool")  # fmt: skip
    report = await run_once(replace(fixture_config(fixture_server), **dict.fromkeys(names, off)), db)
    assert report.ok and report.sources == ()
    assert await db.fetchval("SELECT count(*) FROM coins WHERE stale") == 3
    assert await db.fetchval("SELECT count(*) FROM pools") == 3
    assert await db.fetchval("SELECT count(*) FROM profitability") == 0
