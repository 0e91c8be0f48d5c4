"""Turns the orchestrator's Kafka records into engine events, or into dead letters.

The contract: saga messages are keyed by saga_id; a start message may carry any
key (its saga id is derived from its business key). A record whose bytes,
headers or key break the contract is refused here, before it can touch a saga:
a value over the limit (SAGA_MAX_MESSAGE_BYTES) or a key over MAX_KEY_BYTES is
dead-lettered, and only a well-formed W3C `traceparent` enters a saga's data.

Besides starts and replies, the orchestrator reads start requests (a saga started by
type name, as child steps do: `SagaStartRequested`, keyed by the new saga's id) and
the events of wait steps, which are any JSON object: those are matched to sagas by
the correlation index afterwards (correlation.py), so here they only get decoded
and a message id (their own `message_id`, or the digest of their bytes, so a copy
is recognised).

A start carries the digest of its body as the saga sees it (`start_digest`), which
the processor checks against the saga's start marker: a redelivery of the same start,
under another message_id, schema_version or traceparent, has the same digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from saga_worker.app import App, SagaType
from saga_worker.engine.events import (
    CompensationSucceeded,
    ParentLink,
    StartSaga,
    StepFailed,
    StepSucceeded,
)
from saga_worker.errors import UnknownSagaTypeError
from saga_worker.runtime.consumer_loop import Record
from saga_worker.runtime.correlation import Correlated
from saga_worker.runtime.dead_letters import DeadLetter
from saga_worker.runtime.processor import TRACE_DATA_KEY, Inbound
from saga_worker.wire import (
    MAX_BYTES,
    MAX_KEY_BYTES,
    DecodeError,
    SagaCompensationCompleted,
    SagaStartRequested,
    SagaStepCompleted,
    SagaStepFailed,
    WireMessage,
    decode,
    traceparent_of,
)
from saga_worker.wire import topics as t
from saga_worker.wire.topics import Topics


def to_inbound(
    record: Record, app: App, topics: Topics, max_bytes: int = MAX_BYTES
) -> Inbound | DeadLetter | Correlated:
    if record.key is not None and len(record.key) > MAX_KEY_BYTES:
        return DeadLetter(record, "key_too_large", f"key of {len(record.key)} bytes")
    try:
        logical = topics.logical(record.topic)
        if logical in t.REPLY_TOPICS:
            return _reply(record, logical, max_bytes)
        saga = app.starting_from(logical)
        if saga is not None:
            return _start(record, saga, max_bytes)
        if logical == t.START_REQUESTED:
            return _requested(record, app, max_bytes)
        if app.waits_on(logical):
            return _event(record, logical, max_bytes)
        raise ValueError(f"the orchestrator does not consume {logical!r}")
    except DecodeError as exc:
        return DeadLetter(record, exc.code, exc.reason)
    except ValueError as exc:
        return DeadLetter(record, "unexpected_topic", str(exc))


def _start(record: Record, saga: SagaType, max_bytes: int) -> Inbound:
    assert saga.start_model is not None  # starting_from finds only types with a start topic
    message = decode(saga.start_model, record.value, max_bytes=max_bytes)
    data = message.model_dump(mode="json", exclude={"message_id", "schema_version"})
    digest = start_digest(data)
    trace = traceparent_of(record.headers or ())
    if trace:
        data[TRACE_DATA_KEY] = trace
    key = saga.key_of(message)
    saga_id = saga.saga_id(key)
    message_id = message.message_id or f"start:{saga.name}:{key}"
    event = StartSaga(saga_id, data, message_id)
    return Inbound(
        saga_id,
        event,
        message_id,
        record,
        start=saga.definition,
        start_digest=digest,
        business_key=key,
    )


def _requested(record: Record, app: App, max_bytes: int) -> Inbound | DeadLetter:
    request = decode(SagaStartRequested, record.value, max_bytes=max_bytes)
    if (mismatch := _key_mismatch(record, request.saga_id)) is not None:
        return mismatch
    try:
        saga = app.saga_type(request.saga_type)
    except UnknownSagaTypeError as exc:
        return DeadLetter(record, "unknown_saga_type", str(exc))
    parent = ParentLink(**request.parent.model_dump()) if request.parent is not None else None
    message_id = request.message_id or f"start:{request.saga_id}"
    event = StartSaga(request.saga_id, dict(request.data), message_id, parent)
    return Inbound(request.saga_id, event, message_id, record, start=saga.definition)


def _event(record: Record, logical: str, max_bytes: int) -> Correlated:
    body = decode(WireMessage, record.value, max_bytes=max_bytes).model_dump(mode="json")
    message_id = (
        body.get("message_id")
        or "e:" + hashlib.blake2b(record.value or b"", digest_size=16).hexdigest()
    )
    return Correlated(record, logical, body, message_id)


def _key_mismatch(record: Record, saga_id: str) -> DeadLetter | None:
    key = record.key.decode("utf-8", errors="replace") if record.key is not None else None
    if key is None:
        return DeadLetter(record, "missing_key", "saga messages must be keyed by saga_id")
    if key != saga_id:
        return DeadLetter(
            record, "key_mismatch", f"key {key[:64]!r} is not the body's saga_id {saga_id!r}"
        )
    return None


def start_digest(data: Mapping[str, Any]) -> str:
    """What a start message says, in 32 hex characters: blake2b (16 bytes) of its body
    as the saga sees it (no message_id, schema_version or traceparent), keys sorted."""
    said = {k: v for k, v in data.items() if k != TRACE_DATA_KEY}
    body = orjson.dumps(said, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def _reply(record: Record, logical: str, max_bytes: int) -> Inbound | DeadLetter:
    if logical == t.STEP_COMPLETED:
        done = decode(SagaStepCompleted, record.value, max_bytes=max_bytes)
        event: StepSucceeded | StepFailed | CompensationSucceeded = StepSucceeded(
            done.step_name, done.result, done.command_id, done.attempt, done.message_id
        )
        reply: SagaStepCompleted | SagaStepFailed | SagaCompensationCompleted = done
    elif logical == t.STEP_FAILED:
        failed = decode(SagaStepFailed, record.value, max_bytes=max_bytes)
        event = StepFailed(
            failed.step_name,
            failed.error,
            failed.error_code,
            failed.retryable,
            failed.command_id,
            failed.attempt,
            failed.message_id,
        )
        reply = failed
    elif logical == t.COMPENSATION_COMPLETED:
        comp = decode(SagaCompensationCompleted, record.value, max_bytes=max_bytes)
        event = CompensationSucceeded(
            comp.step_name, comp.command_id, comp.attempt, comp.message_id
        )
        reply = comp
    else:  # pragma: no cover - to_inbound routes only the reply topics here
        raise ValueError(f"the orchestrator does not consume {logical!r}")
    if (mismatch := _key_mismatch(record, reply.saga_id)) is not None:
        return mismatch
    return Inbound(reply.saga_id, event, reply.message_id, record)
