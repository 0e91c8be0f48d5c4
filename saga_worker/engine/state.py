"""Saga state: statuses, the one table of allowed transitions, and a compact codec.

`SagaState` and `StepState` are frozen; the engine builds new ones and shares
everything it does not change (saga data, step results), so a decision costs
a few small allocations, never a deep copy. Treat `data` and results as
read-only.

`to_dict()` gives a JSON-ready dict with short keys, times as epoch
milliseconds, and default-valued fields left out, for orjson and Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from saga_worker.engine.events import ParentLink
from saga_worker.errors import InvalidTransitionError, StateError


class SagaStatus(StrEnum):
    STARTED = "started"
    PENDING = "pending"  # waiting for forward steps
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    FAILED = "failed"  # fully compensated
    NEEDS_OPERATOR = "needs_operator"  # a step exhausted its retries; see `error`


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

TERMINAL: frozenset[SagaStatus] = frozenset({SagaStatus.COMPLETED, SagaStatus.FAILED})

# The one table of allowed status transitions. A self-transition records an
# event that changed a step but not the saga's status. `None` is "no saga yet".
TRANSITIONS: Mapping[SagaStatus | None, frozenset[SagaStatus]] = {
    None: frozenset({SagaStatus.STARTED}),
    SagaStatus.STARTED: frozenset({SagaStatus.PENDING}),
    SagaStatus.PENDING: frozenset(
        {
            SagaStatus.PENDING,
            SagaStatus.COMPENSATING,
            SagaStatus.COMPLETED,
            SagaStatus.FAILED,  # the first stage failed: nothing to compensate
            SagaStatus.NEEDS_OPERATOR,  # a retriable step after the pivot gave up
        }
    ),
    SagaStatus.COMPENSATING: frozenset(
        {SagaStatus.COMPENSATING, SagaStatus.FAILED, SagaStatus.NEEDS_OPERATOR}
    ),
    SagaStatus.NEEDS_OPERATOR: frozenset(
        {SagaStatus.NEEDS_OPERATOR, SagaStatus.PENDING, SagaStatus.COMPENSATING}
    ),
    SagaStatus.COMPLETED: frozenset(),
    SagaStatus.FAILED: frozenset(),
}


def is_transition_valid(from_status: SagaStatus | None, to_status: SagaStatus) -> bool:
    return to_status in TRANSITIONS[from_status]


def check_transition(from_status: SagaStatus | None, to_status: SagaStatus) -> None:
    if not is_transition_valid(from_status, to_status):
        raise InvalidTransitionError(f"saga status may not go from {from_status} to {to_status}")


class StepStatus(StrEnum):
    NOT_STARTED = "not_started"
    PENDING = "pending"  # a command is in flight
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the last attempt failed; a retry may be scheduled
    TIMED_OUT = "timed_out"  # the last attempt got no answer in time
    ABANDONED = "abandoned"  # in flight when the saga failed or was aborted
    COMPENSATING = "compensating"  # a compensation is in flight
    COMPENSATION_FAILED = "compensation_failed"  # awaiting a retry, or an operator
    COMPENSATED = "compensated"


@dataclass(frozen=True, slots=True)
class StepState:
    """Progress of one step.

    attempt / comp_attempt count commands sent (1-based; 0 = none). The
    command ids are derived from them (see `engine.command_id`). `base` and
    `comp_base` are the attempt counts at the last operator resume: the retry
    budget counts attempts after them. `uncertain` marks a step whose command
    may have taken effect without us hearing a success (a timeout, abandoned
    in flight, or a minimal failure that may answer an earlier attempt): it is
    compensated like a succeeded one. `stuck` marks a step that exhausted its
    retries and waits for an operator. `early` holds the event a wait step got
    before the saga reached it, taken when it does.
    """

    status: StepStatus = StepStatus.NOT_STARTED
    attempt: int = 0
    result: Mapping[str, Any] | None = None
    error: str | None = None
    uncertain: bool = False
    stuck: bool = False
    base: int = 0
    comp_attempt: int = 0
    comp_base: int = 0
    early: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"s": self.status.value}
        if self.attempt:
            d["a"] = self.attempt
        if self.result is not None:
            d["result"] = self.result
        if self.error is not None:
            d["error"] = self.error
        if self.uncertain:
            d["uncertain"] = True
        if self.stuck:
            d["stuck"] = True
        if self.base:
            d["base"] = self.base
        if self.comp_attempt:
            d["ca"] = self.comp_attempt
        if self.comp_base:
            d["cbase"] = self.comp_base
        if self.early is not None:
            d["early"] = self.early
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepState:
        return cls(
            status=StepStatus(d["s"]),
            attempt=d.get("a", 0),
            result=d.get("result"),
            error=d.get("error"),
            uncertain=d.get("uncertain", False),
            stuck=d.get("stuck", False),
            base=d.get("base", 0),
            comp_attempt=d.get("ca", 0),
            comp_base=d.get("cbase", 0),
            early=d.get("early"),
        )


NOT_STARTED = StepState()


@dataclass(frozen=True, slots=True)
class Transition:
    """One entry of a saga's history: an applied event and the status around it."""

    at: datetime
    event: str
    from_status: SagaStatus | None
    to_status: SagaStatus
    step: str | None = None
    detail: str | None = None

    def to_list(self) -> list[Any]:
        row: list[Any] = [
            to_ms(self.at),
            self.event,
            self.from_status.value if self.from_status is not None else None,
            self.to_status.value,
            self.step,
            self.detail,
        ]
        while row[-1] is None:  # trailing optional fields
            row.pop()
        return row

    @classmethod
    def from_list(cls, row: list[Any]) -> Transition:
        row = row + [None] * (6 - len(row))
        return cls(
            at=from_ms(row[0]),
            event=row[1],
            from_status=SagaStatus(row[2]) if row[2] is not None else None,
            to_status=SagaStatus(row[3]),
            step=row[4],
            detail=row[5],
        )


@dataclass(frozen=True, slots=True)
class SagaState:
    """Everything the engine knows about one saga.

    `error` says why the saga failed (or is failing); `operator_reason` why it
    needs an operator (cleared when one resumes it). `stage` is the index of
    the stage being run (forward) or compensated (compensating). `timers` holds
    the saga's live timers (id -> due): a fired timer not in it is stale.
    Terminal sagas hold no timers. `parent` links a child saga to the step of
    the saga that started it.
    """

    saga_id: str
    definition_name: str
    definition_version: int
    status: SagaStatus
    data: Mapping[str, Any]
    steps: Mapping[str, StepState]
    history: tuple[Transition, ...]
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    operator_reason: str | None = None
    stage: int = 0
    timers: Mapping[str, datetime] = field(default_factory=dict)
    parent: ParentLink | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def step(self, name: str) -> StepState:
        return self.steps.get(name, NOT_STARTED)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.saga_id,
            "def": self.definition_name,
            "ver": self.definition_version,
            "status": self.status.value,
            "data": self.data,
            "steps": {name: st.to_dict() for name, st in self.steps.items()},
            "hist": [t.to_list() for t in self.history],
            "created": to_ms(self.created_at),
            "updated": to_ms(self.updated_at),
        }
        if self.error is not None:
            d["error"] = self.error
        if self.operator_reason is not None:
            d["op_reason"] = self.operator_reason
        if self.stage:
            d["stage"] = self.stage
        if self.timers:
            d["timers"] = {tid: to_ms(due) for tid, due in self.timers.items()}
        if self.parent is not None:
            d["parent"] = self.parent.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SagaState:
        try:
            return cls(
                saga_id=d["id"],
                definition_name=d["def"],
                definition_version=d["ver"],
                status=SagaStatus(d["status"]),
                data=d["data"],
                steps={name: StepState.from_dict(s) for name, s in d["steps"].items()},
                history=tuple(Transition.from_list(row) for row in d["hist"]),
                created_at=from_ms(d["created"]),
                updated_at=from_ms(d["updated"]),
                error=d.get("error"),
                operator_reason=d.get("op_reason"),
                stage=d.get("stage", 0),
                timers={tid: from_ms(ms) for tid, ms in d.get("timers", {}).items()},
                parent=ParentLink(**d["parent"]) if "parent" in d else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise StateError(f"malformed saga state: {exc!r}") from exc


def to_ms(at: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    if at.tzinfo is None:
        raise StateError("saga times must be timezone-aware")
    return (at - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds (exact, no float rounding)."""
    return EPOCH + timedelta(milliseconds=ms)
