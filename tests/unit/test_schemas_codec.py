"""The codec round-trips every body and turns every bad value into one DecodeError."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from saga_worker.wire import (
    CORRELATION_ID,
    MESSAGE_TYPE,
    TRACEPARENT,
    DecodeError,
    DecodeErrorCode,
    SagaStepCompleted,
    SagaStepFailed,
    WireMessage,
    decode,
    encode,
    header_value,
    make_headers,
)
from schemas import MESSAGE_TYPES, OrderCreated, ReserveItems, topics
from tests.unit.test_schemas_messages import ORDER, STEP, minimal_body


def nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def decode_for_topic(topic: str, data: bytes) -> WireMessage:
    return decode(MESSAGE_TYPES[topic], data)


@pytest.mark.parametrize("topic", sorted(MESSAGE_TYPES))
def test_decode_for_topic_picks_the_topic_model(topic: str) -> None:
    message = decode_for_topic(topic, orjson.dumps(minimal_body(topic)))
    assert type(message) is MESSAGE_TYPES[topic]


def test_the_dead_letter_topic_has_no_body_model() -> None:
    with pytest.raises(KeyError):
        decode_for_topic(topics.DEAD_LETTER, b"{}")


def test_unknown_fields_survive_decode_and_encode() -> None:
    body = {**STEP, "result": {"reservation": "r-1"}, "producer": {"v": [1, None]}, "gone": None}
    message = decode(SagaStepCompleted, orjson.dumps(body))
    assert orjson.loads(encode(message)) == body


def test_encode_leaves_out_absent_optional_fields() -> None:
    assert orjson.loads(encode(SagaStepFailed(saga_id="s", step_name="x", error="e"))) == {
        "saga_id": "s",
        "step_name": "x",
        "error": "e",
    }


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"saga_id": "\xff"}', "not_utf8"),
        (b"{", "not_json"),
        (b"", "not_json"),
        (None, "not_json"),
        (b'{"a": NaN}', "not_json"),
        (b"[]", "not_object"),
        (b'"saga"', "not_object"),
        (b"null", "not_object"),
        (orjson.dumps({**STEP, "result": nested(32)}), "too_deep"),
        (b"[" * 2000 + b"]" * 2000, "too_deep"),
        (b'{"saga_id": "s"}', "invalid"),
        (orjson.dumps({**STEP, "result": {"pad": "x" * 1024 * 1024}}), "too_large"),
    ],
)
def test_every_bad_value_gets_its_code(data: bytes | None, code: DecodeErrorCode) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(SagaStepCompleted, data)
    assert caught.value.code == code
    assert caught.value.reason
    assert "\n" not in caught.value.reason


def test_depth_at_the_limit_is_fine() -> None:
    body = {**STEP, "result": nested(31)}
    assert decode(SagaStepCompleted, orjson.dumps(body)).result == body["result"]


def test_limits_are_configurable() -> None:
    data = orjson.dumps(STEP)
    with pytest.raises(DecodeError, match="too_large"):
        decode(SagaStepCompleted, data, max_bytes=len(data) - 1)
    with pytest.raises(DecodeError, match="too_deep"):
        decode(SagaStepCompleted, orjson.dumps({**STEP, "result": {"a": {}}}), max_depth=2)


def test_money_as_a_json_float_is_invalid() -> None:
    body = {**ORDER, "items": [{"sku": "A", "quantity": 1, "unit_price": 10.0}]}
    with pytest.raises(DecodeError, match=r"items\.0\.unit_price") as caught:
        decode(OrderCreated, orjson.dumps(body))
    assert caught.value.code == "invalid"


def test_a_validation_reason_names_the_first_errors_only() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(ReserveItems, b'{"order_id": 1, "customer_id": 2}')
    reason = caught.value.reason
    assert reason.startswith("ReserveItems: ")
    assert "more)" in reason
    assert reason.count(";") == 3


def test_make_headers_and_read_them_back() -> None:
    headers = make_headers("SagaStepCompleted", "saga-1", traceparent="00-abc-def-01")
    assert header_value(headers, MESSAGE_TYPE) == "SagaStepCompleted"
    assert header_value(headers, CORRELATION_ID) == "saga-1"
    assert header_value(headers, TRACEPARENT) == "00-abc-def-01"
    assert TRACEPARENT not in dict(make_headers("t", "c"))


def test_header_value_takes_the_last_and_tolerates_junk() -> None:
    headers = [("h", b"first"), ("h", b"last"), ("bad", b"\xff"), ("null", None)]
    assert header_value(headers, "h") == "last"
    assert header_value(headers, "bad") is None
    assert header_value(headers, "null") is None
    assert header_value(headers, "missing") is None


identifiers = st.text(
    st.characters(exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=24
)
saga_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Prefixed so they never collide with a declared field.
unknown_fields = st.dictionaries(st.text(max_size=8).map("x-".__add__), json_values, max_size=3)
items = st.lists(
    st.fixed_dictionaries(
        {
            "sku": identifiers,
            "quantity": st.integers(1, 10_000),
            "unit_price": st.integers(0, 10**12),
        }
    ),
    min_size=1,
    max_size=5,
)
orders = st.fixed_dictionaries(
    {
        "order_id": identifiers,
        "customer_id": identifiers,
        "items": items,
        "payment_method": identifiers,
        "shipping_address": st.fixed_dictionaries(
            {"country": st.from_regex(r"[A-Z]{2}", fullmatch=True)},
            optional={"city": identifiers, "postal_code": identifiers},
        ),
    },
    optional={"message_id": identifiers, "currency": st.sampled_from(["EUR", "USD", "JPY"])},
)
commands = st.fixed_dictionaries(
    {"saga_id": saga_ids, "step_name": identifiers},
    optional={
        "command_id": identifiers,
        "attempt": st.integers(1, 10_000),
        "results": st.dictionaries(identifiers, st.dictionaries(st.text(max_size=8), json_values)),
    },
)


@given(order=orders, command=commands, extra=unknown_fields)
def test_bodies_round_trip_exactly(
    order: dict[str, Any], command: dict[str, Any], extra: dict[str, Any]
) -> None:
    # `results` defaults to {} and is always written, so it is expected back.
    cases: list[tuple[type[WireMessage], dict[str, Any]]] = [
        (OrderCreated, {**order, **extra}),
        (ReserveItems, {"results": {}, **order, **command, **extra}),
    ]
    for model, body in cases:
        message = decode(model, orjson.dumps(body), max_depth=1000)
        assert orjson.loads(encode(message)) == body
        assert decode(model, encode(message), max_depth=1000) == message
