"""The read endpoints over HTTP, on what the aggregator wrote from tests/fixtures."""

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.api.conftest import ClientFactory
from tests.api.market import LTC_USD, MERGED_NET, TWOMINERS_NET


async def get_json(client, path: str, status: int = 200) -> dict:
    response = await client.get(path)
    body = await response.json(content_type=None)
    assert response.status == status, body
    return body


def assert_problem(body: dict, status: int, parameter: str | None = None) -> None:
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    if parameter is not None:
        assert body["invalid-params"][0]["name"] == parameter, body
        assert body["detail"].startswith(f"{parameter}: ")


async def test_coins(market_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(market_dsn)
    items = (await get_json(client, "/v1/coins?algorithm=scrypt"))["items"]
    assert [c["symbol"] for c in items] == ["DOGE", "LTC"]
    assert len((await get_json(client, "/v1/coins"))["items"]) == 3  # ETC (etchash) too
    ltc = await get_json(client, "/v1/coins/ltc")  # symbols are matched in upper case
    assert (ltc["price_usd"], ltc["difficulty"], ltc["block_reward"], ltc["height"], ltc["stale"]) == (
        84.1,
        90_000_000.0,
        6.25,
        3012345,
        False,
    )
    assert ltc["sources"]["difficulty"]["rule"] == "authoritative"
    assert_problem(await get_json(client, "/v1/coins/XYZ", 404), 404)
    assert_problem(await get_json(client, "/v1/coins/LTC?algorithm=Scrypt!", 400), 400, "algorithm")
    assert_problem(await get_json(client, "/v1/coins?algo=scrypt", 400), 400, "algo")
    assert_problem(await get_json(client, "/v1/coins/L-T-C", 400), 400, "symbol")


async def test_coin_history_is_averaged_per_step(
    market_dsn: str, make_client: ClientFactory, pg_conn: asyncpg.Connection
) -> None:
    coin_id = await pg_conn.fetchval("SELECT id FROM coins WHERE symbol = 'LTC'")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    # One row a minute for ten minutes, price 80, 81, ... 89.
    await pg_conn.executemany(
        "INSERT INTO coin_history (coin_id, ts, source, price_usd, difficulty, height)"
        " VALUES ($1, $2, 'test', $3, $4, $5)",
        [(coin_id, base + timedelta(minutes=k), 80 + k, 1e6 * (k + 1), 100 + k) for k in range(10)],
    )
    client = await make_client(market_dsn)
    body = await get_json(
        client, "/v1/coins/LTC/history?source=test&from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z&step=5m"
    )
    assert (body["symbol"], body["source"], body["step_s"]) == ("LTC", "test", 300.0)
    points = body["points"]
    assert [p["ts"] for p in points] == ["2026-01-01T00:00:00+00:00", "2026-01-01T00:05:00+00:00"]
    # Buckets of five: prices 80..84 average 82, 85..89 average 87; heights take the latest.
    assert [(p["price_usd"], p["difficulty"], p["height"], p["samples"]) for p in points] == [
        (82.0, 3e6, 104, 5),
        (87.0, 8e6, 109, 5),
    ]
    one = await get_json(
        client,
        "/v1/coins/LTC/history?source=test&from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z&step=3600",
    )
    assert [(p["price_usd"], p["samples"]) for p in one["points"]] == [(84.5, 10)]
    # The aggregator's own run is there under "consensus", the default source.
    assert len((await get_json(client, "/v1/coins/LTC/history"))["points"]) == 1
    bad = "/v1/coins/LTC/history?from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z"
    assert_problem(await get_json(client, bad + "&step=0", 400), 400, "step")
    assert_problem(await get_json(client, bad + "&step=1x", 400), 400, "step")
    assert_problem(await get_json(client, bad.replace("01:00", "00:00") + "&step=1", 400), 400, "to")
    assert_problem(
        await get_json(
            client, "/v1/coins/LTC/history?from=2026-01-01T00:00:00Z&step=1s&to=2026-02-01T00:00:00Z", 400
        ),
        400,
        "step",
    )  # 2.7 M buckets
    assert_problem(await get_json(client, "/v1/coins/LTC/history?from=yesterday", 400), 400, "from")
    assert_problem(await get_json(client, "/v1/coins/LTC/history?from=2026-01-01T00:00:00", 400), 400, "from")


async def test_pools_and_their_history(market_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(market_dsn)
    pools = (await get_json(client, "/v1/pools"))["items"]
    assert [p["name"] for p in pools] == ["2miners-ltc", "merged-ltc-doge", "nanopool-etc"]
    assert [p["name"] for p in (await get_json(client, "/v1/pools?coin=ltc"))["items"]] == [
        "2miners-ltc",
        "merged-ltc-doge",
    ]
    merged = await get_json(client, "/v1/pools/merged-ltc-doge")
    assert (merged["coin"], merged["merged_coins"], merged["fee_pct"], merged["hashrate_hs"]) == (
        "LTC",
        ["DOGE"],
        2.0,
        None,
    )
    assert merged["endpoints"] == [{"url": "stratum+tcp://merged.example:3333"}]
    history = await get_json(client, "/v1/pools/2miners-ltc/history?coin=LTC")
    assert [(p["hashrate_hs"], p["miners"], p["samples"]) for p in history["points"]] == [
        (312456789012.0, 287.0, 1)
    ]
    assert_problem(await get_json(client, "/v1/pools/nope", 404), 404)
    assert_problem(await get_json(client, "/v1/pools/2miners-ltc?coin=DOGE", 404), 404)


async def test_hardware(market_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(market_dsn)
    items = (await get_json(client, "/v1/hardware?algorithm=scrypt&kind=asic"))["items"]
    assert [h["slug"] for h in items] == ["antminer-l7", "antminer-l9", "elphapex-dg1"]
    l7 = await get_json(client, "/v1/hardware/antminer-l7")
    assert (l7["name"], l7["vendor"], l7["kind"]) == ("Antminer L7", "antminer", "asic")
    (mining,) = l7["mining"]
    assert (mining["hashrate_hs"], mining["power_w"]) == (9.4e9, 3412.5)
    assert mining["joules_per_mh"] == pytest.approx(3412.5 / 9400)  # 0.363 J/MH
    assert (await get_json(client, "/v1/hardware?kind=gpu"))["items"] == []
    assert_problem(await get_json(client, "/v1/hardware?kind=fpga", 400), 400, "kind")
    assert_problem(await get_json(client, "/v1/hardware/antminer-x99", 404), 404)


async def test_profitability_ranks_coin_and_pool_gross_and_net(
    market_dsn: str, make_client: ClientFactory
) -> None:
    client = await make_client(market_dsn)
    body = await get_json(client, "/v1/profitability?algorithm=scrypt")
    assert (body["hashrate_hs"], body["power_usd_per_day"], body["stale"]) == (1e9, 0.0, False)
    assert 0 <= body["data_age_s"] < 600
    ranked = [(i["rank"], i["coin"], i["pool"]) for i in body["items"]]
    assert ranked == [
        (1, "LTC", "merged-ltc-doge"),
        (2, "DOGE", None),
        (3, "LTC", None),
        (4, "LTC", "2miners-ltc"),
    ]
    merged = body["items"][0]
    assert merged["usd_per_day"] == pytest.approx(2.2409018129110336)
    assert merged["usd_per_day_net"] == pytest.approx(MERGED_NET)
    assert [p["coin"] for p in merged["payouts"]] == ["LTC", "DOGE"]
    assert merged["stratum_url"] == "stratum+tcp://merged.example:3333"
    assert body["items"][3]["usd_per_day_net"] == pytest.approx(TWOMINERS_NET)

    # An Antminer L7 (9.4 GH/s, 3412.5 W) at 0.05 USD/kWh: power costs 4.095 USD a day.
    l7 = await get_json(
        client, "/v1/profitability?hashrate=9.4e9&watts=3412.5&power_cost=0.05&include_solo=false"
    )
    assert [i["pool"] for i in l7["items"]] == ["merged-ltc-doge", "2miners-ltc"]
    assert l7["power_usd_per_day"] == pytest.approx(4.095)
    assert l7["items"][0]["usd_per_day_after_fee"] == pytest.approx(2.2409018129110336 * 9.4 * 0.98)
    assert l7["items"][0]["usd_per_day_net"] == pytest.approx(2.2409018129110336 * 9.4 * 0.98 - 4.095)
    assert l7["items"][1]["usd_per_day_net"] == pytest.approx(LTC_USD * 9.4 * 0.99 - 4.095)  # a loss
    by_device = await get_json(
        client, "/v1/profitability?hardware=antminer-l7&power_cost=0.05&include_solo=false"
    )
    assert by_device["items"] == l7["items"]
    assert (by_device["hashrate_hs"], by_device["power_w"], by_device["hardware"]) == (
        9.4e9,
        3412.5,
        "antminer-l7",
    )
    # hashrate and watts given with hardware say what this one runs at: an undervolted L7.
    undervolted = await get_json(client, "/v1/profitability?hardware=antminer-l7&watts=3000&power_cost=0.05")
    assert (undervolted["hashrate_hs"], undervolted["power_w"]) == (9.4e9, 3000.0)
    assert undervolted["power_usd_per_day"] == pytest.approx(3.6)
    faster = await get_json(client, "/v1/profitability?hardware=antminer-l7&hashrate=1e10")
    assert (faster["hashrate_hs"], faster["power_w"]) == (1e10, 3412.5)
    assert_problem(await get_json(client, "/v1/profitability?hardware=nope", 404), 404, "hardware")

    etc = await get_json(client, "/v1/profitability?algorithm=etchash")  # tracked, but no data
    assert (etc["items"], etc["data_as_of"], etc["stale"]) == ([], None, True)
    for query, parameter in (
        ("hashrate=0", "hashrate"),
        ("hashrate=-5", "hashrate"),
        ("hashrate=fast", "hashrate"),
        ("hashrate=nan", "hashrate"),
        ("watts=1e99", "watts"),
        ("power_cost=-0.1", "power_cost"),
        ("include_solo=yes", "include_solo"),
        ("algorithm=SCRYPT", "algorithm"),
        ("hashrate=1&hashrate=2", "hashrate"),
    ):
        assert_problem(await get_json(client, f"/v1/profitability?{query}", 400), 400, parameter)


async def test_workers_blocks_and_switch_events(
    market_dsn: str, make_client: ClientFactory, pg_conn: asyncpg.Connection
) -> None:
    await pg_conn.execute("INSERT INTO profiles (name, strategy) VALUES ('ltc-only', 'max_coin')")
    await pg_conn.executemany(
        "INSERT INTO workers (name, profile, accepted, hashrate_hs, token_hash, host)"
        " VALUES ($1, $2, $3, $4, 'secret', $5)",
        # rig04's row predates migration 0011: no host.
        [(f"rig{i:02d}", "ltc-only" if i % 2 else "default", i * 10, i * 1e9,
          f"edge-{'ab'[i % 2]}" if i < 4 else None) for i in range(5)],
    )
    found = datetime(2026, 11, 20, tzinfo=UTC)
    await pg_conn.executemany(
        "INSERT INTO blocks (coin, height, hash, worker, reward, status, found_at, host)"
        " VALUES ($1, $2, $3, 'rig01', 6.25, $4, $5, 'edge-b')",
        [
            (
                "LTC" if i < 3 else "DOGE",
                100 + i,
                f"{i:064x}",
                "accepted" if i else "rejected",
                found + timedelta(hours=i),
            )
            for i in range(5)
        ],
    )
    await pg_conn.executemany(
        "INSERT INTO switch_events (profile, worker_count, from_upstream, to_upstream, reason, ts, host)"
        " VALUES ($1, 3, $2, $3, 'better', $4, $5)",
        [("default", f"u{i}", f"u{i + 1}", found + timedelta(minutes=i), f"edge-{'ab'[i % 2]}")
         for i in range(3)],
    )
    client = await make_client(market_dsn)

    page = await get_json(client, "/v1/workers?limit=2")
    assert [w["name"] for w in page["items"]] == ["rig00", "rig01"]
    assert "token_hash" not in page["items"][0]
    rest = await get_json(client, f"/v1/workers?limit=2&after={page['next_after']}")
    assert [w["name"] for w in rest["items"]] == ["rig02", "rig03"]
    ltc_only = await get_json(client, "/v1/workers?profile=ltc-only")
    assert [(w["name"], w["accepted"]) for w in ltc_only["items"]] == [("rig01", 10), ("rig03", 30)]
    assert ltc_only["next_after"] is None
    # Each row says which proxy host wrote it (several hosts share one database).
    everyone = await get_json(client, "/v1/workers")
    assert [w["proxy_host"] for w in everyone["items"]] == ["edge-a", "edge-b", "edge-a", "edge-b", None]

    blocks = await get_json(client, "/v1/blocks?coin=LTC&limit=2")
    assert [b["height"] for b in blocks["items"]] == [102, 101]  # newest first
    assert {b["proxy_host"] for b in blocks["items"]} == {"edge-b"}
    older = await get_json(client, f"/v1/blocks?coin=LTC&limit=2&before={blocks['next_before']}")
    assert [(b["height"], b["status"]) for b in older["items"]] == [(100, "rejected")]
    window = await get_json(client, "/v1/blocks?from=2026-11-20T01:00:00Z&to=2026-11-20T03:00:00Z")
    assert [b["height"] for b in window["items"]] == [102, 101]
    assert [b["coin"] for b in (await get_json(client, "/v1/blocks?status=rejected"))["items"]] == ["LTC"]

    events = await get_json(client, "/v1/switch-events?profile=default")
    assert [(e["from_upstream"], e["to_upstream"], e["proxy_host"]) for e in events["items"]] == [
        ("u2", "u3", "edge-a"),
        ("u1", "u2", "edge-b"),
        ("u0", "u1", "edge-a"),
    ]
    assert (await get_json(client, "/v1/switch-events?profile=other"))["items"] == []
    for path, parameter in (
        ("/v1/workers?limit=0", "limit"),
        ("/v1/workers?limit=1001", "limit"),
        ("/v1/blocks?status=lost", "status"),
        ("/v1/blocks?before=x", "before"),
        ("/v1/switch-events?from=now", "from"),
    ):
        assert_problem(await get_json(client, path, 400), 400, parameter)
