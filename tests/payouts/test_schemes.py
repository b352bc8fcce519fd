"""The payout schemes: hand-computed examples for each, and properties that must hold for any
input (hypothesis): never more paid than earned, rounding's remainder stays with the pool, the
same period computed again gives the same split."""

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payouts.schemes import (
    Share,
    Split,
    average_tx_fees,
    fee_fraction,
    fpps,
    pplns,
    pplns_window,
    pps,
    solo,
)

LTC = 100_000_000
SUBSIDY = 1_250_000_000  # 12.5 LTC


# --- hand-computed examples ----------------------------------------------------------------------


def test_pps_pays_a_share_its_expected_value_less_the_fee() -> None:
    # d = 65536 at D = 2: half a block's expected work, so half of 12.5 LTC: 6.25; 1 % fee.
    split = pps([Share("alice", 65536, 2.0, SUBSIDY)], fee_fraction(1))
    assert split == Split(625_000_000, {"alice": 618_750_000}, 6_250_000, 0)


def test_pps_rounds_each_account_down_and_the_pool_keeps_the_remainder() -> None:
    reward = 3 * 65536 + 1  # D = 1: a d=1 share is worth 3.0000153 units, a d=2 share 6.0000305
    shares = [Share("alice", 1, 1.0, reward), Share("bob", 2, 1.0, reward)]
    assert pps(shares, Fraction(0)) == Split(9, {"alice": 3, "bob": 6}, 0, 0)
    # 10 %: fee floor(0.90000457) = 0, alice floor(2.7000137) = 2, bob floor(5.4000275) = 5.
    assert pps(shares, fee_fraction(10)) == Split(9, {"alice": 2, "bob": 5}, 0, 2)


def test_fpps_adds_the_average_transaction_fees_to_the_subsidy() -> None:
    tx_fees = average_tx_fees([SUBSIDY + 10_000, SUBSIDY + 30_000, SUBSIDY - 5], [SUBSIDY] * 3)
    assert tx_fees == 13_333  # (10,000 + 30,000 + 0) // 3: a block claiming less counts as no fees
    split = fpps([Share("alice", 65536, 2.0, SUBSIDY)], tx_fees, Fraction(0))
    assert split == Split(625_006_666, {"alice": 625_006_666}, 0, 0)  # floor((1.25e9 + 13,333) / 2)
    assert average_tx_fees([], []) == 0


def test_pplns_splits_over_the_last_factor_times_a_blocks_work() -> None:
    # D = 1, factor 2: the window is 131,072 share difficulty; carol's older share is outside it.
    shares = [Share("carol", 100_000), Share("alice", 65536), Share("bob", 65536)]
    assert pplns_window(shares, 1.0) == {"bob": 65536, "alice": 65536}
    assert pplns(shares, 1000, 1.0, fee_fraction(2)) == Split(1000, {"alice": 490, "bob": 490}, 20, 0)


def test_pplns_counts_the_share_that_crosses_the_window_in_part() -> None:
    shares = [Share("carol", 100_000), Share("alice", 65536), Share("bob", 32768)]
    assert pplns_window(shares, 1.0) == {"bob": 32768, "alice": 65536, "carol": 32768}
    # weights 1 : 2 : 1 of 1001 units: 250.25, 500.5, 250.25 -> 250, 500, 250 and 1 left over.
    expected = Split(1001, {"alice": 500, "bob": 250, "carol": 250}, 0, 1)
    assert pplns(shares, 1001, 1.0, Fraction(0)) == expected
    # factor 1 halves the window: bob 32768 and half of alice's share.
    assert pplns_window(shares, 1.0, factor=1) == {"bob": 32768, "alice": 32768}


def test_pplns_with_no_shares_keeps_everything_with_the_pool() -> None:
    assert pplns([], 5000, 1.0, fee_fraction(1)) == Split(5000, {}, 0, 5000)


def test_solo_gives_the_finder_the_reward_less_the_fee() -> None:
    expected = Split(SUBSIDY, {"alice": 1_231_250_000}, 18_750_000, 0)
    assert solo("alice", SUBSIDY, fee_fraction("1.5")) == expected
    assert solo("alice", SUBSIDY, Fraction(0)) == Split(SUBSIDY, {"alice": SUBSIDY}, 0, 0)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        fee_fraction(101)
    with pytest.raises(ValueError, match="positive and finite"):
        pps([Share("a", 0.0, 1.0, 1)], Fraction(0))
    with pytest.raises(ValueError, match="positive and finite"):
        pplns([Share("a", 1.0)], 10, float("nan"), Fraction(0))
    with pytest.raises(ValueError, match="does not add up"):
        Split(10, {"a": 11}, 0, 0)


# --- properties ----------------------------------------------------------------------------------

accounts = st.sampled_from(["alice", "bob", "carol", "dave", "erin"])
difficulties = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)
network = st.floats(min_value=1e-3, max_value=1e12, allow_nan=False, allow_infinity=False)
fees = st.decimals(min_value=0, max_value=100, places=2).map(fee_fraction)
rewards = st.integers(min_value=0, max_value=10**17)
shares = st.lists(st.builds(Share, accounts, difficulties, network, rewards), max_size=40)


def _exact_earned(items: list[Share]) -> Fraction:
    return sum(
        (s.reward * Fraction(s.difficulty) / (Fraction(s.network_difficulty) * 65536) for s in items),
        Fraction(0),
    )


@settings(max_examples=300, deadline=None)
@given(shares, fees)
def test_pps_never_pays_more_than_the_shares_earned(items: list[Share], fee: Fraction) -> None:
    split = pps(items, fee)
    earned = _exact_earned(items)
    assert sum(split.credits.values()) + split.fee + split.remainder == split.total <= earned
    assert sum(split.credits.values()) <= earned * (1 - fee)
    # Rounding down loses less than one unit per account (and the fee's and the total's rounding
    # cancel within one more): the pool keeps it.
    assert 0 <= split.remainder <= len({s.account for s in items})
    assert pps(items, fee) == split  # the same period again: the same split
    shuffled = list(items)
    random.Random(0).shuffle(shuffled)
    assert pps(shuffled, fee) == split  # and in any order


@settings(max_examples=300, deadline=None)
@given(shares, st.integers(min_value=0, max_value=10**12), fees)
def test_fpps_pays_pps_on_subsidy_plus_fees(items: list[Share], tx_fees: int, fee: Fraction) -> None:
    split = fpps(items, tx_fees, fee)
    earned = _exact_earned(
        [Share(s.account, s.difficulty, s.network_difficulty, s.reward + tx_fees) for s in items]
    )
    assert sum(split.credits.values()) + split.fee <= split.total <= earned
    assert all(split.credits.get(a, 0) >= pps(items, fee).credits.get(a, 0) for a in split.credits)


@settings(max_examples=300, deadline=None)
@given(shares, rewards, network, fees, st.sampled_from([0.5, 1, 2, 3]))
def test_pplns_splits_exactly_the_reward(
    items: list[Share], reward: int, difficulty: float, fee: Fraction, factor: float
) -> None:
    split = pplns(items, reward, difficulty, fee, factor)
    assert split.total == reward
    assert sum(split.credits.values()) + split.fee + split.remainder == reward
    assert split.fee == (reward * fee).__floor__() or not split.credits
    window = pplns_window(items, difficulty, factor)
    # Less than one unit lost per account in the window (and the fee's rounding within that);
    # with nobody in the window, the pool keeps everything.
    assert 0 <= split.remainder <= len(window) if window else split.remainder == reward
    assert sum(window.values(), Fraction(0)) <= Fraction(factor) * Fraction(difficulty) * 65536
    assert set(split.credits) <= set(window)
    assert pplns(items, reward, difficulty, fee, factor) == split


@settings(max_examples=200, deadline=None)
@given(accounts, rewards, fees)
def test_solo_pays_the_finder_all_but_the_fee(finder: str, reward: int, fee: Fraction) -> None:
    split = solo(finder, reward, fee)
    assert split.credits.get(finder, 0) + split.fee == reward and split.remainder == 0
    assert set(split.credits) <= {finder}
