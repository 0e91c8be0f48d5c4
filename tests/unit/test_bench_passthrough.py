"""The floor's pass-through carries a saga through its four steps with no state."""

from __future__ import annotations

from typing import Any

import orjson

from benchmarks.passthrough import STEPS, inputs, transform
from participants.app import saga_id_for_order
from saga_worker.wire import decode
from schemas import MESSAGE_TYPES
from schemas import topics as t

ORDER: dict[str, Any] = {
    "order_id": "ord-1",
    "customer_id": "cust-001",
    "items": [{"sku": "sku-ceramic-mug", "quantity": 1, "unit_price": 1490}],
    "payment_method": "card",
    "shipping_address": {"line1": "1 Demo Street", "city": "Demo", "country": "FR"},
}


def test_an_order_walks_every_step_to_the_completed_outcome() -> None:
    saga_id = saga_id_for_order("ord-1")
    topic, key, body = transform("orchestrator", t.ORDER_CREATED, ORDER)
    seen = []
    for _, command_topic, role in STEPS:
        assert (topic, key) == (command_topic, saga_id)
        decode(MESSAGE_TYPES[topic], _bytes(body))  # what the real participant would accept
        assert command_topic in inputs(role)
        seen.append(body["step_name"])
        topic, key, reply = transform(role, topic, body)
        assert topic == t.STEP_COMPLETED
        decode(MESSAGE_TYPES[topic], _bytes(reply))
        topic, key, body = transform("orchestrator", t.STEP_COMPLETED, reply)
    assert seen == [name for name, _, _ in STEPS]
    assert topic == t.FULFILLMENT_COMPLETED
    outcome = decode(MESSAGE_TYPES[topic], _bytes(body))
    assert outcome.model_dump()["order_id"] == "ord-1"
    assert set(body["results"]) == set(seen)


def _bytes(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)
