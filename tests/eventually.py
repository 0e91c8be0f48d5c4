"""Waiting for a condition without fixed sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def assert_eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool] = bool,
    *,
    within: float = 20.0,
    interval: float = 0.05,
    message: str = "condition not met",
) -> T:
    """Polls `probe` until `check(value)` holds; fails with the last value seen."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {within}s; last value: {value!r}")
        await asyncio.sleep(interval)
