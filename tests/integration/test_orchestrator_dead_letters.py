"""Bad records land in the dead-letter topic with their reason; valid sagas go on."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from participants.app import saga_id_for_order
from saga_worker.runtime.kafka_clients import make_producer
from saga_worker.wire import (
    DLQ_ERROR_CODE,
    DLQ_OFFSET,
    DLQ_REASON,
    DLQ_SHA256,
    DLQ_SOURCE_TOPIC,
    header_value,
)
from schemas import topics as t
from tests.integration.kafka_state import read_to_end, wait_caught_up
from tests.integration.saga_support import (
    SagaReader,
    ScriptedParticipants,
    inbound,
    order,
    running_orchestrator,
    send_orders,
    settings_for,
)
from tests.services import Services

EXISTING = saga_id_for_order("o-ok")
MAX_BYTES = 64 * 1024  # the orchestrator's limit in this test; Kafka's is about 1 MiB
REPLY = {"saga_id": EXISTING, "step_name": "reserve_inventory", "result": {}}


def deep(levels: int) -> bytes:
    return (
        b'{"saga_id":"x","step_name":"s","result":'
        + b'{"a":' * levels
        + b"1"
        + b"}" * levels
        + b"}"
    )


# (name, topic, key, value, expected dlq.error_code)
BAD_RECORDS: list[tuple[str, str, bytes | None, bytes | None, str]] = [
    ("not json", t.ORDER_CREATED, b"k", b"{not json", "not_json"),
    ("json array", t.ORDER_CREATED, b"k", b"[1, 2, 3]", "not_object"),
    ("empty value", t.STEP_COMPLETED, EXISTING.encode(), None, "not_json"),
    ("invalid utf-8", t.ORDER_CREATED, b"k", b'{"order_id": "\xff\xfe"}', "not_utf8"),
    ("missing saga_id", t.STEP_COMPLETED, b"k", b'{"step_name": "reserve_inventory"}', "invalid"),
    (
        "float money",
        t.ORDER_CREATED,
        b"k",
        orjson.dumps(order("o-float", items=[{"sku": "a", "quantity": 1, "unit_price": 12.5}])),
        "invalid",
    ),
    (
        "negative quantity",
        t.ORDER_CREATED,
        b"k",
        orjson.dumps(order("o-neg", items=[{"sku": "a", "quantity": -1, "unit_price": 1}])),
        "invalid",
    ),
    ("deep nesting", t.STEP_COMPLETED, b"x", deep(40), "too_deep"),
    ("oversize value", t.ORDER_CREATED, b"k", b'{"pad": "' + b"x" * MAX_BYTES + b'"}', "too_large"),
    ("null key", t.STEP_COMPLETED, None, orjson.dumps(REPLY), "missing_key"),
    ("key of another saga", t.STEP_COMPLETED, b"someone-else", orjson.dumps(REPLY), "key_mismatch"),
    (
        "saga never existed",
        t.STEP_FAILED,
        b"nope-1",
        orjson.dumps({"saga_id": "nope-1", "step_name": "reserve_inventory", "error": "x"}),
        "unknown_saga",
    ),
    (
        "reply forged for another saga's command",
        t.STEP_FAILED,
        EXISTING.encode(),
        orjson.dumps({**REPLY, "error": "x", "command_id": "another-saga:reserve_inventory:a1"}),
        "foreign_command",
    ),
    (
        "unknown step",
        t.COMPENSATION_COMPLETED,
        EXISTING.encode(),
        orjson.dumps({"saga_id": EXISTING, "step_name": "launch_rocket"}),
        "unknown_step",
    ),
]


@pytest.mark.timeout(120)
async def test_each_bad_record_is_dead_lettered_with_its_reason(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix, saga_partitions=1, saga_max_message_bytes=MAX_BYTES)
    scripted = ScriptedParticipants(settings.kafka, prefix)
    async with running_orchestrator(settings), scripted.running():
        reader = SagaReader(redis_client, settings)
        await send_orders(settings.kafka, prefix, [order("o-ok")])
        await reader.wait_status("o-ok", "completed")
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            for _, topic, key, value, _ in BAD_RECORDS:
                await producer.send_and_wait(prefix + topic, value, key=key)
        finally:
            await producer.stop()
        await send_orders(settings.kafka, prefix, [order("o-after")])
        await reader.wait_status("o-after", "completed")
        # All read and committed, each batch after its dead letters: every letter is in.
        await wait_caught_up(settings.kafka, inbound(settings, orchestrator=True))
        letters = await read_to_end(settings.kafka, prefix + t.DEAD_LETTER)

    by_code = [(header_value(r.headers, DLQ_ERROR_CODE), uncut(r)) for r in letters]
    expected = [(code, value) for _, _, _, value, code in BAD_RECORDS]
    assert sorted(by_code, key=repr) == sorted(expected, key=repr)
    for record in letters:
        source = header_value(record.headers, DLQ_SOURCE_TOPIC) or ""
        assert source.startswith(prefix)
        assert header_value(record.headers, DLQ_OFFSET) is not None
        assert header_value(record.headers, DLQ_REASON)


def uncut(letter: Any) -> bytes | None:
    """The value a dead letter stands for: one cut to fit the limit (the oversize value)
    is the head of the original with that original's digest."""
    digest = header_value(letter.headers, DLQ_SHA256)
    if digest is None:
        return letter.value  # type: ignore[no-any-return]
    [original] = [v for *_, v, _ in BAD_RECORDS if v and hashlib.sha256(v).hexdigest() == digest]
    assert original.startswith(letter.value)
    return original
