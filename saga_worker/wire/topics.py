"""Topic names every saga shares, and the deployment prefix that maps logical
names to physical ones. An application's own topics (start messages, commands,
outcomes) are named in its saga definitions."""

from __future__ import annotations

from dataclasses import dataclass

STEP_COMPLETED = "SagaStepCompleted"
STEP_FAILED = "SagaStepFailed"
COMPENSATION_COMPLETED = "SagaCompensationCompleted"
DEAD_LETTER = "saga-worker.dead-letter"
# Start a saga of any type of the app by name: child steps ask here (see SagaStartRequested).
START_REQUESTED = "SagaStartRequested"

REPLY_TOPICS: tuple[str, ...] = (STEP_COMPLETED, STEP_FAILED, COMPENSATION_COMPLETED)


@dataclass(frozen=True)
class Topics:
    """Maps logical topic names to physical ones under a deployment prefix."""

    prefix: str = ""

    def physical(self, logical: str) -> str:
        return f"{self.prefix}{logical}"

    def logical(self, physical: str) -> str:
        if self.prefix and not physical.startswith(self.prefix):
            raise ValueError(f"topic {physical!r} lacks the prefix {self.prefix!r}")
        return physical[len(self.prefix) :]
