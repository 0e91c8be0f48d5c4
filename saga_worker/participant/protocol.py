"""The participant protocol as pure data: verdicts in, outcomes out, replies rendered.

A handler's `prepare` turns a command into a verdict without I/O:

    Apply(args, result, effect)   do it: the Lua body gets `args`; on success the
                                  reply carries `result` and `effect` is recorded,
                                  so the compensation undoes exactly that
    Refuse(code, error)           a business failure: recorded, answered
                                  SagaStepFailed(retryable=false), never applied
    Fault(code, error)            an unexpected error: nothing recorded, answered
                                  SagaStepFailed(retryable=true)

The script (`lua/prologue.lua` + domain body + `lua/epilogue.lua`) turns the verdict
into an outcome (Completed, Failed or Compensated) and stores it under the
command's idempotency key in the same atomic step as the effect; `build_reply`
renders an outcome as the reply for the command that asked. A repeated command
therefore gets the same reply byte for byte, and a new attempt of a step that
already took effect gets the same result with its own command_id and attempt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson
from pydantic import JsonValue

from saga_worker.wire import (
    SCHEMA_VERSION,
    SagaCommand,
    SagaCompensationCompleted,
    SagaReply,
    SagaStepCompleted,
    SagaStepFailed,
    encode,
)
from saga_worker.wire import topics as t

JsonObject = dict[str, JsonValue]
MAX_ID_CHARS = 128  # schemas.fields.Identifier
# The one field of a result that was too large to reply with: why it was left out.
RESULT_OMITTED = "result_omitted"
MAX_FAULT_CHARS = 200


class Kind(Enum):
    ACTION = "action"
    COMPENSATION = "compensation"


@dataclass(frozen=True, slots=True)
class Apply:
    args: JsonObject = field(default_factory=dict)
    result: JsonObject = field(default_factory=dict)
    effect: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refuse:
    code: str
    error: str


@dataclass(frozen=True, slots=True)
class Fault:
    code: str
    error: str

    @classmethod
    def from_exception(cls, code: str, exc: BaseException) -> Fault:
        return cls(code, f"{type(exc).__name__}: {exc}"[:MAX_FAULT_CHARS])

    def as_failed(self) -> Failed:
        return Failed(self.code, self.error, retryable=True)


Verdict = Apply | Refuse | Fault


@dataclass(frozen=True, slots=True)
class Completed:
    result: JsonObject


@dataclass(frozen=True, slots=True)
class Failed:
    code: str
    error: str
    retryable: bool


@dataclass(frozen=True, slots=True)
class Compensated:
    pass


Outcome = Completed | Failed | Compensated


@dataclass(frozen=True, slots=True)
class Settled:
    """An outcome, and whether this call recorded it (False: a repeat or a fault)."""

    outcome: Outcome
    fresh: bool


def idempotency_key(command: SagaCommand, logical_topic: str) -> str:
    """`cmd/<command_id>`, or for the minimal contract `min/<saga>/<step>/<topic>`."""
    if command.command_id is not None:
        return f"cmd/{command.command_id}"
    return f"min/{command.saga_id}/{command.step_name}/{logical_topic}"


def reply_message_id(command: SagaCommand, logical_topic: str) -> str:
    """Derived from the command, so a repeated command's reply is the same message."""
    base = command.command_id or f"{command.saga_id}:{command.step_name}:{logical_topic}"
    candidate = f"{base}:reply"
    if len(candidate) <= MAX_ID_CHARS:
        return candidate
    return "reply:" + hashlib.sha256(base.encode()).hexdigest()


def script_args(kind: Kind, verdict: Verdict, ttl_ms: int) -> list[str | bytes]:
    """ARGV of the composed script (see lua/prologue.lua)."""
    if isinstance(verdict, Apply):
        return [
            kind.value,
            "apply",
            orjson.dumps(verdict.args),
            orjson.dumps(verdict.result),
            orjson.dumps(verdict.effect),
            "",
            "",
            str(ttl_ms),
        ]
    name = "refuse" if isinstance(verdict, Refuse) else "fault"
    return [kind.value, name, b"{}", b"{}", b"{}", verdict.code, verdict.error, str(ttl_ms)]


def parse_settled(raw: Any) -> Settled:
    """The script's `{source, outcome JSON}` as a Settled outcome."""
    source, text = raw
    source = source.decode() if isinstance(source, bytes) else source
    body = orjson.loads(text)
    kind = body["t"]
    outcome: Outcome
    if kind == "completed":
        outcome = Completed(orjson.loads(body.get("r") or "{}"))
    elif kind == "compensated":
        outcome = Compensated()
    elif kind == "failed":
        outcome = Failed(str(body["c"]), str(body["e"]), bool(body["rt"]))
    else:
        raise ValueError(f"unknown outcome {kind!r}")
    return Settled(outcome, fresh=source == "new")


def build_reply(
    command: SagaCommand, logical_topic: str, outcome: Outcome
) -> tuple[str, SagaReply]:
    """The logical reply topic and body answering `command` with `outcome`."""
    common: dict[str, Any] = {
        "saga_id": command.saga_id,
        "step_name": command.step_name,
        "command_id": command.command_id,
        "attempt": command.attempt,
        "message_id": reply_message_id(command, logical_topic),
        "schema_version": SCHEMA_VERSION,
    }
    if isinstance(outcome, Completed):
        return t.STEP_COMPLETED, SagaStepCompleted(**common, result=outcome.result)
    if isinstance(outcome, Failed):
        return t.STEP_FAILED, SagaStepFailed(
            **common, error=outcome.error, retryable=outcome.retryable, error_code=outcome.code
        )
    return t.COMPENSATION_COMPLETED, SagaCompensationCompleted(**common)


def reply_body(reply: SagaReply, max_body_bytes: int) -> bytes:
    """The encoded reply, at most `max_body_bytes`: a completed step whose result would
    make it larger replies with `{RESULT_OMITTED: why}` instead. The effect happened,
    so the step must not be told failed (it would not be compensated); a producer
    refusing the reply would stop the worker on that command for good."""
    body = encode(reply)
    if len(body) <= max_body_bytes or not isinstance(reply, SagaStepCompleted):
        return body
    why = f"{len(body)} bytes, more than the {max_body_bytes} a reply may have"
    return encode(reply.model_copy(update={"result": {RESULT_OMITTED: why}}))
