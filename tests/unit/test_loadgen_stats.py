"""Report statistics: percentiles, service level, ASA, abandonment, fairness."""

from __future__ import annotations

import math

import pytest

from switchboard_tools.loadgen.stats import (
    AgentSession,
    ConversationOutcome,
    TimeSeries,
    answer_stats,
    busiest_window_rate,
    coefficient_of_variation,
    jain_index,
    occupancy_and_fairness,
    per_tenant,
    percentile,
)


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 100) == 100.0
    assert math.isnan(percentile([], 50))


def test_service_level_asa_and_abandonment() -> None:
    outcomes = [
        ConversationOutcome("s", "chat", 0.0, answered_at=5.0),
        ConversationOutcome("s", "chat", 0.0, answered_at=15.0),
        ConversationOutcome("s", "chat", 0.0, answered_at=100.0),
        ConversationOutcome("s", "chat", 0.0, answered_at=None),  # never answered: abandoned
    ]
    stats = answer_stats(outcomes, patience_s=180.0, targets_s=(20.0, 180.0))
    assert stats["service_level_20s"] == pytest.approx(0.5)
    assert stats["service_level_180s"] == pytest.approx(0.75)
    assert stats["asa_s"] == pytest.approx(40.0)
    assert stats["abandonment_rate"] == pytest.approx(0.25)


def test_answered_after_patience_counts_as_abandoned() -> None:
    outcomes = [ConversationOutcome("s", "chat", 0.0, answered_at=200.0)]
    assert answer_stats(outcomes, patience_s=180.0, targets_s=(20.0,))["abandoned"] == 1


def test_fairness_even_and_skewed() -> None:
    assert jain_index([3, 3, 3]) == pytest.approx(1.0)
    assert coefficient_of_variation([3, 3, 3]) == pytest.approx(0.0)
    assert jain_index([9, 0, 0]) == pytest.approx(1 / 3)
    assert coefficient_of_variation([2, 4]) == pytest.approx(1 / 3)


def test_occupancy_and_per_shift_fairness() -> None:
    sessions = [
        AgentSession("s", "a1", logged_on_s=100, busy_s=50, handled=10, slots=3),
        AgentSession("s", "a2", logged_on_s=50, busy_s=25, handled=5, slots=3),  # joined at the shift change
    ]
    result = occupancy_and_fairness(sessions)
    assert result["per_agent"]["a1"]["occupancy"] == pytest.approx(0.5)  # type: ignore[index]
    assert result["per_tenant"]["s"]["jain"] == pytest.approx(1.0)  # type: ignore[index]


def test_per_tenant_waits_keep_shops_apart() -> None:
    outcomes = [
        ConversationOutcome("flagship", "chat", 0.0, answered_at=60.0),
        ConversationOutcome("shop-01", "chat", 0.0, answered_at=2.0),
    ]
    result = per_tenant(outcomes, 180.0, (20.0,))
    assert result["flagship"]["service_level_20s"] == 0.0
    assert result["shop-01"]["service_level_20s"] == 1.0


def test_busiest_window() -> None:
    times = [0.0, 0.1, 0.2, 5.0, 5.5, 5.6, 5.7, 5.8]
    assert busiest_window_rate(times, 1.0) == pytest.approx(5.0)


def test_counters_have_zeros_in_quiet_seconds_and_gauges_do_not() -> None:
    series = TimeSeries()
    series.add("sent", 0.2)
    series.add("sent", 3.9, 2)
    series.set("queue:a/b", 1.0, 4)
    series.set("queue:a/b", 5.0, 0)
    lists = series.as_lists()
    assert lists["sent"] == [(0, 1.0), (1, 0.0), (2, 0.0), (3, 2.0)]
    assert lists["queue:a/b"] == [(1, 4.0), (5, 0.0)]
