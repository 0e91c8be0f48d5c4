"""The participant protocol's pure parts: keys, verdicts, outcomes, replies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from participants.inventory import INVENTORY
from saga_worker import ParticipantKeys
from saga_worker.participant.effects import compose_script
from saga_worker.participant.protocol import (
    Apply,
    Compensated,
    Completed,
    Failed,
    Fault,
    Kind,
    Refuse,
    Settled,
    build_reply,
    idempotency_key,
    parse_settled,
    reply_message_id,
    script_args,
)
from saga_worker.wire import (
    SagaCompensationCompleted,
    SagaStepCompleted,
    SagaStepFailed,
    decode,
    encode,
)
from schemas import ReserveItems
from schemas import topics as t

BODY: dict[str, Any] = {
    "saga_id": "s1",
    "step_name": "reserve_inventory",
    "items": [{"sku": "a", "quantity": 1, "unit_price": 5}],
}


def reserve(**fields: Any) -> ReserveItems:
    return ReserveItems.model_validate({**BODY, **fields})


def test_the_idempotency_key_is_the_command_id_or_saga_step_and_topic() -> None:
    assert idempotency_key(reserve(command_id="c-1"), t.RESERVE_ITEMS) == "cmd/c-1"
    assert idempotency_key(reserve(), t.RESERVE_ITEMS) == (
        "min/s1/reserve_inventory/InventoryService.ReserveItems"
    )
    assert idempotency_key(reserve(), t.RESERVE_ITEMS) != idempotency_key(
        reserve(), t.RELEASE_RESERVATION
    )


def test_reply_ids_are_derived_from_the_command_and_stay_valid_identifiers() -> None:
    assert reply_message_id(reserve(command_id="c-1"), t.RESERVE_ITEMS) == "c-1:reply"
    assert reply_message_id(reserve(), t.RESERVE_ITEMS) == (
        "s1:reserve_inventory:InventoryService.ReserveItems:reply"
    )
    long = reply_message_id(reserve(command_id="c" * 128), t.RESERVE_ITEMS)
    assert len(long) <= 128
    assert long == reply_message_id(reserve(command_id="c" * 128), t.RESERVE_ITEMS)


@pytest.mark.parametrize(
    ("outcome", "model"),
    [
        (Completed({"x": 1}), SagaStepCompleted),
        (Failed("insufficient_stock", "not enough a", False), SagaStepFailed),
        (Compensated(), SagaCompensationCompleted),
    ],
)
def test_replies_echo_the_command_and_round_trip_the_codec(outcome: Any, model: type) -> None:
    command = reserve(command_id="s1:reserve_inventory:a2", attempt=2)
    topic, reply = build_reply(command, t.RESERVE_ITEMS, outcome)
    assert isinstance(reply, model)
    assert topic == model.__name__
    assert (reply.saga_id, reply.step_name, reply.attempt) == ("s1", "reserve_inventory", 2)
    assert reply.command_id == "s1:reserve_inventory:a2"
    assert reply.message_id == "s1:reserve_inventory:a2:reply"
    assert decode(model, encode(reply)) == reply


def test_a_failed_reply_carries_code_and_retryability() -> None:
    _, reply = build_reply(reserve(), t.RESERVE_ITEMS, Failed("boom", "it broke", True))
    assert isinstance(reply, SagaStepFailed)
    assert (reply.error, reply.error_code, reply.retryable) == ("it broke", "boom", True)
    assert reply.command_id is None
    assert reply.attempt is None


def test_script_args_carry_the_verdict() -> None:
    applied = script_args(Kind.ACTION, Apply({"a": 1}, {"r": 2}, {"e": 3}), 1000)
    assert applied[:2] == ["action", "apply"]
    assert [orjson.loads(x) for x in applied[2:5]] == [{"a": 1}, {"r": 2}, {"e": 3}]
    assert applied[7] == "1000"
    refused = script_args(Kind.ACTION, Refuse("nope", "no"), 5)
    assert refused[1] == "refuse"
    assert refused[5:7] == ["nope", "no"]
    assert script_args(Kind.COMPENSATION, Fault("f", "x"), 5)[:2] == ["compensation", "fault"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            [b"new", b'{"t":"completed","r":"{\\"n\\":12345678901234}"}'],
            Settled(Completed({"n": 12345678901234}), True),
        ),
        ([b"stored", b'{"t":"compensated"}'], Settled(Compensated(), False)),
        (
            [b"transient", b'{"t":"failed","c":"x","e":"y","rt":true}'],
            Settled(Failed("x", "y", True), False),
        ),
    ],
)
def test_script_results_parse_into_outcomes(raw: list[bytes], expected: Settled) -> None:
    assert parse_settled(raw) == expected


def test_fault_text_is_short() -> None:
    fault = Fault.from_exception("handler_error", ValueError("x" * 1000))
    assert fault.error.startswith("ValueError: x")
    assert len(fault.error) <= 200
    assert fault.as_failed() == Failed("handler_error", fault.error, True)


def test_the_script_is_prologue_domain_then_epilogue() -> None:
    script = compose_script(INVENTORY)
    prologue = script.index("part 1 of 3")
    domain = script.index("Inventory, part 2 of 3")
    epilogue = script.index("part 3 of 3")
    assert prologue < domain < epilogue


def test_every_key_of_a_participant_shares_its_hash_tag() -> None:
    keys = ParticipantKeys("p:", "inventory")
    names = [
        keys.reply("cmd/x"),
        keys.effect("s1", "step/with/slash"),
        *INVENTORY.domain_keys("p:"),
    ]
    assert all(name.startswith("p:{inventory}:") for name in names)
