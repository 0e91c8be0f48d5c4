"""Hostile records on every topic the workers read: each is dead-lettered with its reason,
no worker stops, memory stays bounded, and valid sagas beside them finish.

The workers run as separate processes, as in production.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from participants.app import NAMES, app, saga_id_for_order
from participants.order_mix import plan_orders
from participants.seed import load_seed
from saga_worker.runtime.kafka_clients import make_producer
from saga_worker.runtime.worker_processes import (
    WorkerProcess,
    saga_workers,
    until_ready,
    with_health_ports,
)
from saga_worker.settings import Settings
from saga_worker.wire import DLQ_ERROR_CODE, DLQ_REASON, DLQ_SOURCE_TOPIC, header_value
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.kafka_state import read_to_end, wait_assigned, wait_caught_up
from tests.integration.saga_support import (
    SagaReader,
    prepare_topics,
    role_of,
    send_orders,
    settings_for,
)
from tests.services import Services

LIMIT = 256 * 1024  # SAGA_MAX_MESSAGE_BYTES of the workers under test
ITEM = b'{"sku":"a","quantity":1,"unit_price":1}'


def _deep(levels: int) -> bytes:
    return b'{"saga_id":"s","step_name":"x","r":' + b"[" * levels + b"]" * levels + b"}"


def _body(**fields: object) -> bytes:
    base: dict[str, object] = {"saga_id": "s-1", "step_name": "reserve_inventory"}
    return orjson.dumps({**base, **fields})


# Bad on every topic: (kind, value). None of them may pass any topic's model.
HOSTILE: list[tuple[str, bytes | None]] = [
    ("not json", b"{nope"),
    ("empty bytes", b""),
    ("null value", None),
    ("json array", b"[1, 2, 3]"),
    ("json string", b'"hello"'),
    ("json number", b"42"),
    ("json true", b"true"),
    ("invalid utf-8", b'{"saga_id": "\xff\xfe"}'),
    ("utf-16 json", '{"saga_id": "s-1"}'.encode("utf-16")),
    ("byte order mark", b"\xef\xbb\xbf{}"),
    ("NaN literal", b'{"saga_id": NaN}'),
    ("deep nesting", _deep(5000)),
    (
        "huge array",
        b'{"saga_id":"s-1","step_name":"x","items":[' + b",".join([ITEM] * 5000) + b"]}",
    ),
    ("past the size limit", b'{"pad":"' + b"x" * LIMIT + b'"}'),
    ("wrong types", b'{"saga_id": 123, "step_name": [], "order_id": {}}'),
    ("empty object", b"{}"),
    (
        "negative money",
        _body(customer_id="c", items=[{"sku": "a", "quantity": 1, "unit_price": -5}]),
    ),
    (
        "overflowing money",
        _body().replace(
            b"}", b',"items":[{"sku":"a","quantity":1,"unit_price":1' + b"0" * 30 + b"}]}"
        ),
    ),
    ("float quantity", _body(items=[{"sku": "a", "quantity": 1.5, "unit_price": 1}])),
    ("control characters in ids", _body(saga_id="s\u0000-1", step_name="a\nb")),
    ("id far too long", _body(saga_id="s" * 10_000)),
    ("conflicting duplicate keys", b'{"saga_id":"s-1","saga_id":{"nested":1}}'),
]
GARBAGE_HEADERS = [
    ("traceparent", b"\xff\xfenot-a-trace"),
    ("message_type", b"\x00" * 64),
    ("x-huge", b"h" * 32_000),
    *[(f"x-{i}", b"v") for i in range(50)],
]
READ_TOPICS = (t.ORDER_CREATED, *t.REPLY_TOPICS, *t.COMMAND_TOPICS)


def rss_mb(worker: WorkerProcess) -> float:
    for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.timeout(300)
async def test_hostile_records_are_dead_lettered_and_nothing_else_suffers(
    services: Services, prefix: str, redis_client: Redis, tmp_path: Path
) -> None:
    settings = settings_for(services, prefix, saga_max_message_bytes=LIMIT)
    await prepare_topics(settings)
    seeded = await load_seed(redis_client, prefix)
    workers = with_health_ports(
        saga_workers(settings, tmp_path, NAMES, {"SAGA_LOG_LEVEL": "ERROR"})
    )
    groups = {settings.group_id(role_of(w.name)): topics_of(settings, w.name) for w in workers}
    for worker in workers:
        worker.start()
    try:
        await until_ready(workers)
        await wait_assigned(settings.kafka, dict.fromkeys(groups, 1))
        reader = SagaReader(redis_client, settings)
        good = plan_orders(10, 0.0, random.Random(1), seeded)
        await send_orders(settings.kafka, prefix, [o.body for o in good[:5]])
        await _all_done(reader, [o.order_id for o in good[:5]])
        before = {w.name: rss_mb(w) for w in workers}

        rounds = 3
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            for _ in range(rounds):
                for topic in READ_TOPICS:
                    for _, value in HOSTILE:
                        await producer.send(
                            prefix + topic, value, key=b"s-1", headers=GARBAGE_HEADERS
                        )
            # Records that decode but name what does not exist, or another saga's command.
            real = saga_id_for_order(good[0].order_id)
            forged = [
                (
                    t.STEP_COMPLETED,
                    _body(saga_id="never-started"),
                    b"never-started",
                    "unknown_saga",
                ),
                (
                    t.STEP_FAILED,
                    _body(saga_id=real, error="x", command_id="other:reserve_inventory:a1"),
                    real.encode(),
                    "foreign_command",
                ),
                (t.STEP_COMPLETED, _body(saga_id=real), b"someone-else", "key_mismatch"),
                (
                    t.COMPENSATION_COMPLETED,
                    _body(saga_id=real, step_name="launch"),
                    real.encode(),
                    "unknown_step",
                ),
            ]
            for topic, value, key, _ in forged:
                await producer.send(prefix + topic, value, key=key)
            # Valid orders, with garbage headers, right behind the hostile ones.
            for order in good[5:]:
                await producer.send(
                    prefix + t.ORDER_CREATED,
                    orjson.dumps(order.body),
                    key=order.order_id.encode(),
                    headers=GARBAGE_HEADERS,
                )
            await producer.flush()
        finally:
            await producer.stop()

        await _all_done(reader, [o.order_id for o in good])
        # Every worker committed all it read, after its dead letters were acknowledged.
        await wait_caught_up(settings.kafka, groups, within=90)
        letters = await read_to_end(settings.kafka, prefix + t.DEAD_LETTER)
        expected = rounds * len(READ_TOPICS) * len(HOSTILE) + len(forged)
        after = {w.name: rss_mb(w) for w in workers}
        alive = [w.name for w in workers if w.alive]
    finally:
        for worker in workers:
            worker.stop()

    assert alive == [w.name for w in workers], "a worker stopped"
    assert len(letters) == expected
    codes = Counter(header_value(r.headers, DLQ_ERROR_CODE) for r in letters)
    assert None not in codes
    for _, _, _, code in forged:
        assert codes[code] >= 1
    assert all(header_value(r.headers, DLQ_REASON) for r in letters)
    sources = Counter(header_value(r.headers, DLQ_SOURCE_TOPIC) for r in letters)
    assert all(sources[prefix + topic] >= rounds * len(HOSTILE) for topic in READ_TOPICS)
    # Bounded: a few hundred hostile records cost no worker more than a few MiB.
    growth = {name: after[name] - before[name] for name in after}
    assert max(growth.values()) < 40, growth


def topics_of(settings: Settings, worker: str) -> list[str]:
    """The physical topics a worker of the sample reads."""
    if worker == "orchestrator":
        logical = app.orchestrator_inbound()
    else:
        logical = app.build_participant(worker).topics
    return [settings.topics.physical(name) for name in logical]


async def _all_done(reader: SagaReader, order_ids: list[str]) -> None:
    await assert_eventually(
        lambda: reader.statuses(order_ids),
        lambda c: c["completed"] == len(order_ids),
        within=90,
        message="valid sagas completed",
    )
