"""Compact bits, targets and difficulties.

Two difficulty scales meet in a scrypt pool and must not be confused:
- network difficulty uses Bitcoin's difficulty-1 target 0xFFFF·2^208;
- scrypt *share* difficulty (what `mining.set_difficulty` means to cpuminer and cgminer) uses
  0xFFFF·2^224, 65536 times easier, so share difficulty 1 takes about 2^16 hashes.
"""

import math
from fractions import Fraction

MAX_TARGET = (1 << 256) - 1
NETWORK_DIFF1_TARGET = 0xFFFF << 208
SHARE_DIFF1_TARGET = 0xFFFF << 224
HASHES_PER_SHARE_DIFF1 = 1 << 16
HASHES_PER_NETWORK_DIFF1 = 1 << 32


def bits_to_target(bits: int) -> int:
    """Decode compact `nBits`; a set sign bit or an overflow is a malformed value, not a target."""
    if not 0 <= bits <= 0xFFFFFFFF:
        raise ValueError(f"bits out of range: {bits:#x}")
    exponent = bits >> 24
    mantissa = bits & 0x007FFFFF
    if bits & 0x00800000 and mantissa:
        raise ValueError(f"negative compact target: {bits:#010x}")
    if exponent <= 3:
        target = mantissa >> (8 * (3 - exponent))
    else:
        target = mantissa << (8 * (exponent - 3))
    if target > MAX_TARGET:
        raise ValueError(f"compact target overflows 256 bits: {bits:#010x}")
    return target


def target_to_bits(target: int) -> int:
    """Encode a target as compact `nBits` (rounding down, as Bitcoin Core's GetCompact does)."""
    if not 0 <= target <= MAX_TARGET:
        raise ValueError("target out of range")
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        mantissa = target << (8 * (3 - size))
    else:
        mantissa = target >> (8 * (size - 3))
    if mantissa & 0x00800000:
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


def bits_from_hex(bits_hex: str) -> int:
    return int(bits_hex, 16)


def _difficulty_to_target(difficulty: float | Fraction, diff1: int) -> int:
    # Written so NaN fails too; infinity would otherwise escape as OverflowError from Fraction.
    if not 0 < difficulty < math.inf:
        raise ValueError(f"difficulty must be positive and finite, got {difficulty}")
    # Fraction keeps fractional difficulties (0.001 for CPU miners) exact instead of float-rounded.
    target = int(Fraction(diff1) / Fraction(difficulty))
    return min(target, MAX_TARGET)


def _target_to_difficulty(target: int, diff1: int) -> float:
    if target <= 0:
        raise ValueError("target must be positive")
    return diff1 / target


def share_difficulty_to_target(difficulty: float | Fraction) -> int:
    return _difficulty_to_target(difficulty, SHARE_DIFF1_TARGET)


def share_target_to_difficulty(target: int) -> float:
    return _target_to_difficulty(target, SHARE_DIFF1_TARGET)


def network_difficulty_to_target(difficulty: float | Fraction) -> int:
    return _difficulty_to_target(difficulty, NETWORK_DIFF1_TARGET)


def network_target_to_difficulty(target: int) -> float:
    return _target_to_difficulty(target, NETWORK_DIFF1_TARGET)


def bits_to_network_difficulty(bits: int) -> float:
    return network_target_to_difficulty(bits_to_target(bits))


def hash_share_difficulty(pow_value: int) -> float:
    """The share difficulty a proof-of-work value actually reached (for accounting and logs)."""
    return SHARE_DIFF1_TARGET / max(pow_value, 1)


def expected_coins_per_day(hashrate_hs: float, block_reward: float, network_difficulty: float) -> float:
    """86400 · H · reward / (D · 2^32): a block at network difficulty D takes D·2^32 hashes."""
    if network_difficulty <= 0:
        raise ValueError("network difficulty must be positive")
    return 86400.0 * hashrate_hs * block_reward / (network_difficulty * HASHES_PER_NETWORK_DIFF1)


def hashrate_from_shares(total_share_difficulty: float, seconds: float) -> float:
    """Σ share difficulty · 65536 / seconds."""
    if seconds <= 0:
        return 0.0
    return total_share_difficulty * HASHES_PER_SHARE_DIFF1 / seconds
