"""Latency and fault injection per participant, for demos and chaos tests.

Environment variables, with NAME the participant's name in capitals (any participant
of any app: INVENTORY for the sample's inventory, CARDS for a `cards` participant):

    SAGA_<NAME>_LATENCY_MS              added before each batch's effects (default 0)
    SAGA_<NAME>_BUSINESS_FAILURE_RATE   0..1: an action is refused as a business failure
                                        (code `injected_failure`, recorded, not retryable)
    SAGA_<NAME>_ERROR_RATE              0..1: a command fails unexpectedly (code
                                        `injected_error`, nothing recorded, retryable)
    SAGA_<NAME>_HANG_RATE               0..1: share of sagas whose actions this participant
                                        never answers (no effect, no reply), as a hung
                                        downstream would; chosen by a hash of the saga id,
                                        so every attempt of that saga hangs and it times out
    SAGA_<NAME>_CRASH_RATE              0..1: after a command's effect is recorded and
                                        before any reply is sent, the process dies
                                        (os._exit(CRASH_EXIT_CODE))
    SAGA_<NAME>_SEED, SAGA_PARTICIPANT_SEED
                                        seed of the draws (the first one set wins); unset:
                                        not reproducible

Draws come from one random.Random per process, in record order. A repeated
command answered from its stored outcome is never drawn for a crash, so a
restarted worker replaying the batch that killed it does not die on it again.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass

from saga_worker.errors import InvalidKnobError

CRASH_EXIT_CODE = 70
SHARED_SEED_ENV = "SAGA_PARTICIPANT_SEED"


@dataclass(frozen=True)
class Knobs:
    latency_ms: int = 0
    business_failure_rate: float = 0.0
    error_rate: float = 0.0
    crash_rate: float = 0.0
    hang_rate: float = 0.0
    seed: int | None = None

    @classmethod
    def from_env(cls, participant: str, env: Mapping[str, str]) -> Knobs:
        stem = f"SAGA_{participant.upper()}_"
        seed_name = stem + "SEED" if env.get(stem + "SEED") else SHARED_SEED_ENV
        return cls(
            latency_ms=int(_number(env, stem + "LATENCY_MS", 0, 600_000, integer=True)),
            business_failure_rate=_number(env, stem + "BUSINESS_FAILURE_RATE", 0, 1),
            error_rate=_number(env, stem + "ERROR_RATE", 0, 1),
            crash_rate=_number(env, stem + "CRASH_RATE", 0, 1),
            hang_rate=_number(env, stem + "HANG_RATE", 0, 1),
            seed=int(_number(env, seed_name, -(2**63), 2**63, integer=True, default=None))
            if env.get(seed_name)
            else None,
        )


def _number(
    env: Mapping[str, str],
    name: str,
    low: float,
    high: float,
    *,
    integer: bool = False,
    default: float | None = 0,
) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default or 0
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise InvalidKnobError(f"{name} must be {kind}, got {raw!r}") from None
    if not low <= value <= high:  # also rejects NaN
        raise InvalidKnobError(f"{name} must be within {low}..{high}, got {raw!r}")
    return value


class FaultInjector:
    """Draws the knobs' faults. Not for security: reproducible demo chaos only."""

    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self._random = random.Random(knobs.seed)  # noqa: S311 - fault injection, not crypto

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self._random.random() < rate

    def business_failure(self) -> bool:
        return self._draw(self.knobs.business_failure_rate)

    def error(self) -> bool:
        return self._draw(self.knobs.error_rate)

    def crash(self) -> bool:
        return self._draw(self.knobs.crash_rate)

    def hangs(self, saga_id: str) -> bool:
        """Per saga, not per draw: every attempt of a hanging saga hangs again."""
        if self.knobs.hang_rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.knobs.seed}:{saga_id}".encode()).digest()
        return int.from_bytes(digest[:8]) / 2**64 < self.knobs.hang_rate
