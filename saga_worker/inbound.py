"""Turns the orchestrator's Kafka records into engine events, or into dead letters.

The contract: saga messages are keyed by saga_id; OrderCreated may carry any
key. A record whose bytes, headers or key break the contract is refused here,
before it can touch a saga.
"""

from __future__ import annotations

import uuid

from saga_worker.consumer_loop import Record
from saga_worker.dead_letters import DeadLetter
from saga_worker.events import CompensationSucceeded, StartSaga, StepFailed, StepSucceeded
from saga_worker.processor import TRACE_DATA_KEY, Inbound
from schemas import (
    MAX_BYTES,
    TRACEPARENT,
    DecodeError,
    OrderCreated,
    SagaCompensationCompleted,
    SagaStepCompleted,
    SagaStepFailed,
    decode,
    header_value,
)
from schemas import topics as t
from schemas.topics import Topics

# Fixed, so every instance derives the same saga id from the same order id.
ORDER_SAGA_NAMESPACE = uuid.UUID("6f1c3f52-1d0e-4b8e-9a57-4b1f7f0c2a10")

INBOUND_TOPICS = (t.ORDER_CREATED, t.STEP_COMPLETED, t.STEP_FAILED, t.COMPENSATION_COMPLETED)


def saga_id_for_order(order_id: str) -> str:
    """One order, one saga: the id is derived, so a repeated order finds its saga."""
    return str(uuid.uuid5(ORDER_SAGA_NAMESPACE, order_id))


def to_inbound(record: Record, topics: Topics, max_bytes: int = MAX_BYTES) -> Inbound | DeadLetter:
    try:
        if record.value is not None and len(record.value) > max_bytes:
            raise DecodeError("too_large", f"{len(record.value)} bytes, more than {max_bytes}")
        logical = topics.logical(record.topic)
        if logical == t.ORDER_CREATED:
            return _order(record)
        return _reply(record, logical)
    except DecodeError as exc:
        return DeadLetter(record, exc.code, exc.reason)
    except ValueError as exc:
        return DeadLetter(record, "unexpected_topic", str(exc))


def _order(record: Record) -> Inbound:
    order = decode(OrderCreated, record.value)
    data = order.model_dump(mode="json", exclude={"message_id", "schema_version"})
    trace = header_value(record.headers or (), TRACEPARENT)
    if trace:
        data[TRACE_DATA_KEY] = trace
    saga_id = saga_id_for_order(order.order_id)
    message_id = order.message_id or f"order:{order.order_id}"
    return Inbound(saga_id, StartSaga(saga_id, data, message_id), message_id, record)


def _reply(record: Record, logical: str) -> Inbound | DeadLetter:
    if logical == t.STEP_COMPLETED:
        done = decode(SagaStepCompleted, record.value)
        event: StepSucceeded | StepFailed | CompensationSucceeded = StepSucceeded(
            done.step_name, done.result, done.command_id, done.attempt, done.message_id
        )
        reply: SagaStepCompleted | SagaStepFailed | SagaCompensationCompleted = done
    elif logical == t.STEP_FAILED:
        failed = decode(SagaStepFailed, record.value)
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
        comp = decode(SagaCompensationCompleted, record.value)
        event = CompensationSucceeded(
            comp.step_name, comp.command_id, comp.attempt, comp.message_id
        )
        reply = comp
    else:
        raise ValueError(f"the orchestrator does not consume {logical!r}")
    key = record.key.decode("utf-8", errors="replace") if record.key is not None else None
    if key is None:
        return DeadLetter(record, "missing_key", "saga messages must be keyed by saga_id")
    if key != reply.saga_id:
        return DeadLetter(
            record, "key_mismatch", f"key {key[:64]!r} is not the body's saga_id {reply.saga_id!r}"
        )
    return Inbound(reply.saga_id, event, reply.message_id, record)
