"""The benchmark's arithmetic: percentiles, per-second buckets, steady rates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.stats import per_second, percentile, steady_rate, summary_ms, variation


@pytest.mark.parametrize(
    ("share", "expected"),
    [(0.0, 1.0), (0.5, 50.0), (0.95, 95.0), (0.99, 99.0), (1.0, 100.0)],
)
def test_percentile_is_nearest_rank(share: float, expected: float) -> None:
    values = [float(v) for v in range(100, 0, -1)]  # order must not matter
    assert percentile(values, share) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 0.5))


def test_percentile_rejects_a_share_outside_0_1() -> None:
    with pytest.raises(ValueError, match="share"):
        percentile([1.0], 1.5)


@given(st.lists(st.floats(0, 1e6), min_size=1), st.floats(0, 1))
def test_percentile_is_one_of_the_values_and_monotonic(values: list[float], share: float) -> None:
    p = percentile(values, share)
    assert p in values
    assert percentile(values, 0) <= p <= percentile(values, 1)


def test_per_second_counts_events_in_whole_seconds_and_drops_the_rest() -> None:
    start = 1000.0
    times = [999.9, 1000.0, 1000.5, 1001.0, 1002.99, 1003.0]
    assert per_second(times, start, start + 3) == [2, 1, 1]


def test_per_second_rounds_a_partial_last_second_up() -> None:
    assert per_second([0.1, 2.2], 0.0, 2.5) == [1, 0, 1]


def test_steady_rate_counts_only_the_window() -> None:
    times = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert steady_rate(times, 1.0, 3.0) == pytest.approx(2.0)


def test_steady_rate_rejects_an_empty_window() -> None:
    with pytest.raises(ValueError, match="empty"):
        steady_rate([1.0], 2.0, 2.0)


def test_summary_is_in_milliseconds() -> None:
    summary = summary_ms([0.010, 0.020, 0.030, 0.040])
    assert summary == {"p50": 20.0, "p95": 40.0, "p99": 40.0, "p99.9": 40.0, "max": 40.0}


def test_variation_is_the_spread_of_per_second_counts_over_their_mean() -> None:
    assert variation([100, 100, 100]) == 0.0
    assert variation([50, 150]) == pytest.approx(0.5)
    assert math.isnan(variation([]))
    assert math.isnan(variation([0, 0]))
