"""`qscrypt aggregator run-once` from a TOML file: the `[aggregator]` mapping and the exit codes."""

import argparse
from pathlib import Path

import asyncpg
import pytest

from aggregator import add_arguments, load_aggregator_config, main
from cli.config import load_config
from qscrypt.settings import ConfigError
from tests.aggregator.fixture_server import FixtureServer, Reply

FAST = "timeout_s = 2.0\nretries = 1\nbackoff_s = 0.01\n"


def write_config(tmp_path: Path, server: FixtureServer, dsn: str) -> Path:
    prefixes = {
        "coingecko": "/coingecko",
        "binance": "/binance",
        "whattomine": "/whattomine",
        "minerstat": "/minerstat",
        "minerstat_hardware": "/minerstat",
        "hashrate_no": "/hashrate_no",
    }
    # ${MINERSTAT_KEY}: a secret read from the environment, as the config file documents it.
    extra = {"minerstat": 'api_key = "${MINERSTAT_KEY}"\n'}
    sources = "".join(f'[aggregator.{name}]\nbase_url = "{server.url(prefix)}"\n{FAST}{extra.get(name, "")}\n'
                      for name, prefix in prefixes.items())  # fmt: skip
    path = tmp_path / "qscrypt.toml"
    path.write_text(f"""
[database]
dsn = "{dsn}"

[aggregator]
stale_after_s = 315360000.0
reference_hashrate_hs = 9.5e9
reference_power_w = 3425.0
power_cost_usd_per_kwh = 0.05

[[aggregator.coins]]
symbol = "LTC"
name = "Litecoin"
block_time_s = 150.0
coingecko_id = "litecoin"
binance_symbol = "LTCUSDT"
whattomine_id = 4

[[aggregator.coins]]
symbol = "DOGE"
name = "Dogecoin"
block_time_s = 60.0
coingecko_id = "dogecoin"
binance_symbol = "DOGEUSDT"
whattomine_id = 6

[[aggregator.pools]]
name = "2miners-ltc"
coins = ["LTC"]
fee_percent = 1.0
api = "twominers"
api_url = "{server.url("/2miners-ltc")}"

[aggregator.twominers]
{FAST}
{sources}""")
    return path


def parse(argv: list[str], config_path: Path) -> argparse.Namespace:
    """What `qscrypt -c FILE aggregator ...` hands to aggregator.main."""
    parser = argparse.ArgumentParser(prog="qscrypt aggregator")
    add_arguments(parser)
    args = parser.parse_args(argv)
    config = load_config(config_path)
    args.section, args.database = config.aggregator, config.database
    return args


@pytest.fixture(autouse=True)
def minerstat_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINERSTAT_KEY", "ms-from-env")


async def test_run_once_exits_0_when_every_source_answered(
    tmp_path: Path,
    fixture_server: FixtureServer,
    db: asyncpg.Pool,
    pg_dsn: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse(["run-once"], write_config(tmp_path, fixture_server, pg_dsn))
    assert await main(args) == 0
    out = capsys.readouterr().out
    assert "coingecko" in out and "0 of 7 sources failed" in out
    # 9.5 GH/s, 3425 W at 0.05 USD/kWh: 4.11 USD of power a day comes off every figure.
    net = await db.fetchval(
        "SELECT usd_per_day_net FROM profitability p JOIN pools l ON l.id = p.pool_id"
        " WHERE l.name = '2miners-ltc'"
    )
    gross = 9.5 * 6_000_000 / 2**32 * 84.1  # the LTC figure of test_profit, at 9.5 GH/s
    assert net == pytest.approx(gross * 0.99 - 3.425 * 24 * 0.05)
    key = fixture_server.requests["/minerstat/v2/coins"][0].headers["X-API-Key"]
    assert key == "ms-from-env"  # ${MINERSTAT_KEY} in the file, read from the environment


async def test_run_once_exits_1_with_the_failed_sources_named(
    tmp_path: Path,
    fixture_server: FixtureServer,
    db: asyncpg.Pool,
    pg_dsn: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fixture_server.script("/binance/api/v3/ticker/price?symbol=LTCUSDT", Reply(b"", 503))
    fixture_server.script("/binance/api/v3/ticker/price?symbol=DOGEUSDT", Reply(b"", 503))
    args = parse(["run-once"], write_config(tmp_path, fixture_server, pg_dsn))
    assert await main(args) == 1
    err = capsys.readouterr().err
    assert "binance" in err and "FAILED" in err and "HTTP 503" in err and "1 of 7 sources failed" in err


def test_unknown_and_bad_keys_name_themselves() -> None:
    with pytest.raises(ConfigError, match=r"'aggregator\.coingecko\.timeout': unknown key"):
        load_aggregator_config({"coingecko": {"timeout": 3}})
    with pytest.raises(ConfigError, match=r"'aggregator': outlier_band must be in"):
        load_aggregator_config({"outlier_band": 2.0})
    with pytest.raises(ConfigError, match="pool p: coin XMR/scrypt is not among coins"):
        load_aggregator_config({"pools": [{"name": "p", "coins": ["XMR"]}]})
    assert load_aggregator_config({}).coins[0].symbol == "LTC"


def test_a_source_table_keeps_the_sources_own_rate_limit_unless_set() -> None:
    config = load_aggregator_config(
        {"coingecko": {"base_url": "http://127.0.0.1:1"}, "binance": {"min_interval_s": 3}}
    )
    assert config.effective("coingecko").min_interval_s == 2.0  # CoinGecko's keyless tier: ~30/min
    assert config.effective("binance").min_interval_s == 3.0
