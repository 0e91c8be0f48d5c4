"""The soak's saga: accepted at once, then a confirmation that always fails.

    accept    soak.accept   pivot       always succeeds
    confirm   soak.confirm  retriable   always fails, retryably, "retried forever"

Retried forever is bounded by the engine (decide.UNLIMITED_ATTEMPTS): each saga
must end in `needs_operator`, its state no larger than its bounded history. The
backoff is short so that a saga reaches that bound within minutes, not the days
the sample's confirmation policy (at most a minute apart) would take.

    saga-worker orchestrator --app benchmarks.soak_app:app
    saga-worker participant confirmer --app benchmarks.soak_app:app
"""

from __future__ import annotations

from datetime import timedelta

from saga_worker import (
    App,
    CompensationCommand,
    Handler,
    HandlerParticipant,
    Identifier,
    JsonObject,
    Kind,
    RetryPolicy,
    SagaCommand,
    SagaDefinition,
    Step,
    StepKind,
    WireMessage,
)

STARTED, ACCEPT, CONFIRM = "soak.started", "soak.accept", "soak.confirm"
UNDO_ACCEPT = "soak.undo-accept"
CONFIRMER = "confirmer"

# A second or two apart: ~1,000 attempts (the engine's bound) in about half an hour.
FAST_FOREVER = RetryPolicy(
    max_attempts=None,
    initial_backoff=timedelta(milliseconds=200),
    multiplier=2.0,
    max_backoff=timedelta(seconds=2),
    jitter=0.2,
)

SOAK = SagaDefinition(
    name="Soak",
    version=1,
    stages=(
        Step("accept", ACCEPT, UNDO_ACCEPT, kind=StepKind.PIVOT),
        Step("confirm", CONFIRM, kind=StepKind.RETRIABLE, retry=FAST_FOREVER),
    ),
    completed_topic="soak.completed",
    failed_topic="soak.failed",
)


class SoakStarted(WireMessage):
    soak_id: Identifier


class ConfirmUnavailableError(RuntimeError):
    """What the confirmation service always answers in the soak: try again later."""


async def _accept(command: SagaCommand, key: str) -> JsonObject:
    return {"accepted": True}


async def _undo_accept(command: CompensationCommand, key: str) -> None:
    return None


async def _confirm(command: SagaCommand, key: str) -> JsonObject:
    raise ConfirmUnavailableError("the confirmation service is down (soak)")


app = App("soak")
SOAKS = app.saga(SOAK, start_topic=STARTED, start_model=SoakStarted, business_key="soak_id")
app.participant(
    HandlerParticipant(
        name=CONFIRMER,
        routes={
            ACCEPT: Handler(SagaCommand, Kind.ACTION, _accept),
            UNDO_ACCEPT: Handler(CompensationCommand, Kind.COMPENSATION, _undo_accept),
            CONFIRM: Handler(SagaCommand, Kind.ACTION, _confirm),
        },
    )
)
