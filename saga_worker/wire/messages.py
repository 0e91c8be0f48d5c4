"""The saga envelope on the wire: commands, replies and outcomes of any saga.

These are the bodies the library itself reads and writes. An application's own
messages (its start message, and commands that need particular fields) are
subclasses: a command model re-declares the saga data its participant needs as
required fields. Unknown fields are kept and written back unchanged, so a
newer producer's data survives an older worker; an optional field that is None
is left out of the encoded body.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    StrictBool,
    model_serializer,
)

from saga_worker.wire.fields import Attempt, ErrorText, Identifier, SagaId, SchemaVersion

SCHEMA_VERSION = 1

JsonObject = dict[str, JsonValue]


class OpenModel(BaseModel):
    """An immutable model that keeps unknown fields, validated as plain JSON values."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, JsonValue] = Field(init=False)

    @model_serializer(mode="wrap")
    def _omit_absent_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # None on a declared field means "absent"; an unknown field keeps its null.
        body: dict[str, Any] = handler(self)
        declared = type(self).model_fields
        return {k: v for k, v in body.items() if v is not None or k not in declared}


class WireMessage(OpenModel):
    """A message body on a saga topic."""

    message_id: Identifier | None = None  # unique per message: the idempotency key
    schema_version: SchemaVersion | None = None


class SagaCommand(WireMessage):
    """A command from the orchestrator to a participant. Keyed by `saga_id`.

    It carries the saga's data (the start message's fields) and the results of
    the steps done so far, by step name.
    """

    saga_id: SagaId
    step_name: Identifier
    command_id: Identifier | None = None  # echoed in the reply; participants dedupe on it
    attempt: Attempt | None = None
    results: dict[Identifier, JsonObject] = Field(default_factory=dict)


class CompensationCommand(SagaCommand):
    """Undoes a step; `original_result` is the step's result, if it ever replied."""

    original_result: JsonObject | None = None


class SagaReply(WireMessage):
    """A participant's answer to a command. Keyed by `saga_id`.

    A reply without `attempt` answers the current attempt of its step.
    """

    saga_id: SagaId
    step_name: Identifier
    command_id: Identifier | None = None
    attempt: Attempt | None = None


class SagaStepCompleted(SagaReply):
    result: JsonObject = Field(default_factory=dict)


class SagaStepFailed(SagaReply):
    error: ErrorText
    retryable: StrictBool | None = None  # None: the step's retry policy decides
    error_code: Identifier | None = None


class SagaCompensationCompleted(SagaReply):
    pass


class ParentRef(BaseModel):
    """The step of a parent saga that a child saga answers when it ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    saga_id: SagaId
    step: Identifier
    command_id: Identifier
    attempt: Attempt
    compensation: StrictBool = False


class SagaStartRequested(WireMessage):
    """Start a saga of type `saga_type` with id `saga_id` and this data. Keyed by
    `saga_id`. A child step's start request names its `parent`; the child's outcome
    is sent to the parent as the reply to that step's command."""

    saga_id: SagaId
    saga_type: Identifier
    data: JsonObject = Field(default_factory=dict)
    parent: ParentRef | None = None


class SagaOutcome(WireMessage):
    """How a saga ended, for the outside world: its data, and `error` if it failed."""

    saga_id: SagaId
    results: dict[Identifier, JsonObject] = Field(default_factory=dict)
    error: ErrorText | None = None
