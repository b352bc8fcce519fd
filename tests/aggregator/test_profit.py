"""Profitability against figures worked out by hand."""

import pytest

from aggregator.model import CoinId
from aggregator.profit import CoinEconomics, power_cost_per_day, profitability

LTC = CoinId("LTC", "scrypt")
DOGE = CoinId("DOGE", "scrypt")
# 1 GH/s; LTC at difficulty 90 000 000, 6.25 LTC a block, 84.10 USD; DOGE at 36 000 000,
# 10 000 DOGE a block, 0.38 USD.
H = 1e9
ECONOMICS = {
    LTC: CoinEconomics(LTC, 90_000_000.0, 6.25, 84.10),
    DOGE: CoinEconomics(DOGE, 36_000_000.0, 10_000.0, 0.38),
}
# 86400 · 1e9 · 6.25 / (9e7 · 2^32) = 6e6 / 2^32
LTC_PER_DAY = 6_000_000 / 2**32  # 0.0013969838619232178 LTC
LTC_USD = LTC_PER_DAY * 84.10  # 0.1174863427877426 USD
# 86400 · 1e9 · 10000 / (3.6e7 · 2^32) = 2.4e10 / 2^32
DOGE_PER_DAY = 24_000_000_000 / 2**32  # 5.587935447692871 DOGE
DOGE_USD = DOGE_PER_DAY * 0.38  # 2.123415470123291 USD


def test_solo_coin_has_no_fee() -> None:
    row = profitability([LTC], ECONOMICS, hashrate_hs=H)
    assert row is not None
    assert row.pool is None and row.algorithm == "scrypt"
    assert row.coins_per_day == pytest.approx(0.0013969838619232178, rel=1e-12)
    assert row.usd_per_day == pytest.approx(0.1174863427877426, rel=1e-12)
    assert row.usd_per_day_net == pytest.approx(0.1174863427877426, rel=1e-12)


def test_pool_fee_comes_off_the_usd() -> None:
    row = profitability([LTC], ECONOMICS, hashrate_hs=H, pool="p", fee_percent=1.0)
    assert row is not None
    assert row.coins_per_day == pytest.approx(LTC_PER_DAY)  # before the fee
    assert row.usd_per_day_net == pytest.approx(LTC_USD * 0.99)  # 0.11631147935986517


def test_merged_mining_pays_the_sum_of_both_coins() -> None:
    row = profitability([LTC, DOGE], ECONOMICS, hashrate_hs=H, pool="merged", fee_percent=2.0)
    assert row is not None
    assert row.coin == LTC and row.coins_per_day == pytest.approx(LTC_PER_DAY)
    assert row.usd_per_day == pytest.approx(2.2409018129110336)  # 0.11748634 + 2.12341547
    assert row.usd_per_day_net == pytest.approx(2.2409018129110336 * 0.98)
    assert row.inputs["coins"]["DOGE"]["coins_per_day"] == pytest.approx(DOGE_PER_DAY)
    assert row.inputs["missing"] == []


def test_power_cost_is_taken_off_once() -> None:
    # An Antminer L7 drawing 3412.5 W at 0.05 USD/kWh: 3.4125 kW · 24 h · 0.05 = 4.095 USD a day.
    power = power_cost_per_day(3412.5, 0.05)
    assert power == pytest.approx(4.095)
    row = profitability([LTC, DOGE], ECONOMICS, hashrate_hs=9.4e9, pool="merged", fee_percent=2.0,
                        power_usd_per_day=power)  # fmt: skip
    assert row is not None
    gross = 9.4 * (LTC_USD + DOGE_USD)  # figures scale linearly with the hashrate
    assert row.usd_per_day == pytest.approx(gross)
    assert row.usd_per_day_net == pytest.approx(gross * 0.98 - 4.095)  # 16.548 USD


def test_a_loss_making_coin_goes_negative() -> None:
    row = profitability([LTC], ECONOMICS, hashrate_hs=H, power_usd_per_day=1.0)
    assert row is not None and row.usd_per_day_net == pytest.approx(LTC_USD - 1.0)
    assert row.usd_per_day_net < 0


def test_missing_data_errs_low_and_says_so() -> None:
    no_doge = {LTC: ECONOMICS[LTC]}
    row = profitability([LTC, DOGE], no_doge, hashrate_hs=H, pool="merged")
    assert row is not None and row.usd_per_day == pytest.approx(LTC_USD)
    assert row.inputs["missing"] == ["DOGE"]
    unpriced = {LTC: CoinEconomics(LTC, 90_000_000.0, 6.25, None), DOGE: ECONOMICS[DOGE]}
    row = profitability([LTC, DOGE], unpriced, hashrate_hs=H, pool="merged")
    assert row is not None
    assert row.coins_per_day == pytest.approx(LTC_PER_DAY)
    assert row.usd_per_day is None and row.usd_per_day_net is None
    assert profitability([DOGE], no_doge, hashrate_hs=H) is None


def test_solo_mining_with_merged_dogecoin_earns_both_coins_as_the_proxy_mines_them() -> None:
    """The solo LTC row counts DOGE when (and only when) the proxy's solo LTC upstream merge-mines it:
    the example config's daemon upstream has a DOGE [[proxy.upstreams.aux]]."""
    from dataclasses import replace
    from pathlib import Path

    from aggregator.config import AggregatorConfig
    from aggregator.run import solo_coins
    from cli.config import load_config

    example = Path(__file__).resolve().parents[2] / "qscrypt.example.toml"
    proxy = load_config(example, {"POOL_A_PASSWORD": "x", "LITECOIN_RPC_PASSWORD": "x",
                                  "DOGECOIN_RPC_PASSWORD": "x"}).proxy
    assert proxy.solo_earnings() == {"LTC": ("DOGE",)}
    # As `qscrypt run` derives it (cli/stack.py): what the proxy earns is what the rows count.
    config = AggregatorConfig(solo_merged=proxy.solo_earnings())
    assert solo_coins(config, LTC) == [LTC, DOGE]
    assert solo_coins(config, DOGE) == [DOGE]  # Dogecoin solo merges nothing
    row = profitability(solo_coins(config, LTC), ECONOMICS, hashrate_hs=H)
    assert row is not None and row.pool is None
    assert row.usd_per_day == pytest.approx(LTC_USD + DOGE_USD)  # 2.2409018129110336
    assert row.coins_per_day == pytest.approx(LTC_PER_DAY)
    # The same sum as a merged pool's row without its fee.
    merged_pool = profitability([LTC, DOGE], ECONOMICS, hashrate_hs=H, pool="merged")
    assert merged_pool is not None and merged_pool.usd_per_day == row.usd_per_day
    # Without aux chains the proxy earns LTC alone, and so does the row.
    plain = replace(proxy, upstreams=[replace(u, aux=[]) for u in proxy.upstreams])
    assert plain.solo_earnings() == {}
    assert solo_coins(AggregatorConfig(solo_merged=plain.solo_earnings()), LTC) == [LTC]
    with pytest.raises(ValueError, match="solo_merged: coin XMR"):
        AggregatorConfig(solo_merged={"LTC": ("XMR",)})
