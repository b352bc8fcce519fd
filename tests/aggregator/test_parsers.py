"""Each source's pure parser on its recorded answers, good and malformed."""

from datetime import UTC, datetime

import pytest

from aggregator.config import DOGECOIN, LITECOIN, PoolConfig
from aggregator.model import ParseError, SourceData
from aggregator.parsing import decode_json, number, positive
from aggregator.sources.binance import parse_ticker_price
from aggregator.sources.coingecko import parse_simple_price
from aggregator.sources.daemon import parse_mining_info, rpc_result
from aggregator.sources.hashrate_no import parse_estimates
from aggregator.sources.minerstat import parse_coins as parse_minerstat_coins
from aggregator.sources.minerstat import parse_hardware
from aggregator.sources.pools import parse_nanopool, parse_twominers_stats
from aggregator.sources.whattomine import parse_coins as parse_whattomine
from qscrypt.jsonrpc import RpcCallError
from tests.aggregator.fixture_server import ETC, fixture, fixture_json

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
COINS = (LITECOIN, DOGECOIN)


def values(data: SourceData) -> dict[tuple[str, str], float]:
    return {(o.subject, o.quantity): o.value for o in data.observations}


# --- shared decoding -------------------------------------------------------------------------


def test_decode_json_rejects_html_error_pages_naming_their_title() -> None:
    with pytest.raises(ParseError, match=r"HTML page.*502: Bad gateway"):
        decode_json(fixture("common/cloudflare_502.html"), "text/html; charset=UTF-8")
    # An HTML page behind a 200 with a JSON content type is caught by its first byte.
    with pytest.raises(ParseError, match="Down for maintenance"):
        decode_json(fixture("common/maintenance_200.html"), "application/json")


def test_decode_json_reports_truncated_and_empty_bodies() -> None:
    with pytest.raises(ParseError, match="truncated JSON"):
        decode_json(fixture("coingecko/simple_price_truncated.json"))
    with pytest.raises(ParseError, match="empty body"):
        decode_json(b"  \n")
    with pytest.raises(ParseError, match="invalid JSON at byte"):
        decode_json(b'{"a": 1,, "b": 2}')
    with pytest.raises(ParseError, match="not UTF-8"):
        decode_json(b'{"a": "\xff"}')


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(84.1, 84.1), ("84.10000000", 84.1), (" 1,234.5 ", 1234.5), (7, 7.0), (None, None), ("", None),
     ("n/a", None), (True, None), ([1], None), ("nan", None), ("inf", None)],
)  # fmt: skip
def test_number_accepts_numbers_and_numeric_strings_only(raw: object, expected: float | None) -> None:
    assert number(raw) == expected


def test_positive_treats_zero_and_minus_one_as_no_data() -> None:
    assert positive(-1) is None
    assert positive(0) is None
    assert positive("0.5") == 0.5


# --- prices ----------------------------------------------------------------------------------


def test_coingecko_prices_with_their_own_timestamps() -> None:
    data = parse_simple_price(
        fixture_json("coingecko/simple_price.json"), {"litecoin": LITECOIN, "dogecoin": DOGECOIN}, NOW
    )
    assert values(data) == {("LTC/scrypt", "price_usd"): 84.0, ("DOGE/scrypt", "price_usd"): 0.38}
    assert {o.observed_at for o in data.observations} == {
        datetime.fromtimestamp(1795399991, UTC), datetime.fromtimestamp(1795399987, UTC),
    }  # fmt: skip


def test_coingecko_nulls_and_missing_coins_are_an_error_not_a_zero() -> None:
    with pytest.raises(ParseError, match=r"no usable price.*litecoin: no usd price.*dogecoin: no usd price"):
        parse_simple_price(
            fixture_json("coingecko/simple_price_missing.json"),
            {"litecoin": LITECOIN, "dogecoin": DOGECOIN},
            NOW,
        )


def test_coingecko_rate_limit_body_is_reported() -> None:
    with pytest.raises(ParseError, match="exceeded the Rate Limit"):
        parse_simple_price(fixture_json("coingecko/rate_limited.json"), {"litecoin": LITECOIN}, NOW)


def test_binance_price_is_a_string_in_usdt() -> None:
    obs = parse_ticker_price(fixture_json("binance/ticker_LTCUSDT.json"), LITECOIN, NOW)
    assert (obs.subject, obs.quantity, obs.value, obs.observed_at) == ("LTC/scrypt", "price_usd", 84.1, NOW)
    with pytest.raises(ParseError, match="-1121: Invalid symbol"):
        parse_ticker_price(fixture_json("binance/invalid_symbol.json"), LITECOIN, NOW)
    with pytest.raises(ParseError, match="asked for LTCUSDT, got symbol 'DOGEUSDT'"):
        parse_ticker_price(fixture_json("binance/ticker_DOGEUSDT.json"), LITECOIN, NOW)
    with pytest.raises(ParseError, match="expected a JSON object, got array"):
        parse_ticker_price([], LITECOIN, NOW)


# --- network data ----------------------------------------------------------------------------


def test_whattomine_coin_with_block_time_as_string() -> None:
    data = parse_whattomine(fixture_json("whattomine/coin_4.json"), COINS, NOW)
    assert values(data) == {
        ("LTC/scrypt", "difficulty"): 89_000_000.0,
        ("LTC/scrypt", "block_reward"): 6.25,
        ("LTC/scrypt", "block_time_s"): 150.0,
        ("LTC/scrypt", "network_hashrate_hs"): 2548406065971200.0,
        ("LTC/scrypt", "height"): 3012345.0,
    }
    assert data.observations[0].observed_at == datetime.fromtimestamp(1795399955, UTC)
    assert data.warnings == ()


def test_whattomine_nulls_are_skipped_with_warnings_and_lagging_flagged() -> None:
    data = parse_whattomine(fixture_json("whattomine/coin_4_nulls.json"), COINS, NOW)
    assert values(data) == {
        ("LTC/scrypt", "block_reward"): 6.25,
        ("LTC/scrypt", "block_time_s"): 150.0,
        ("LTC/scrypt", "height"): 3012345.0,
    }
    assert any("lagging" in w for w in data.warnings)
    assert any("no usable difficulty (None)" in w for w in data.warnings)


def test_whattomine_coins_list_shape_parses_the_tracked_coins_only() -> None:
    data = parse_whattomine(fixture_json("whattomine/coins_gpu.json"), (LITECOIN, ETC), NOW)
    assert {s for s, _q in values(data)} == {"ETC/etchash"}
    with pytest.raises(ParseError, match="nothing usable"):
        parse_whattomine(fixture_json("whattomine/coins_gpu.json"), COINS, NOW)


def test_minerstat_coins_skip_minus_one_and_multipools() -> None:
    data = parse_minerstat_coins(fixture_json("minerstat/coins.json"), COINS, NOW)
    assert values(data) == {
        ("LTC/scrypt", "price_usd"): 84.2,
        ("LTC/scrypt", "difficulty"): 91_000_000.0,
        ("LTC/scrypt", "block_reward"): 6.25,
        ("LTC/scrypt", "network_hashrate_hs"): 2623770131200000.0,
        ("DOGE/scrypt", "price_usd"): 0.038,
        ("DOGE/scrypt", "difficulty"): 37_000_000.0,
        ("DOGE/scrypt", "block_reward"): 10000.0,
        ("DOGE/scrypt", "network_hashrate_hs"): 2648849612800000.0,
    }


def test_minerstat_coins_strings_nulls_and_broken_entries() -> None:
    data = parse_minerstat_coins(fixture_json("minerstat/coins_missing.json"), COINS, NOW)
    assert values(data) == {("LTC/scrypt", "price_usd"): 84.2, ("LTC/scrypt", "difficulty"): 91_000_000.0}
    assert len(data.warnings) == 3  # network_hashrate -1, reward_block null, an entry without a coin
    with pytest.raises(ParseError, match="minerstat coins error: Unauthorized"):
        parse_minerstat_coins({"error": "Unauthorized"}, COINS, NOW)


def test_daemon_mining_info_and_template() -> None:
    info = rpc_result(fixture_json("daemon/getmininginfo.json"), "getmininginfo")
    template = rpc_result(fixture_json("daemon/getblocktemplate.json"), "getblocktemplate")
    data = parse_mining_info(info, template, LITECOIN, NOW, "daemon:LTC")
    assert values(data) == {
        ("LTC/scrypt", "difficulty"): 90_000_000.0,
        ("LTC/scrypt", "network_hashrate_hs"): 2581234567890123.5,
        ("LTC/scrypt", "height"): 3012345.0,
        ("LTC/scrypt", "block_time_s"): 150.0,
        ("LTC/scrypt", "block_reward"): 6.25,
    }


def test_daemon_rpc_errors_are_typed() -> None:
    with pytest.raises(
        RpcCallError, match="getblocktemplate: RPC error -10: Litecoin Core is in initial sync"
    ) as err:
        rpc_result(fixture_json("daemon/getblocktemplate_initial_sync.json"), "getblocktemplate")
    assert err.value.code == -10
    with pytest.raises(ParseError, match="neither result nor error"):
        rpc_result({"id": 1}, "getmininginfo")
    with pytest.raises(ParseError, match="no usable difficulty"):
        parse_mining_info({"difficulty": None}, None, LITECOIN, NOW, "daemon:LTC")


# --- pools -----------------------------------------------------------------------------------


TWOMINERS = PoolConfig(name="2miners-ltc", api="twominers", api_url="http://x")
NANOPOOL = PoolConfig(name="nanopool-etc", coins=("ETC",), algorithm="etchash", api="nanopool",
                      api_url="http://x", api_coin="etc", hashrate_unit_hs=1e6)  # fmt: skip


def test_twominers_stats_with_string_node_fields() -> None:
    data = parse_twominers_stats(
        fixture_json("twominers/ltc_stats.json"), TWOMINERS, NOW, "twominers:2miners-ltc"
    )
    assert values(data) == {
        ("2miners-ltc", "hashrate_hs"): 312456789012.0,
        ("2miners-ltc", "miners"): 287.0,
        ("2miners-ltc", "workers"): 1034.0,
        ("2miners-ltc", "height"): 3012345.0,
        ("2miners-ltc", "last_block_at"): 1795398000.0,
    }
    assert data.observations[0].observed_at == datetime.fromtimestamp(1795400001.234, UTC)


def test_twominers_without_nodes_still_gives_the_pool_hashrate() -> None:
    data = parse_twominers_stats(fixture_json("twominers/ltc_stats_no_nodes.json"), TWOMINERS, NOW, "t")
    assert values(data) == {("2miners-ltc", "hashrate_hs"): 312456789012.0}
    with pytest.raises(ParseError, match="no usable hashrate"):
        parse_twominers_stats({"nodes": []}, TWOMINERS, NOW, "t")


def test_nanopool_hashrate_in_mhs_and_its_error_shape() -> None:
    hashrate = fixture_json("nanopool/etc_pool_hashrate.json")
    data = parse_nanopool(hashrate, fixture_json("nanopool/etc_pool_activeminers.json"), NANOPOOL, NOW, "n")
    assert values(data) == {
        ("nanopool-etc", "hashrate_hs"): pytest.approx(9876543.21e6),
        ("nanopool-etc", "miners"): 3456.0,
    }
    with pytest.raises(ParseError, match="Unknown coin: ltc"):
        parse_nanopool(fixture_json("nanopool/ltc_error.json"), {}, NANOPOOL, NOW, "n")


# --- hardware --------------------------------------------------------------------------------


def test_minerstat_hardware_scrypt_devices_only() -> None:
    data = parse_hardware(fixture_json("minerstat/hardware_asic.json"), ["scrypt"], NOW)
    assert values(data) == {
        ("antminer-l7/scrypt", "hashrate_hs"): 9.5e9,
        ("antminer-l7/scrypt", "power_w"): 3425.0,
        ("antminer-l9/scrypt", "hashrate_hs"): 16e9,
        ("antminer-l9/scrypt", "power_w"): 3360.0,
        ("elphapex-dg1/scrypt", "hashrate_hs"): 14e9,  # a string hashrate, a null power
    }
    assert [d.name for d in data.hardware] == ["Antminer L7", "Antminer L9", "ElphaPex DG1+"]
    assert any("Mini-DOGE III Scrypt: no usable hashrate" in w for w in data.warnings)


def test_hashrate_no_estimates_derive_power_from_revenue_minus_profit() -> None:
    data = parse_estimates(fixture_json("hashrate_no/asic_estimates.json"), COINS, NOW)
    assert values(data) == {
        ("antminer-l7/scrypt", "hashrate_hs"): 9.3e9,
        ("antminer-l7/scrypt", "power_w"): 3400.0,
        ("antminer-l9/scrypt", "hashrate_hs"): 16.2e9,
        # (30.1 − 22.036) USD / (0.1 USD/kWh · 24 h) = 3.36 kW
        ("antminer-l9/scrypt", "power_w"): pytest.approx(3360.0),
    }
    assert any("broken: no device name" in w for w in data.warnings)
    with pytest.raises(ParseError, match="Unauthorized: Invalid or missing apiKey"):
        parse_estimates(fixture_json("hashrate_no/error.json"), COINS, NOW)
