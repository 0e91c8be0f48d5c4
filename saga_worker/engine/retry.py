"""Retry policies as values, and backoff as a pure function of them.

`compute_backoff` has no randomness: its jitter is derived from a hash of a
seed the caller passes (the engine uses the saga id, step and attempt), so the
same saga replayed through `decide` schedules the same retries.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import timedelta

from saga_worker.errors import DefinitionError

_MAX_SECONDS = 10 * 365 * 24 * 3600.0  # far beyond any sane cap; keeps timedelta in range


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how far apart, an operation is attempted.

    max_attempts: total attempts including the first; None retries forever.
    initial_backoff: the delay before the second attempt.
    multiplier: growth of the delay per further attempt (>= 1).
    max_backoff: the cap on any delay (>= initial_backoff).
    jitter: fraction 0..1; a delay d becomes d * (1 - jitter * u) for a
        deterministic u in [0, 1), so jitter never pushes a delay over the cap.
    """

    max_attempts: int | None = 3
    initial_backoff: timedelta = timedelta(seconds=1)
    multiplier: float = 2.0
    max_backoff: timedelta = timedelta(seconds=60)
    jitter: float = 0.1

    def __post_init__(self) -> None:
        ma = self.max_attempts
        if ma is not None and (isinstance(ma, bool) or not isinstance(ma, int) or ma < 1):
            raise DefinitionError(f"max_attempts must be an int >= 1 or None, got {ma!r}")
        if self.initial_backoff < timedelta(0):
            raise DefinitionError(f"initial_backoff must be >= 0, got {self.initial_backoff}")
        if not self.multiplier >= 1.0:  # also rejects NaN
            raise DefinitionError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if self.max_backoff < self.initial_backoff:
            raise DefinitionError(
                f"max_backoff ({self.max_backoff}) must be >= initial_backoff "
                f"({self.initial_backoff})"
            )
        if not 0.0 <= self.jitter <= 1.0:
            raise DefinitionError(f"jitter must be within 0..1, got {self.jitter!r}")

    @property
    def unlimited(self) -> bool:
        return self.max_attempts is None

    def allows_another(self, attempts_made: int) -> bool:
        """True when one more attempt is allowed after `attempts_made` attempts."""
        return self.max_attempts is None or attempts_made < self.max_attempts


def jitter_fraction(seed: str) -> float:
    """A deterministic number in [0, 1) derived from `seed`."""
    digest = hashlib.blake2b(seed.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def compute_backoff(policy: RetryPolicy, attempt: int, jitter_seed: str) -> timedelta:
    """The delay to wait after failed attempt number `attempt` (1-based).

    initial_backoff * multiplier ** (attempt - 1), capped at max_backoff, then
    reduced by up to `jitter` of itself, deterministically from `jitter_seed`.
    """
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    cap = min(policy.max_backoff.total_seconds(), _MAX_SECONDS)
    base = policy.initial_backoff.total_seconds()
    try:
        delay = base * policy.multiplier ** (attempt - 1)
    except OverflowError:
        delay = cap
    delay = min(delay, cap)
    if policy.jitter and delay:
        delay *= 1.0 - policy.jitter * jitter_fraction(jitter_seed)
    # whole milliseconds (the resolution of stored timers), never above the cap
    return timedelta(milliseconds=min(round(delay * 1000), math.floor(cap * 1000)))
