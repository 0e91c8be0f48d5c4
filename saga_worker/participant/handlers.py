"""Participants whose effect lives outside Redis: a payment gateway, an HTTP API, an e-mail.

    async def charge(command: ChargeCard, key: str) -> JsonObject:
        receipt = await gateway.charge(command.amount, idempotency_key=key)
        return {"receipt": receipt.id}

    PAYMENTS = HandlerParticipant(
        name="payments",
        routes={"Payments.Charge": Handler(ChargeCard, Kind.ACTION, charge),
                "Payments.Refund": Handler(RefundCard, Kind.COMPENSATION, refund)},
    )

A handler gets the decoded command and an idempotency key that is the same for
every delivery and every attempt of its step (`<saga_id>/<step>`), to pass on
to the outside system. It returns the step's result (a JSON object, or None for
`{}`), raises `StepRefused` for a business failure (answered SagaStepFailed,
not retried), or raises anything else for a transient error (answered
SagaStepFailed retryable, and retried by the saga's policy).

The runtime stores each reply in Redis under the command's id, so a repeated
command is answered from the store and the handler runs again only when no
reply was stored (a crash between the outside call and the store, or a new
attempt after an error). That is at-least-once toward the outside system: the
idempotency key is what makes it once. A new attempt of a step that succeeded
gets the stored result without a call; a compensation calls its handler once per
step, and one that arrives before its action leaves a tombstone: the late action
is refused (`already_compensated`, not retryable) without a call. The store is
participant.handler_store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from saga_worker.errors import ParticipantError
from saga_worker.participant.protocol import JsonObject, Kind
from saga_worker.wire.messages import SagaCommand

C = TypeVar("C", bound=SagaCommand)


class StepRefused(ParticipantError):
    """A business failure raised by a handler: answered, recorded, never retried."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


@dataclass(frozen=True)
class Handler(Generic[C]):
    model: type[C]
    kind: Kind
    handle: Callable[[C, str], Awaitable[JsonObject | None]]


@dataclass(frozen=True)
class HandlerParticipant:
    name: str
    routes: Mapping[str, Handler[Any]]  # by logical topic

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self.routes)


def step_key(command: SagaCommand) -> str:
    """The idempotency key a handler passes on: one per saga step, whatever the attempt."""
    return f"{command.saga_id}/{command.step_name}"
