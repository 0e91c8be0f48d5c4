"""Events the engine reacts to, as plain frozen dataclasses.

The runtime maps wire messages to these (OrderCreated -> StartSaga,
SagaStepCompleted -> StepSucceeded, SagaStepFailed -> StepFailed,
SagaCompensationCompleted -> CompensationSucceeded), fires TimerFired for due
timers, and the CLI sends OperatorRetry / OperatorAbort.

Matching replies: a reply carrying `command_id` answers exactly that command;
one carrying only `attempt` answers that attempt of its step; a minimal reply
with neither answers whatever its step is currently waiting for. As it may be
a redelivered copy of an earlier attempt's failure, a retryable minimal
StepFailed taken after the step's first attempt leaves the step's outcome
uncertain: it is compensated if the saga fails, as a timed-out step is (see
decide.py, also for why a non-retryable one cannot be such a copy). A failed
compensation arrives as StepFailed with the compensation's command_id (or,
minimal, while the step is compensating).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from saga_worker.errors import StateError


@dataclass(frozen=True, slots=True)
class StartSaga:
    saga_id: str
    data: Mapping[str, Any]
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class StepSucceeded:
    step: str
    result: Mapping[str, Any] = field(default_factory=dict)
    command_id: str | None = None
    attempt: int | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class StepFailed:
    step: str
    error: str = ""
    error_code: str | None = None
    retryable: bool | None = None  # False: a business failure, never retried
    command_id: str | None = None
    attempt: int | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class CompensationSucceeded:
    step: str
    command_id: str | None = None
    attempt: int | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer_id: str


@dataclass(frozen=True, slots=True)
class OperatorRetry:
    pass


@dataclass(frozen=True, slots=True)
class OperatorAbort:
    reason: str = "aborted by operator"


Event = (
    StartSaga
    | StepSucceeded
    | StepFailed
    | CompensationSucceeded
    | TimerFired
    | OperatorRetry
    | OperatorAbort
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        StartSaga,
        StepSucceeded,
        StepFailed,
        CompensationSucceeded,
        TimerFired,
        OperatorRetry,
        OperatorAbort,
    )
}


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of an event, tagged with its type (for logs and recordings)."""
    return {"type": type(event).__name__, **asdict(event)}


def event_from_dict(d: Mapping[str, Any]) -> Event:
    fields = dict(d)
    try:
        cls = EVENT_TYPES[fields.pop("type")]
        return cls(**fields)
    except (KeyError, TypeError) as exc:
        raise StateError(f"malformed event: {exc!r}") from exc
