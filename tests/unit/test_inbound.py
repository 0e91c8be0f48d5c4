"""The orchestrator's intake, pure: one Kafka record in, an event for a saga or a dead
letter with its code out (runtime/inbound.py), without a broker."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from participants.app import app as sample_app
from participants.app import saga_id_for_order
from saga_worker.engine.events import (
    CompensationSucceeded,
    StartSaga,
    StepFailed,
    StepSucceeded,
)
from saga_worker.runtime.dead_letters import DeadLetter
from saga_worker.runtime.inbound import to_inbound
from saga_worker.runtime.processor import TRACE_DATA_KEY, Inbound
from saga_worker.wire import MAX_KEY_BYTES, TRACEPARENT, Topics
from schemas import topics as t
from tests.integration.saga_support import order

PREFIX = "pre."
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SID = saga_id_for_order("o-1")
Headers = tuple[tuple[str, bytes], ...]


def record(
    logical: str, body: dict[str, Any] | bytes, key: bytes | None = b"k", headers: Headers = ()
) -> ConsumerRecord[bytes, bytes]:
    value = body if isinstance(body, bytes) else orjson.dumps(body)
    return ConsumerRecord(
        PREFIX + logical, 0, 1, 0, 0, key, value, None, len(key or b""), len(value), headers
    )


def intake(rec: ConsumerRecord[bytes, bytes], max_bytes: int = 1024 * 1024) -> Any:
    return to_inbound(rec, sample_app, Topics(PREFIX), max_bytes)


def reply(step: str = "reserve_inventory", **fields: Any) -> dict[str, Any]:
    return {"saga_id": SID, "step_name": step, **fields}


def test_a_start_becomes_a_start_of_the_saga_its_business_key_names() -> None:
    item = intake(record(t.ORDER_CREATED, order("o-1"), headers=((TRACEPARENT, TRACE.encode()),)))
    assert isinstance(item, Inbound)
    assert isinstance(item.event, StartSaga)
    assert (item.saga_id, item.business_key, item.message_id) == (
        SID,
        "o-1",
        "start:OrderFulfillment:o-1",
    )
    assert item.event.data["order_id"] == "o-1"
    assert item.event.data[TRACE_DATA_KEY] == TRACE
    assert item.start is not None
    assert item.start.name == "OrderFulfillment"


def test_a_malformed_traceparent_never_enters_the_saga() -> None:
    item = intake(record(t.ORDER_CREATED, order("o-1"), headers=((TRACEPARENT, b"00-nope"),)))
    assert isinstance(item, Inbound)
    assert isinstance(item.event, StartSaga)
    assert TRACE_DATA_KEY not in item.event.data


def test_replies_become_the_events_they_report() -> None:
    done = intake(
        record(t.STEP_COMPLETED, reply(result={"r": 1}, command_id="c1", attempt=2), SID.encode())
    )
    failed = intake(
        record(
            t.STEP_FAILED,
            reply(error="no", error_code="out_of_stock", retryable=False),
            SID.encode(),
        )
    )
    undone = intake(record(t.COMPENSATION_COMPLETED, reply(message_id="m-9"), SID.encode()))
    assert done.event == StepSucceeded("reserve_inventory", {"r": 1}, "c1", 2, None)
    assert failed.event == StepFailed(
        "reserve_inventory", "no", "out_of_stock", False, None, None, None
    )
    assert undone.event == CompensationSucceeded("reserve_inventory", None, None, "m-9")
    assert {done.saga_id, failed.saga_id, undone.saga_id} == {SID}
    assert undone.message_id == "m-9"


@pytest.mark.parametrize(
    ("rec", "code"),
    [
        (record(t.ORDER_CREATED, b"{nope"), "not_json"),
        (record(t.ORDER_CREATED, b"\xff\xfe"), "not_utf8"),
        (record(t.ORDER_CREATED, b"[1]"), "not_object"),
        (record(t.ORDER_CREATED, {"order_id": "o-1"}), "invalid"),
        (record(t.ORDER_CREATED, order("o-1"), key=b"k" * (MAX_KEY_BYTES + 1)), "key_too_large"),
        (record(t.STEP_COMPLETED, reply(), key=None), "missing_key"),
        (record(t.STEP_COMPLETED, reply(), key=b"another-saga"), "key_mismatch"),
        (record(t.RESERVE_ITEMS, reply()), "unexpected_topic"),
        (record("Nobody.Topic", reply()), "unexpected_topic"),
    ],
    ids=[
        "not json",
        "not utf-8",
        "not an object",
        "invalid start",
        "key too large",
        "missing key",
        "key mismatch",
        "a command topic",
        "an unknown topic",
    ],
)
def test_what_breaks_the_contract_is_a_dead_letter_with_its_code(
    rec: ConsumerRecord[bytes, bytes], code: str
) -> None:
    item = intake(rec)
    assert isinstance(item, DeadLetter)
    assert item.code == code


def test_the_size_limit_is_the_setting_and_a_record_at_it_passes() -> None:
    value = orjson.dumps(order("o-1"))
    assert isinstance(intake(record(t.ORDER_CREATED, value), max_bytes=len(value)), Inbound)
    over = intake(record(t.ORDER_CREATED, value), max_bytes=len(value) - 1)
    assert isinstance(over, DeadLetter)
    assert over.code == "too_large"


def test_a_key_at_its_cap_is_read() -> None:
    key = SID.encode() + b"x" * (MAX_KEY_BYTES - len(SID))
    item = intake(record(t.STEP_COMPLETED, reply(), key=key))
    assert isinstance(item, DeadLetter)
    assert item.code == "key_mismatch"  # read and compared, not refused for its size
