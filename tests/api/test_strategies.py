"""Strategies and figures on their own, with the fixture market's numbers worked out by hand.

The market is what the aggregator makes of tests/fixtures: LTC at difficulty 9e7, 6.25 LTC a
block, 84.10 USD; DOGE at 3.6e7, 10 000 DOGE, 0.38 USD. At 1 GH/s:
  LTC/day  = 86400 · 1e9 · 6.25 / (9e7 · 2^32)     = 0.0013969838619232178, × 84.10 = 0.1174863427877426 USD
  DOGE/day = 86400 · 1e9 · 10000 / (3.6e7 · 2^32)  = 5.587935447692871,     × 0.38  = 2.123415470123291 USD
"""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from api.market import Candidate, CoinInputs, Market, figures, power_cost_per_day
from api.profiles import Profile
from api.strategies import rank

LTC = CoinInputs("LTC", 9e7, 6.25, 84.10)
DOGE = CoinInputs("DOGE", 3.6e7, 10000.0, 0.38)
LTC_USD = 0.1174863427877426
DOGE_USD = 2.123415470123291

MERGED = Candidate(
    "LTC", "merged-ltc-doge", 2.0, (LTC, DOGE), endpoints=("stratum+tcp://merged.example:3333",)
)
TWOMINERS = Candidate(
    "LTC",
    "2miners-ltc",
    1.0,
    (LTC,),
    endpoints=("stratum+tcp://ltc.2miners.com:8080",),
    pool_hashrate_hs=312456789012.0,
)
SOLO_LTC = Candidate("LTC", None, 0.0, (LTC,))
SOLO_DOGE = Candidate("DOGE", None, 0.0, (DOGE,))
MARKET = Market("scrypt", datetime(2026, 11, 24, tzinfo=UTC), 1e9, (MERGED, TWOMINERS, SOLO_LTC, SOLO_DOGE))


def names(profile: Profile, market: Market = MARKET) -> list[tuple[str, str | None]]:
    return [f.candidate.key for f in rank(profile, market)]


def test_merged_mining_pays_the_sum_of_both_coins() -> None:
    f = figures(MERGED, 1e9)
    assert [(p.coin, p.coins_per_day, p.usd_per_day) for p in f.payouts] == [
        ("LTC", pytest.approx(0.0013969838619232178), pytest.approx(LTC_USD)),
        ("DOGE", pytest.approx(5.587935447692871), pytest.approx(DOGE_USD)),
    ]
    assert f.usd_per_day == pytest.approx(2.2409018129110336)  # LTC_USD + DOGE_USD
    assert f.usd_per_day_after_fee == pytest.approx(2.196083776652813)  # × 0.98
    assert f.usd_per_day_net == pytest.approx(2.196083776652813)


def test_max_usd_ranks_pools_by_net_and_leaves_solo_out_unless_asked() -> None:
    profile = Profile("p", "max_usd")
    ranked = rank(profile, MARKET)
    assert [f.candidate.key for f in ranked] == [("LTC", "merged-ltc-doge"), ("LTC", "2miners-ltc")]
    assert ranked[1].usd_per_day_net == pytest.approx(LTC_USD * 0.99)  # 0.11631147935986517
    # Solo LTC pays no fee, so it beats the same LTC through 2miners' 1 %.
    assert names(replace(profile, include_solo=True)) == [
        ("LTC", "merged-ltc-doge"),
        ("DOGE", None),
        ("LTC", None),
        ("LTC", "2miners-ltc"),
    ]


def test_hashrate_fee_and_power_of_the_profile() -> None:
    # An Antminer L7: 9.4 GH/s at 3412.5 W, power at 0.05 USD/kWh = 3412.5 · 24 / 1000 · 0.05 = 4.095 USD/day.
    profile = Profile("l7", "max_usd", hashrate_hs=9.4e9, power_w=3412.5, power_cost_kwh=0.05)
    best = rank(profile, MARKET)[0]
    assert power_cost_per_day(3412.5, 0.05) == pytest.approx(4.095)
    assert best.usd_per_day == pytest.approx(2.2409018129110336 * 9.4)  # 21.064477041363716
    assert best.usd_per_day_net == pytest.approx(
        2.2409018129110336 * 9.4 * 0.98 - 4.095
    )  # 16.548187500536442
    # LTC alone at 9.4 GH/s: 1.104371622 · 0.99 − 4.095 = −3.001672: mining it loses money.
    assert rank(profile, MARKET)[1].usd_per_day_net == pytest.approx(LTC_USD * 9.4 * 0.99 - 4.095)


def test_max_coin_stays_on_its_coin() -> None:
    assert names(Profile("p", "max_coin", coin="LTC")) == [("LTC", "merged-ltc-doge"), ("LTC", "2miners-ltc")]
    assert names(Profile("p", "max_coin", coin="DOGE")) == []  # no DOGE pool; solo not asked for
    assert names(Profile("p", "max_coin", coin="DOGE", include_solo=True)) == [("DOGE", None)]


def test_fixed_pins_one_coin_and_pool() -> None:
    assert names(Profile("p", "fixed", coin="LTC", pool="2miners-ltc")) == [("LTC", "2miners-ltc")]
    assert names(Profile("p", "fixed", coin="LTC", pool=None)) == [("LTC", None)]
    assert names(Profile("p", "fixed", coin="LTC", pool="gone")) == []


def test_coin_lists_bind_every_coin_a_pool_pays() -> None:
    # Denying DOGE rules out the pool that pays DOGE on top of LTC.
    assert names(Profile("p", "max_usd", deny_coins=("DOGE",))) == [("LTC", "2miners-ltc")]
    # Allowing LTC only does too: the merged pool would pay DOGE.
    assert names(Profile("p", "max_usd", allow_coins=("LTC",))) == [("LTC", "2miners-ltc")]
    assert names(Profile("p", "max_usd", allow_coins=("LTC", "DOGE"))) == [
        ("LTC", "merged-ltc-doge"),
        ("LTC", "2miners-ltc"),
    ]


def test_pool_lists_fee_cap_and_minimum_hashrate() -> None:
    assert names(Profile("p", "max_usd", deny_pools=("merged-ltc-doge",))) == [("LTC", "2miners-ltc")]
    assert names(Profile("p", "max_usd", allow_pools=("merged-ltc-doge",))) == [("LTC", "merged-ltc-doge")]
    assert names(Profile("p", "max_usd", max_fee_pct=1.5)) == [("LTC", "2miners-ltc")]  # merged charges 2 %
    # The merged pool publishes no hashrate, so it cannot show it meets a minimum.
    assert names(Profile("p", "max_usd", min_pool_hashrate=1e11)) == [("LTC", "2miners-ltc")]
    assert names(Profile("p", "max_usd", min_pool_hashrate=1e12)) == []  # 2miners has 312 GH/s
    # Pool rules bind pools, not a coin's own daemon.
    solo = Profile("p", "max_usd", include_solo=True, min_pool_hashrate=1e12, max_fee_pct=0.0)
    assert names(solo) == [("DOGE", None), ("LTC", None)]


def test_a_merged_coin_without_a_price_is_left_out_of_the_sum() -> None:
    no_doge_price = replace(MERGED, coins=(LTC, replace(DOGE, price_usd=None)), missing=("DOGE",))
    f = figures(no_doge_price, 1e9)
    assert f.usd_per_day == pytest.approx(LTC_USD)
    assert f.payouts[1].usd_per_day is None
    # Without the mined coin's price nothing can be said.
    assert figures(replace(TWOMINERS, coins=(replace(LTC, price_usd=None),)), 1e9).usd_per_day_net is None
