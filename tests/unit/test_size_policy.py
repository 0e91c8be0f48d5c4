"""The size policy without a broker: records are measured as Kafka counts them, dead
letters always fit, headers are capped, and no decision saves a message too large."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from participants.app import app as sample_app
from participants.order_fulfillment import ORDER_FULFILLMENT
from saga_worker.engine.decide import command_id
from saga_worker.engine.definition import DefinitionRegistry
from saga_worker.engine.events import StartSaga, StepSucceeded
from saga_worker.engine.state import SagaStatus, StepStatus
from saga_worker.errors import ConfigurationError
from saga_worker.runtime.dead_letters import DeadLetter
from saga_worker.runtime.inbound import to_inbound
from saga_worker.runtime.processor import Inbound, SagaProcessor
from saga_worker.runtime.store import SagaStore, SagaWrite
from saga_worker.settings import load_settings
from saga_worker.wire import (
    DLQ_DROPPED_HEADERS,
    DLQ_ORIGINAL_SIZE,
    DLQ_REASON,
    DLQ_SHA256,
    HEADER_ROOM,
    MAX_BYTES,
    MAX_KEY_BYTES,
    TRACEPARENT,
    Topics,
    fit_dead_letter,
    header_value,
    record_size,
    traceparent_of,
    valid_traceparent,
)
from saga_worker.wire.dead_letter import ORIGINAL_HEADERS_BYTES
from schemas import topics

from .memory_store import MemoryStore
from .support import ORDER_DATA

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
T0 = datetime(2025, 1, 1, tzinfo=UTC)

# -- measuring records ---------------------------------------------------------------

sizes = st.integers(min_value=0, max_value=70_000)
header_lists = st.lists(
    st.tuples(st.text(max_size=20), st.binary(max_size=2_000)), max_size=12
).map(lambda hs: [(name, value) for name, value in hs])


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=300), value_size=sizes, headers=header_lists)
def test_record_size_is_never_below_what_the_producer_counts(
    key: bytes, value_size: int, headers: list[tuple[str, bytes]]
) -> None:
    value = b"v" * value_size
    counted = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
    assert counted <= record_size(key, value, headers) <= counted + 64 + 10 * len(headers)


# -- dead letters that fit -----------------------------------------------------------


def letter_headers(reason: str = "not_json: nope") -> list[tuple[str, bytes]]:
    return [
        (TRACEPARENT, TRACE.encode()),
        ("dlq.source_topic", b"t.x"),
        (DLQ_REASON, reason.encode()),
    ]


@settings(max_examples=200, deadline=None)
@given(
    key=st.none() | st.binary(max_size=3 * MAX_KEY_BYTES),
    value_size=st.integers(min_value=0, max_value=300_000),
    originals=header_lists,
    limit=st.integers(min_value=2 * HEADER_ROOM, max_value=200_000),
)
def test_a_dead_letter_always_fits_and_says_what_it_lost(
    key: bytes | None, value_size: int, originals: list[tuple[str, bytes]], limit: int
) -> None:
    value = bytes(range(256)) * (value_size // 256)
    headers = originals + letter_headers("x" * 1_000)
    fitted_key, fitted_value, fitted = fit_dead_letter(key, value, headers, limit)
    assert record_size(fitted_key, fitted_value, fitted) <= limit
    assert fitted_value is not None
    assert value.startswith(fitted_value)
    assert key is None or (fitted_key is not None and key.startswith(fitted_key))
    assert header_value(fitted, DLQ_REASON) == "x" * 1_000  # our metadata stays whole
    if fitted_value != value:
        assert header_value(fitted, DLQ_ORIGINAL_SIZE) == str(len(value))
        assert header_value(fitted, DLQ_SHA256) == hashlib.sha256(value).hexdigest()
    else:
        assert header_value(fitted, DLQ_ORIGINAL_SIZE) is None


def test_a_dead_letter_that_fits_is_sent_as_it_came() -> None:
    headers = letter_headers()
    assert fit_dead_letter(b"k", b"{nope", headers, MAX_BYTES) == (b"k", b"{nope", headers)


def test_garbage_just_under_the_brokers_limit_is_cut_to_the_workers_limit() -> None:
    garbage = b"\xff" * 1_048_400
    key, value, headers = fit_dead_letter(b"k", garbage, letter_headers(), MAX_BYTES)
    assert value is not None
    assert record_size(key, value, headers) <= MAX_BYTES
    assert header_value(headers, DLQ_ORIGINAL_SIZE) == "1048400"


def test_oversized_and_surplus_original_headers_are_dropped_and_counted() -> None:
    huge = [("x-huge", b"h" * 32_000)]
    many = [(f"x-{i}", b"v" * 900) for i in range(20)]
    ours = [("dlq.source_topic", b"t.x"), (DLQ_REASON, b"not_json: nope")]
    _, _, headers = fit_dead_letter(b"k", b"{}", huge + many + ours, MAX_BYTES)
    kept = [name for name, _ in headers if name.startswith("x-")]
    assert kept == [f"x-{i}" for i in range(len(kept))]  # in order, until the budget is spent
    assert 0 < len(kept) < len(many)
    assert sum(len(n) + len(v) for n, v in headers if n.startswith("x-")) <= ORIGINAL_HEADERS_BYTES
    assert header_value(headers, DLQ_DROPPED_HEADERS) == str(1 + len(many) - len(kept))
    assert headers[-3:-1] == ours


# -- headers at intake ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TRACE, TRACE),
        (TRACE + "-more", None),  # version 00 is exactly 55 characters
        ("01" + TRACE[2:] + "-future-fields", "01" + TRACE[2:]),  # a later version: its head
        ("01" + TRACE[2:] + "x", None),
        ("ff" + TRACE[2:], None),
        (TRACE.upper(), None),
        ("00-" + "0" * 32 + TRACE[35:], None),  # all-zero trace id
        (TRACE[:36] + "0" * 16 + "-01", None),  # all-zero parent id
        ("00-" + "a" * 10_000, None),
        ("00-abc-def-01", None),
        ("", None),
        (None, None),
    ],
)
def test_only_a_w3c_traceparent_is_kept(value: str | None, expected: str | None) -> None:
    assert valid_traceparent(value) == expected


def test_traceparent_of_refuses_a_huge_or_binary_header() -> None:
    assert traceparent_of([(TRACEPARENT, TRACE.encode())]) == TRACE
    assert traceparent_of([(TRACEPARENT, b"\xff" * 55)]) is None
    assert traceparent_of([(TRACEPARENT, TRACE.encode() + b" " * 2_000)]) is None
    assert traceparent_of([("other", TRACE.encode())]) is None


def record(topic: str, value: bytes, key: bytes = b"k", **headers: bytes) -> Any:
    return ConsumerRecord(
        topic, 0, 7, 0, 0, key, value, None, len(key), len(value), list(headers.items())
    )


def order_body(**extra: Any) -> bytes:
    items = [{"sku": "sku-1", "quantity": 1, "unit_price": 100}]
    return orjson.dumps({**ORDER_DATA, "items": items, **extra})


def test_a_start_message_keeps_a_valid_traceparent_and_drops_a_huge_one() -> None:
    traced = record(topics.ORDER_CREATED, order_body(), traceparent=TRACE.encode())
    hostile = record(topics.ORDER_CREATED, order_body(), traceparent=b"00-" + b"a" * 10_000)
    good = to_inbound(traced, sample_app, Topics(""))
    huge = to_inbound(hostile, sample_app, Topics(""))
    assert isinstance(good, Inbound)
    assert isinstance(huge, Inbound)
    assert isinstance(good.event, StartSaga)
    assert isinstance(huge.event, StartSaga)
    assert good.event.data["traceparent"] == TRACE
    assert "traceparent" not in huge.event.data


def test_a_key_longer_than_the_cap_is_refused() -> None:
    body = orjson.dumps({"saga_id": "s", "step_name": "reserve_inventory", "result": {}})
    item = to_inbound(
        record(topics.STEP_COMPLETED, body, key=b"k" * (MAX_KEY_BYTES + 1)), sample_app, Topics("")
    )
    assert isinstance(item, DeadLetter)
    assert item.code == "key_too_large"


def test_decode_follows_the_setting_above_the_codecs_default() -> None:
    message = record(topics.ORDER_CREATED, order_body(note="x" * (MAX_BYTES + 10)))
    assert isinstance(to_inbound(message, sample_app, Topics(""), 2 * MAX_BYTES), Inbound)
    refused = to_inbound(message, sample_app, Topics(""), MAX_BYTES)
    assert isinstance(refused, DeadLetter)
    assert refused.code == "too_large"


# -- settings ------------------------------------------------------------------------


def test_the_default_limit_is_what_the_producer_and_broker_accept_by_default() -> None:
    assert load_settings().saga_max_message_bytes == MAX_BYTES == 1_048_576


def test_a_limit_without_room_for_headers_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigurationError, match="SAGA_MAX_MESSAGE_BYTES") as caught:
        load_settings(saga_max_message_bytes=HEADER_ROOM)
    assert "\n" not in str(caught.value)


# -- no decision saves a message too large ------------------------------------------

LIMIT = 64 * 1024
SID = "saga-1"


def processor(store: MemoryStore) -> SagaProcessor:
    registry = DefinitionRegistry([ORDER_FULFILLMENT])
    return SagaProcessor(cast(SagaStore, store), registry, lambda: T0, LIMIT)


def start(data: Mapping[str, Any]) -> Inbound:
    return Inbound(SID, StartSaga(SID, data, "m-start"), "m-start", start=ORDER_FULFILLMENT)


def succeeded(step: str, result: Mapping[str, Any]) -> Inbound:
    cid = command_id(SID, step, 1)
    return Inbound(SID, StepSucceeded(step, result, cid, 1, f"r-{cid}"), f"r-{cid}")


def assert_sendable(writes: Sequence[SagaWrite]) -> None:
    for w in writes:
        for entry in w.outbox:
            assert len(orjson.dumps(entry.payload)) <= LIMIT - HEADER_ROOM, entry.topic


async def test_messages_within_the_limit_go_out_as_decided() -> None:
    store = MemoryStore()
    applied = await processor(store).apply([start(ORDER_DATA)])
    [write] = applied.writes
    assert write.state.status is SagaStatus.PENDING
    assert [e.topic for e in write.outbox] == [topics.RESERVE_ITEMS]


async def test_an_order_too_large_to_forward_fails_its_saga_before_the_save() -> None:
    store = MemoryStore()
    applied = await processor(store).apply([start({**ORDER_DATA, "note": "x" * LIMIT})])
    [write] = applied.writes
    assert write.state.status is SagaStatus.FAILED
    assert write.state.error is not None
    assert "too_large" in write.state.error
    assert str(LIMIT - HEADER_ROOM) in write.state.error
    assert write.state.steps["reserve_inventory"].status is StepStatus.FAILED
    assert not write.state.steps["reserve_inventory"].uncertain  # never sent: nothing to undo
    assert not write.state.timers
    # The failed outcome goes out without the data (the notice, a command, not at all).
    [outcome] = write.outbox
    assert outcome.topic == topics.FULFILLMENT_FAILED
    assert outcome.payload["saga_id"] == SID
    assert "too_large" in outcome.payload["error"]
    assert "bytes" in outcome.payload["data_omitted"]
    assert_sendable(store.saved)


async def test_results_too_large_to_carry_on_stop_before_the_next_command() -> None:
    store = MemoryStore()
    run = processor(store)
    blob = {"blob": "r" * (LIMIT // 2)}
    await run.apply([start(ORDER_DATA)])
    await run.apply([succeeded("reserve_inventory", blob)])
    applied = await run.apply([succeeded("process_payment", blob)])
    [write] = applied.writes
    # The shipment would carry both results; the payment's refund would too, and more:
    # nothing can undo the payment without an operator.
    assert write.state.status is SagaStatus.NEEDS_OPERATOR
    assert write.state.operator_reason is not None
    assert "too_large" in write.state.operator_reason
    assert write.state.steps["create_shipment"].status is StepStatus.FAILED
    assert all(e.topic != topics.CREATE_SHIPMENT for w in store.saved for e in w.outbox)
    assert_sendable(store.saved)
