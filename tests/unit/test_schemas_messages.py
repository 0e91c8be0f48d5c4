"""The models accept the minimal DESIGN.md bodies and enforce the field rules."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from saga_worker.wire import (
    CompensationCommand,
    SagaCommand,
    SagaCompensationCompleted,
    SagaStepCompleted,
    SagaStepFailed,
)
from saga_worker.wire.fields import MAX_ERROR_CHARS
from schemas import (
    MESSAGE_TYPES,
    CancelShipment,
    OrderCreated,
    OrderItem,
    ProcessPayment,
    RefundPayment,
    ReleaseReservation,
    topics,
)
from schemas.fields import MAX_MINOR_UNITS

ORDER: dict[str, Any] = {
    "order_id": "order-1",
    "customer_id": "customer-1",
    "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1250}],
    "payment_method": "card",
    "shipping_address": {"country": "DE"},
}
STEP = {"saga_id": "saga-1", "step_name": "reserve_items"}


def minimal_body(topic: str) -> dict[str, Any]:
    """The smallest body DESIGN.md promises will work on `topic`."""
    if topic == topics.ORDER_CREATED:
        return dict(ORDER)
    if topic == topics.ORDER_APPROVALS:
        return {"order_id": ORDER["order_id"], "approved": True}
    if topic in topics.COMMAND_TOPICS:
        return {**STEP, **ORDER}
    if topic == topics.STEP_COMPLETED:
        return {**STEP, "result": {}}
    if topic == topics.STEP_FAILED:
        return {**STEP, "error": "out of stock"}
    if topic == topics.COMPENSATION_COMPLETED:
        return dict(STEP)
    if topic == topics.FULFILLMENT_FAILED:
        return {"saga_id": "saga-1", **ORDER, "error": "payment declined"}
    return {"saga_id": "saga-1", **ORDER}


def test_every_topic_but_dead_letters_has_a_model() -> None:
    assert set(MESSAGE_TYPES) == set(topics.ALL_TOPICS) - {topics.DEAD_LETTER}


@pytest.mark.parametrize("topic", sorted(MESSAGE_TYPES))
def test_minimal_body_validates(topic: str) -> None:
    message = MESSAGE_TYPES[topic].model_validate(minimal_body(topic))
    assert message.message_id is None


@pytest.mark.parametrize("model", [ReleaseReservation, RefundPayment, CancelShipment])
def test_undo_commands_need_only_saga_and_step(model: type[CompensationCommand]) -> None:
    bare = model.model_validate(STEP)
    assert bare.original_result is None
    assert model.model_validate({**STEP, "original_result": {"id": 7}}).original_result == {"id": 7}


def test_replies_without_our_optional_fields() -> None:
    assert SagaStepCompleted.model_validate(STEP).result == {}
    assert SagaCompensationCompleted.model_validate(STEP).attempt is None
    failed = SagaStepFailed.model_validate({**STEP, "error": ""})
    assert (failed.retryable, failed.error_code) == (None, None)


def test_unknown_fields_are_kept_at_every_level() -> None:
    body = {
        **ORDER,
        "channel": "web",
        "note": None,
        "items": [{"sku": "A", "quantity": 1, "unit_price": 5, "gift": True}],
        "shipping_address": {"country": "FR", "door_code": "12B"},
    }
    order = OrderCreated.model_validate(body)
    assert order.model_extra == {"channel": "web", "note": None}
    assert order.items[0].model_extra == {"gift": True}
    assert order.model_dump(mode="json") == body


def test_unknown_fields_must_be_json() -> None:
    with pytest.raises(ValidationError):
        SagaCompensationCompleted(saga_id="s", step_name="x", extra=object())


def test_absent_optional_fields_are_left_out() -> None:
    failed = SagaStepFailed(saga_id="s", step_name="pay", error="declined", retryable=None)
    assert failed.model_dump(mode="json") == {
        "saga_id": "s",
        "step_name": "pay",
        "error": "declined",
    }


def test_messages_are_immutable() -> None:
    reply = SagaCompensationCompleted.model_validate(STEP)
    with pytest.raises(ValidationError):
        reply.saga_id = "other"  # type: ignore[misc]


def item(**overrides: Any) -> dict[str, Any]:
    return {"sku": "SKU-1", "quantity": 1, "unit_price": 100, **overrides}


@pytest.mark.parametrize("price", [0, 1, MAX_MINOR_UNITS])
def test_money_accepts_whole_minor_units(price: int) -> None:
    assert OrderItem.model_validate(item(unit_price=price)).unit_price == price


@pytest.mark.parametrize("price", [10.0, 10.5, -1, MAX_MINOR_UNITS + 1, True, "100", None])
def test_money_rejects_floats_negatives_overflow_and_non_ints(price: object) -> None:
    with pytest.raises(ValidationError):
        OrderItem.model_validate(item(unit_price=price))


@pytest.mark.parametrize("quantity", [0, -1, 10_001, 1.0, False])
def test_quantity_must_be_a_positive_bounded_int(quantity: object) -> None:
    with pytest.raises(ValidationError):
        OrderItem.model_validate(item(quantity=quantity))


@pytest.mark.parametrize("count", [0, 101])
def test_an_order_has_one_to_a_hundred_items(count: int) -> None:
    with pytest.raises(ValidationError, match="items"):
        OrderCreated.model_validate({**ORDER, "items": [item()] * count})


@pytest.mark.parametrize("good", ["a", "x" * 128, "über-1", "ORD/2024#7"])
def test_identifiers_accept_printable_text(good: str) -> None:
    assert OrderItem.model_validate(item(sku=good)).sku == good


@pytest.mark.parametrize("bad", ["", "x" * 129, "a b", "a\nb", "a\x00", "a\x85", 42])
def test_identifiers_reject_empty_long_blank_and_control(bad: object) -> None:
    with pytest.raises(ValidationError):
        OrderItem.model_validate(item(sku=bad))


@pytest.mark.parametrize("bad", ["{saga}", "a}b", "saga 1", "x" * 129])
def test_saga_ids_stay_safe_inside_redis_hash_tags(bad: str) -> None:
    with pytest.raises(ValidationError):
        SagaCommand.model_validate({**STEP, "saga_id": bad})


@pytest.mark.parametrize("country", ["de", "DEU", "D"])
def test_country_is_iso_alpha_2(country: str) -> None:
    with pytest.raises(ValidationError):
        OrderCreated.model_validate({**ORDER, "shipping_address": {"country": country}})


def test_payment_charges_the_amount_or_the_order_total() -> None:
    base = {**STEP, "customer_id": "c-1"}
    by_items = ProcessPayment.model_validate({**base, "items": [item(quantity=3)]})
    assert by_items.amount_due == 300
    assert ProcessPayment.model_validate({**base, "amount": 42}).amount_due == 42
    with pytest.raises(ValidationError, match="amount"):
        ProcessPayment.model_validate(base)


def test_long_error_text_is_cut_short_not_rejected() -> None:
    failed = SagaStepFailed.model_validate({**STEP, "error": "x" * 10_000})
    assert len(failed.error) == MAX_ERROR_CHARS


@pytest.mark.parametrize("retryable", ["true", 1, "yes"])
def test_retryable_is_a_real_boolean(retryable: object) -> None:
    with pytest.raises(ValidationError):
        SagaStepFailed.model_validate({**STEP, "error": "e", "retryable": retryable})
