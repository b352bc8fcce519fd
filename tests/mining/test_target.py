"""Compact bits, targets and the two difficulty scales (mining/target.py)."""

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mining.coins import COINS
from mining.target import (
    HASHES_PER_NETWORK_DIFF1,
    HASHES_PER_SHARE_DIFF1,
    MAX_TARGET,
    NETWORK_DIFF1_TARGET,
    SHARE_DIFF1_TARGET,
    bits_from_hex,
    bits_to_network_difficulty,
    bits_to_target,
    expected_coins_per_day,
    hash_share_difficulty,
    hashrate_from_shares,
    network_difficulty_to_target,
    network_target_to_difficulty,
    share_difficulty_to_target,
    share_target_to_difficulty,
    target_to_bits,
)

FEW = settings(max_examples=200, deadline=None)
difficulties = st.floats(min_value=1e-6, max_value=1e15, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize(
    ("bits", "target"),
    [
        (0x1D00FFFF, 0xFFFF << 208),  # Bitcoin's difficulty 1
        (0x1E0FFFF0, 0x0FFFF0 << 216),  # Litecoin's genesis
        (0x207FFFFF, 0x7FFFFF << 232),  # regtest
        (0x1B47C7EA, 0x47C7EA << 192),
        (0x03123456, 0x123456),
        (0x02123456, 0x1234),
        (0x01003456, 0),
        (0x00000000, 0),
    ],
)
def test_known_compact_bits(bits: int, target: int) -> None:
    assert bits_to_target(bits) == target


def test_bits_from_hex_reads_the_template_form() -> None:
    assert bits_from_hex("207fffff") == 0x207FFFFF


@pytest.mark.parametrize("bits", [0x04923456, 0x01FEDCBA, 0xFF123456, 0x2200FFFF, -1, 1 << 32])
def test_malformed_bits_are_refused(bits: int) -> None:
    with pytest.raises(ValueError):
        bits_to_target(bits)


@FEW
@given(st.integers(min_value=0, max_value=MAX_TARGET))
def test_target_to_bits_round_trip_keeps_the_top_bits(target: int) -> None:
    bits = target_to_bits(target)
    decoded = bits_to_target(bits)
    assert decoded <= target
    # The compact form keeps at least the top 16 significant bits.
    assert target - decoded < 1 << max(0, target.bit_length() - 16)
    assert target_to_bits(decoded) == bits


@FEW
@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_any_decodable_bits_re_encode_to_the_same_target(bits: int) -> None:
    try:
        target = bits_to_target(bits)
    except ValueError:
        return
    assert bits_to_target(target_to_bits(target)) == target


def test_share_difficulty_one_is_0xffff_times_2_to_224() -> None:
    target = share_difficulty_to_target(1)
    assert target == SHARE_DIFF1_TARGET == 0xFFFF * 2**224
    assert f"{target:064x}" == "0000ffff" + "0" * 56
    assert share_target_to_difficulty(target) == 1
    assert hash_share_difficulty(target) == 1
    assert all(c.share_diff1_target == SHARE_DIFF1_TARGET for c in COINS if c.algorithm == "scrypt")


def test_network_difficulty_one_is_0xffff_times_2_to_208() -> None:
    target = network_difficulty_to_target(1)
    assert target == NETWORK_DIFF1_TARGET == 0xFFFF * 2**208
    assert f"{target:064x}" == "00000000ffff" + "0" * 52
    assert network_target_to_difficulty(target) == 1
    assert bits_to_network_difficulty(0x1D00FFFF) == 1
    # The two scales are 65536 apart: a share at difficulty 1 is 65536 times easier than a block.
    assert share_difficulty_to_target(1) == network_difficulty_to_target(1) * 65536


def test_difficulty_one_hash_counts() -> None:
    assert abs((1 << 256) / SHARE_DIFF1_TARGET / HASHES_PER_SHARE_DIFF1 - 1) < 1e-4
    assert abs((1 << 256) / NETWORK_DIFF1_TARGET / HASHES_PER_NETWORK_DIFF1 - 1) < 1e-4


@FEW
@given(difficulties, difficulties)
def test_harder_difficulty_never_gives_an_easier_target(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert share_difficulty_to_target(low) >= share_difficulty_to_target(high)
    assert network_difficulty_to_target(low) >= network_difficulty_to_target(high)


@FEW
@given(st.floats(min_value=1e-4, max_value=1e15))  # below 1/65536 a share target clamps to MAX_TARGET
def test_difficulty_target_difficulty_round_trip(difficulty: float) -> None:
    assert share_target_to_difficulty(share_difficulty_to_target(difficulty)) == pytest.approx(difficulty)
    assert network_target_to_difficulty(network_difficulty_to_target(difficulty)) == pytest.approx(
        difficulty
    )


def test_fractional_share_difficulties() -> None:
    assert share_difficulty_to_target(Fraction(1, 1000)) == 1000 * SHARE_DIFF1_TARGET
    # 0.001 as a float is not exactly 1/1000, but the target stays within float precision of it.
    assert share_difficulty_to_target(0.001) == pytest.approx(1000 * SHARE_DIFF1_TARGET, rel=1e-15)
    assert share_difficulty_to_target(1 / 65536) == 0xFFFF << 240
    assert share_difficulty_to_target(Fraction(1, 65536)) == 0xFFFF << 240


def test_tiny_difficulty_clamps_to_the_largest_target() -> None:
    assert share_difficulty_to_target(1e-30) == MAX_TARGET
    assert network_difficulty_to_target(Fraction(1, 1 << 100)) == MAX_TARGET


@pytest.mark.parametrize("difficulty", [0, -1, -0.5, float("inf"), float("nan")])
def test_non_positive_or_non_finite_difficulty_is_refused(difficulty: float) -> None:
    with pytest.raises(ValueError):
        share_difficulty_to_target(difficulty)
    with pytest.raises(ValueError):
        network_difficulty_to_target(difficulty)


def test_non_positive_target_is_refused() -> None:
    with pytest.raises(ValueError):
        share_target_to_difficulty(0)
    with pytest.raises(ValueError):
        target_to_bits(-1)
    with pytest.raises(ValueError):
        target_to_bits(MAX_TARGET + 1)


def test_hash_share_difficulty_of_a_zero_hash_is_finite() -> None:
    assert hash_share_difficulty(0) == SHARE_DIFF1_TARGET


def test_expected_coins_per_day() -> None:
    # 2^32 H/s at network difficulty 86400 finds one block a day on average.
    assert expected_coins_per_day(2**32, 6.25, 86400) == 6.25
    assert expected_coins_per_day(0, 6.25, 86400) == 0
    with pytest.raises(ValueError):
        expected_coins_per_day(1e6, 6.25, 0)


def test_hashrate_from_shares() -> None:
    assert hashrate_from_shares(1, 1) == 65536
    assert hashrate_from_shares(600, 60) == 655360
    assert hashrate_from_shares(10, 0) == 0
