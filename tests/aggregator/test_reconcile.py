"""Reconciliation: daemon over the median, outliers out, conflicts and stale values left unused."""

from datetime import UTC, datetime, timedelta

import pytest

from aggregator.model import Observation, SourceData
from aggregator.reconcile import reconcile, resolve

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BAND = 0.25


def obs(source: str, value: float, age_s: float = 0.0, quantity: str = "price_usd") -> Observation:
    return Observation(source, "coin", "LTC/scrypt", quantity, value, NOW - timedelta(seconds=age_s))


def test_median_of_agreeing_sources() -> None:
    resolved, outliers = resolve([obs("a", 84.0), obs("b", 84.1), obs("c", 84.2)], (), BAND)
    assert resolved is not None and resolved.value == 84.1 and resolved.rule == "median"
    assert resolved.sources == ("a", "b", "c") and outliers == []


def test_an_outlier_beyond_the_band_is_rejected_and_reported() -> None:
    resolved, outliers = resolve([obs("a", 0.38), obs("b", 0.38), obs("c", 0.038)], (), BAND)
    assert resolved is not None and resolved.value == 0.38 and resolved.sources == ("a", "b")
    assert [(o.observation.source, round(o.deviation, 3)) for o in outliers] == [("c", 0.9)]


def test_the_daemon_wins_and_disagreeing_sources_are_outliers() -> None:
    observations = [obs("whattomine", 89e6), obs("minerstat", 91e6), obs("daemon:LTC", 60e6), obs("x", 61e6)]
    resolved, outliers = resolve(observations, {"daemon:LTC"}, BAND)
    assert resolved is not None and resolved.value == 60e6 and resolved.rule == "authoritative"
    assert sorted(o.observation.source for o in outliers) == ["minerstat", "whattomine"]


def test_two_sources_that_disagree_leave_nothing_to_trust() -> None:
    resolved, outliers = resolve([obs("a", 100.0), obs("b", 200.0)], (), BAND)
    assert resolved is None and len(outliers) == 2
    # Within the band, two sources give their mean.
    resolved, _ = resolve([obs("a", 89e6), obs("b", 91e6)], (), BAND)
    assert resolved is not None and resolved.value == 90e6


def test_reconcile_drops_stale_values_and_reports_conflicts() -> None:
    data = [
        SourceData("a", "price", (obs("a", 84.0), obs("a", 9e7, quantity="difficulty"))),
        SourceData("b", "price", (obs("b", 84.2, age_s=7200), obs("b", 3e7, quantity="difficulty"))),
    ]
    rec = reconcile(data, now=NOW, stale_after_s=3600, band=BAND)
    assert [(o.source, o.value) for o in rec.stale] == [("b", 84.2)]
    fresh = rec.of("coin", "LTC/scrypt")
    assert fresh["price_usd"].value == 84.0 and fresh["price_usd"].rule == "single"
    assert "difficulty" not in fresh
    assert [c.key for c in rec.conflicts] == [("coin", "LTC/scrypt", "difficulty")]
    assert rec.subjects("coin") == ["LTC/scrypt"]


def test_resolved_time_is_the_newest_contributing_observation() -> None:
    resolved, _ = resolve([obs("a", 84.0, age_s=60), obs("b", 84.2, age_s=5)], (), BAND)
    assert resolved is not None
    assert resolved.observed_at == NOW - timedelta(seconds=5)
    assert resolved.value == pytest.approx(84.1)
