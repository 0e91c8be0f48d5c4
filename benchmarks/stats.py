"""Pure arithmetic over what the driver observed: percentiles, per-second buckets, rates."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (`share` in 0..1); NaN for no values."""
    if not 0 <= share <= 1:
        raise ValueError("share must be within 0..1")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def per_second(times: Sequence[float], start: float, end: float) -> list[int]:
    """Events per whole second of [start, end), times in seconds on the same clock."""
    buckets = [0] * max(0, math.ceil(end - start))
    for at in times:
        index = math.floor(at - start)
        if 0 <= index < len(buckets):
            buckets[index] += 1
    return buckets


def steady_rate(times: Sequence[float], start: float, end: float) -> float:
    """Events per second within the window [start, end)."""
    if end <= start:
        raise ValueError("the window is empty")
    return sum(1 for at in times if start <= at < end) / (end - start)


def variation(counts: Sequence[int]) -> float:
    """Coefficient of variation (population standard deviation over the mean) of
    per-second counts: how far from steady a throughput is; NaN for no counts."""
    if not counts:
        return math.nan
    mean = sum(counts) / len(counts)
    if mean == 0:
        return math.nan
    return math.sqrt(sum((c - mean) ** 2 for c in counts) / len(counts)) / mean


def summary_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99, p99.9 and max in milliseconds, rounded to 0.1 ms."""
    ms = [s * 1000 for s in latencies_s]
    shares = {"p50": 0.5, "p95": 0.95, "p99": 0.99, "p99.9": 0.999, "max": 1.0}
    return {name: round(percentile(ms, share), 1) for name, share in shares.items()}
