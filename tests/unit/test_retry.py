from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saga_worker.engine.retry import RetryPolicy, compute_backoff, jitter_fraction
from saga_worker.errors import DefinitionError

S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1 * S), (2, 2 * S), (3, 4 * S), (4, 8 * S), (5, 10 * S), (50, 10 * S), (10**6, 10 * S)],
)
def test_backoff_grows_exponentially_up_to_the_cap(attempt: int, expected: timedelta) -> None:
    policy = RetryPolicy(initial_backoff=S, multiplier=2, max_backoff=10 * S, jitter=0)
    assert compute_backoff(policy, attempt, "seed") == expected


def test_multiplier_one_is_a_constant_delay() -> None:
    policy = RetryPolicy(initial_backoff=3 * S, multiplier=1, max_backoff=10 * S, jitter=0)
    assert {compute_backoff(policy, n, "x") for n in range(1, 20)} == {3 * S}


def test_jitter_is_deterministic_and_only_shortens() -> None:
    policy = RetryPolicy(initial_backoff=10 * S, multiplier=1, max_backoff=10 * S, jitter=0.5)
    delays = [compute_backoff(policy, 1, f"saga-{i}") for i in range(200)]
    assert delays == [compute_backoff(policy, 1, f"saga-{i}") for i in range(200)]
    assert all(5 * S <= d <= 10 * S for d in delays)
    assert len(set(delays)) > 100  # it does spread


def test_zero_initial_backoff_means_immediate_retry() -> None:
    policy = RetryPolicy(initial_backoff=timedelta(0), max_backoff=timedelta(0))
    assert compute_backoff(policy, 7, "s") == timedelta(0)


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        compute_backoff(RetryPolicy(), 0, "s")


@given(
    initial_ms=st.integers(0, 100_000),
    extra_ms=st.integers(0, 10_000_000),
    multiplier=st.floats(1.0, 100.0),
    jitter=st.floats(0.0, 1.0),
    attempt=st.integers(1, 10_000),
    seed=st.text(max_size=20),
)
def test_backoff_stays_within_bounds(
    initial_ms: int, extra_ms: int, multiplier: float, jitter: float, attempt: int, seed: str
) -> None:
    policy = RetryPolicy(
        initial_backoff=timedelta(milliseconds=initial_ms),
        max_backoff=timedelta(milliseconds=initial_ms + extra_ms),
        multiplier=multiplier,
        jitter=jitter,
    )
    delay = compute_backoff(policy, attempt, seed)
    assert timedelta(0) <= delay <= policy.max_backoff
    assert delay.microseconds % 1000 == 0
    assert 0.0 <= jitter_fraction(seed) < 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"initial_backoff": -S}, "initial_backoff"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": float("nan")}, "multiplier"),
        ({"initial_backoff": 5 * S, "max_backoff": S}, "max_backoff"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1.5}, "jitter"),
    ],
)
def test_policy_validates_itself(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_attempt_budget() -> None:
    assert RetryPolicy(max_attempts=2).allows_another(1)
    assert not RetryPolicy(max_attempts=2).allows_another(2)
    assert RetryPolicy(max_attempts=None).allows_another(10**9)
    assert RetryPolicy(max_attempts=None).unlimited


def test_a_delay_is_whole_milliseconds_never_above_a_cap_between_two() -> None:
    cap = timedelta(microseconds=1_001_500)  # 1001.5 ms: rounding alone would give 1002
    policy = RetryPolicy(initial_backoff=cap, max_backoff=cap, jitter=0)
    assert compute_backoff(policy, 1, "s") == timedelta(milliseconds=1001)
    assert compute_backoff(policy, 5, "s") == timedelta(milliseconds=1001)
