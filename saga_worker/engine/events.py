"""Events the engine reacts to, as plain frozen dataclasses.

The runtime maps wire messages to these (OrderCreated -> StartSaga, an event
on a wait step's topic or an operator's signal -> EventArrived, a child step's
start request -> StartSaga with its ParentLink,
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
class ParentLink:
    """The step of a parent saga that started this one (a child saga), and which of
    its commands it answers: the child's outcome is sent back as that command's reply."""

    saga_id: str
    step: str
    command_id: str
    attempt: int
    compensation: bool = False  # started to undo the step: answers its compensation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StartSaga:
    saga_id: str
    data: Mapping[str, Any]
    message_id: str | None = None
    parent: ParentLink | None = None


@dataclass(frozen=True, slots=True)
class EventArrived:
    """An event for a wait step: from its topic, matched to this saga by correlation,
    or a signal from an operator. `data` is the event's body."""

    step: str
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
    | EventArrived
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
        EventArrived,
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
        if cls is StartSaga and fields.get("parent") is not None:
            fields["parent"] = ParentLink(**fields["parent"])
        return cls(**fields)
    except (KeyError, TypeError) as exc:
        raise StateError(f"malformed event: {exc!r}") from exc
