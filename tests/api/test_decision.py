"""The switching rule on its own: threshold, dwell, stale data, ties, with numbers by hand."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.decision import Choice, Held, Option, Rule, decide, gain_pct

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
RULE = Rule(threshold_pct=5.0, min_dwell_s=600.0, max_data_age_s=1800.0)
A = Choice("LTC", "pool-a")
B = Choice("LTC", "pool-b")
C = Choice("DOGE", None)


def held(choice: Choice, seconds_ago: float) -> Held:
    return Held(choice, NOW - timedelta(seconds=seconds_ago))


def options(**nets: float | None) -> list[Option]:
    by_name = {"a": A, "b": B, "c": C}
    return [Option(by_name[name], net) for name, net in nets.items()]


def run(h: Held | None, opts: list[Option], *, data_age_s: float | None = 60.0, rule: Rule = RULE):
    data_as_of = None if data_age_s is None else NOW - timedelta(seconds=data_age_s)
    return decide(h, opts, data_as_of=data_as_of, now=NOW, rule=rule)


def test_the_first_choice_is_the_best_and_made_at_once() -> None:
    v = run(None, options(a=10.0, b=9.0))
    assert (v.choice, v.switch, v.since, v.stale) == (A, True, NOW, False)
    assert v.runner_up == Option(B, 9.0)
    assert v.margin_usd_per_day == pytest.approx(1.0)
    assert v.margin_pct == pytest.approx(100 * 1.0 / 9.0)  # 11.11 %
    assert v.gain_pct is None
    assert v.reason == "first choice: LTC on pool-a at 10.0000 USD/day net"


def test_below_the_threshold_the_current_choice_is_kept() -> None:
    # 10.49 over 10.00 is 4.9 %: under 5 %, even after an hour.
    v = run(held(A, 3600), options(a=10.0, b=10.49))
    assert (v.choice, v.switch, v.since) == (A, False, NOW - timedelta(hours=1))
    assert v.runner_up == Option(B, 10.49)
    assert v.margin_usd_per_day == pytest.approx(-0.49)  # holding the worse one, and saying so
    assert "beats LTC on pool-a by 4.90 %, under the 5 % threshold" in v.reason
    # Only new prices or the data going stale (60 s old now, 1800 s allowed) can change that.
    assert v.recheck_at == NOW + timedelta(seconds=1740)


def test_at_the_threshold_after_the_dwell_it_switches() -> None:
    # 10.50 over 10.00 is exactly 5 %: "at least the threshold" moves.
    v = run(held(A, 600), options(a=10.0, b=10.5))
    assert (v.choice, v.switch, v.since) == (B, True, NOW)
    assert v.gain_pct == pytest.approx(5.0)
    assert v.runner_up == Option(A, 10.0)
    assert v.reason == "LTC on pool-b beats LTC on pool-a by 5.00 % (threshold 5 %) after 600 s held: moving"


def test_within_the_dwell_even_a_large_gain_waits() -> None:
    # Twice as good, but held 599 s of the 600 s minimum.
    v = run(held(A, 599), options(a=10.0, b=20.0))
    assert (v.choice, v.switch) == (A, False)
    assert v.reason == (
        "LTC on pool-b beats LTC on pool-a by 100.00 %, but LTC on pool-a is held until "
        "2026-11-24T12:00:01Z (600 s minimum): keeping LTC on pool-a"
    )
    # The clock alone changes this verdict, at the end of the dwell: that is when to look again.
    assert v.recheck_at == NOW + timedelta(seconds=1)
    assert run(held(A, 600), options(a=10.0, b=20.0)).choice == B


def test_stale_data_never_switches_and_says_it_is_stale() -> None:
    # 1801 s old data against an 1800 s limit: B's 100 % gain is not trusted.
    v = run(held(A, 7200), options(a=10.0, b=20.0), data_age_s=1801)
    assert (v.choice, v.switch, v.stale, v.data_age_s, v.recheck_at) == (A, False, True, 1801.0, None)
    assert v.reason == "data from 2026-11-24T11:29:59Z is older than 1800 s: keeping LTC on pool-a"
    fresh = run(held(A, 7200), options(a=10.0, b=20.0), data_age_s=1800)
    assert (fresh.choice, fresh.stale) == (B, False)


def test_stale_or_missing_data_makes_no_first_choice() -> None:
    v = run(None, options(a=10.0), data_age_s=5000)
    assert (v.choice, v.switch, v.stale) == (None, False, True)
    assert v.reason == "data from 2026-11-24T10:36:40Z is older than 1800 s: nothing chosen yet"
    v = run(None, [], data_age_s=None)
    assert (v.choice, v.stale, v.reason) == (None, True, "no profitability data: nothing chosen yet")


def test_ties_keep_the_current_choice() -> None:
    v = run(held(A, 3600), options(b=10.0, a=10.0))
    assert (v.choice, v.switch) == (A, False)
    assert v.reason == "LTC on pool-a ties with the best: keeping LTC on pool-a"
    # Even with no threshold at all.
    assert run(held(A, 3600), options(b=10.0, a=10.0), rule=Rule(threshold_pct=0.0)).choice == A


def test_a_choice_no_longer_allowed_is_left_at_once() -> None:
    # Held 10 s only, but the profile now allows only B and C.
    v = run(held(A, 10), options(b=3.0, c=4.0))
    assert (v.choice, v.switch) == (C, True)
    assert v.reason.startswith("LTC on pool-a is no longer allowed by the profile or in the data")


def test_no_price_for_the_current_choice_keeps_it() -> None:
    v = run(held(A, 3600), options(a=None, b=50.0))
    assert (v.choice, v.switch) == (A, False)
    assert v.runner_up == Option(B, 50.0)
    assert v.margin_usd_per_day is None


def test_losses_compare_by_magnitude() -> None:
    # Power costs more than mining pays: -1 over -2 halves the loss, a 50 % gain.
    assert gain_pct(-1.0, -2.0) == pytest.approx(50.0)
    v = run(held(A, 3600), options(a=-2.0, b=-1.0))
    assert (v.choice, v.gain_pct) == (B, pytest.approx(50.0))
    # From exactly zero any profit is an unbounded gain: reported, but as no number.
    v = run(held(A, 3600), options(a=0.0, b=0.01))
    assert (v.choice, v.gain_pct) == (B, None)


def test_nothing_allowed_keeps_the_current_choice() -> None:
    v = run(held(A, 3600), [])
    assert (v.choice, v.switch, v.stale) == (A, False, False)
    assert v.reason == "no option this profile allows: keeping LTC on pool-a"


_NET = st.one_of(st.none(), st.floats(-5.0, 50.0, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(0.0, 900.0, allow_nan=False),  # seconds since the previous step
            st.floats(0.0, 3600.0, allow_nan=False),  # age of the data at that step
            st.tuples(_NET, _NET, _NET),  # the three options' net USD/day
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_no_sequence_of_price_updates_switches_twice_within_the_dwell(
    steps: list[tuple[float, float, tuple[float | None, float | None, float | None]]],
) -> None:
    now = NOW
    current: Held | None = None
    switches: list[datetime] = []
    for dt, age, (a, b, c) in steps:
        now += timedelta(seconds=dt)
        opts = [Option(A, a), Option(B, b), Option(C, c)]
        v = decide(current, opts, data_as_of=now - timedelta(seconds=age), now=now, rule=RULE)
        assert v.stale == (age > RULE.max_data_age_s)
        if v.stale:
            assert not v.switch
        if v.switch:
            assert v.choice is not None
            switches.append(now)
            current = Held(v.choice, now)
    for earlier, later in itertools.pairwise(switches):
        assert (later - earlier).total_seconds() >= RULE.min_dwell_s
