"""The comparison window and the backoff schedule, pure."""

import pytest

from fleet.measure import HASHES_PER_DIFFICULTY, Sample, device_window, disagreement, proxy_hashrate
from fleet.poller import Backoff


def samples(rate: float, times: list[float], elapsed0: float = 1000.0) -> list[Sample]:
    return [Sample(t, rate * (t + elapsed0), rate * 1.1, t + elapsed0) for t in times]


def test_window_uses_the_hash_counter_between_the_polls_inside_it() -> None:
    window = device_window(samples(5e8, [0, 30, 60, 90, 120, 150]), 20, 130)
    assert window is not None and window.from_counter
    assert (window.start, window.end) == (30, 120)
    assert window.hashrate_hs == pytest.approx(5e8)


def test_window_after_a_restart_falls_back_to_the_reported_rates() -> None:
    before = samples(5e8, [0, 30])
    after = [Sample(60, 5e8 * 5, 4e8, 5), Sample(90, 5e8 * 35, 6e8, 35)]
    window = device_window([*before, *after], 0, 100)
    assert window is not None and not window.from_counter
    assert window.hashrate_hs == pytest.approx((5.5e8 * 2 + 4e8 + 6e8) / 4)


def test_window_needs_two_samples() -> None:
    assert device_window(samples(1.0, [0, 30]), 10, 100) is None
    assert device_window([], 0, 100) is None
    assert device_window([Sample(0, None, None, None), Sample(30, None, None, None)], 0, 30) is None


def test_proxy_hashrate_and_disagreement() -> None:
    # 90 shares of difficulty d in 90 s: d·65536 hashes a second.
    assert proxy_hashrate(90 * 100.0, 90.0) == pytest.approx(100 * HASHES_PER_DIFFICULTY)
    assert proxy_hashrate(5.0, 0.0) == 0.0
    assert disagreement(100.0, 80.0) == pytest.approx(0.2)
    assert disagreement(100.0, 125.0) == pytest.approx(-0.25)
    assert disagreement(0.0, 5.0) is None


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(30.0, 600.0)
    assert [backoff.delay(n) for n in range(7)] == [30, 30, 60, 120, 240, 480, 600]
    assert backoff.delay(10_000) == 600
