"""One size policy, end to end, on the real broker (default limits) and Redis.

A record that cannot be handled is dead-lettered in a form that fits, however
close to the broker's limit it came; a saga whose next message would be too
large ends with that reason before anything unsendable is saved; headers are
capped at intake; SAGA_MAX_MESSAGE_BYTES is the limit everywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from participants.app import saga_id_for_order
from participants.seed import DEMO_SEED, load_seed
from saga_worker.participant.runtime import ParticipantWorker
from saga_worker.runtime.kafka_clients import KafkaConnection, make_producer
from saga_worker.runtime.orchestrator import Orchestrator
from saga_worker.settings import Settings
from saga_worker.wire import (
    DLQ_DROPPED_HEADERS,
    DLQ_ERROR_CODE,
    DLQ_SOURCE_TOPIC,
    DLQ_WORKER,
    MAX_HEADER_BYTES,
    MAX_KEY_BYTES,
    TRACEPARENT,
    header_value,
)
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.kafka_state import read_to_end, wait_caught_up
from tests.integration.saga_support import (
    SagaReader,
    ScriptedParticipants,
    cli,
    inbound,
    one_error_line,
    prepare_topics,
    read_topic,
    reply_for,
    running_orchestrator,
    running_participants,
    send_orders,
    settings_for,
)
from tests.services import Services

pytestmark = pytest.mark.timeout(180)

DLQ_ORIGINAL_SIZE = "dlq.original_size"
DLQ_SHA256 = "dlq.sha256"
BROKER_DEFAULT = 1_048_588  # message.max.bytes of a broker nobody configured
GARBAGE = random.Random(12).randbytes(1_048_400)  # fits the broker, not UTF-8, not JSON
# What the sample's workers read: the orchestrator its start and reply topics, each
# participant its command topics.
INPUT_TOPICS = (t.ORDER_CREATED, *t.REPLY_TOPICS, *t.COMMAND_TOPICS)
GOOD_ITEMS = [{"sku": "sku-espresso-beans", "quantity": 1, "unit_price": 2490}]


def good_order(order_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": order_id,
        "customer_id": "cust-001",
        "items": GOOD_ITEMS,
        "payment_method": "card",
        "shipping_address": {"line1": "1 Main St", "city": "Lyon", "country": "FR"},
    }
    return {**body, **changes}


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` with a `note` that makes its JSON exactly `size` bytes."""
    bare = len(orjson.dumps({**body, "note": ""}))
    value = orjson.dumps({**body, "note": "x" * (size - bare)})
    assert len(value) == size
    return value


async def produce_all(conn: KafkaConnection, records: list[tuple[str, bytes, bytes]]) -> None:
    """(physical topic, key, value) with the stock producer, each acknowledged."""
    producer = make_producer(conn)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def all_alive(orchestrator: Orchestrator, participants: list[ParticipantWorker]) -> list[str]:
    """Names of the workers that are NOT running any more."""
    down = [] if orchestrator.ready else ["orchestrator"]
    return down + [p.worker for p in participants if not p.ready]


@dataclasses.dataclass
class Running:
    settings: Settings
    reader: SagaReader
    orchestrator: Orchestrator
    participants: list[ParticipantWorker]

    async def letters(self) -> list[Any]:
        """Every dead letter, once each worker committed all it read (a batch is
        committed after its dead letters are acknowledged): none is still to come."""
        groups = inbound(self.settings, orchestrator=True, participants=self.participants)
        await wait_caught_up(self.settings.kafka, groups, within=90)
        return await read_to_end(self.settings.kafka, self.settings.topics.physical(t.DEAD_LETTER))

    async def saga_completes(self, order_id: str) -> None:
        await send_orders(
            self.settings.kafka, self.settings.saga_topic_prefix, [good_order(order_id)]
        )
        await self.reader.wait_status(order_id, "completed", within=60)


@pytest.fixture
async def system(
    services: Services, prefix: str, redis_client: Redis, request: pytest.FixtureRequest
) -> AsyncIterator[Running]:
    """The orchestrator and the sample's four participants, in this process."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    settings = settings_for(services, prefix, saga_partitions=1, **overrides)
    await prepare_topics(settings)
    await load_seed(redis_client, prefix, DEMO_SEED)
    async with (
        running_orchestrator(settings) as orchestrator,
        running_participants(settings) as participants,
    ):
        yield Running(settings, SagaReader(redis_client, settings), orchestrator, participants)


async def test_garbage_near_the_brokers_limit_is_dead_lettered_cut_to_fit_and_no_worker_stops(
    system: Running,
) -> None:
    s = system.settings
    sources = INPUT_TOPICS
    await produce_all(s.kafka, [(s.topics.physical(n), b"k-1", GARBAGE) for n in sources])

    letters = await system.letters()

    assert sorted(str(header_value(r.headers, DLQ_SOURCE_TOPIC)) for r in letters) == sorted(
        s.topics.physical(n) for n in sources
    )
    workers = {header_value(r.headers, DLQ_WORKER) for r in letters}
    assert workers == {"orchestrator", *(p.worker for p in system.participants)}
    digest = hashlib.sha256(GARBAGE).hexdigest()
    for letter in letters:
        assert header_value(letter.headers, DLQ_ERROR_CODE) in {"not_utf8", "too_large"}
        assert header_value(letter.headers, DLQ_ORIGINAL_SIZE) == str(len(GARBAGE))
        assert header_value(letter.headers, DLQ_SHA256) == digest
        assert 0 < len(letter.value) < len(GARBAGE)
        assert letter.value == GARBAGE[: len(letter.value)]
        size = len(letter.value) + len(letter.key or b"")
        size += sum(len(k) + len(v or b"") for k, v in letter.headers)
        assert size <= s.saga_max_message_bytes <= BROKER_DEFAULT
    await system.saga_completes("o-after-garbage")
    assert all_alive(system.orchestrator, system.participants) == []


async def test_an_order_too_large_to_forward_fails_naming_the_size_and_leaves_no_outbox(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    s = settings_for(services, prefix, saga_partitions=1)
    scripted = ScriptedParticipants(s.kafka, prefix)
    big = good_order("o-big")
    async with running_orchestrator(s) as orchestrator, scripted.running():
        reader = SagaReader(redis_client, s)
        # Accepted (under SAGA_MAX_MESSAGE_BYTES) but its commands, which carry the
        # order and the saga's own fields, would not be.
        value = padded(big, s.saga_max_message_bytes - 300)
        await produce_all(s.kafka, [(s.topics.physical(t.ORDER_CREATED), b"o-big", value)])
        state = await reader.wait_status("o-big", "failed")
        assert state.error is not None
        assert "too_large" in state.error, state.error
        assert "bytes" in state.error, state.error
        saga_id = saga_id_for_order("o-big")
        await assert_eventually(
            lambda: _outbox_of(redis_client, s, saga_id),
            lambda fields: fields == [],
            message="outbox emptied",
        )
        failed = await read_topic(
            s.kafka, s.topics.physical(t.FULFILLMENT_FAILED), expect=1, within=20
        )
        await send_orders(s.kafka, prefix, [good_order("o-after-big")])
        await reader.wait_status("o-after-big", "completed")
        assert orchestrator.ready
    assert scripted.topics_for(saga_id) == []  # no command was ever sent for it
    outcome = orjson.loads(failed[0].value)
    assert outcome["saga_id"] == saga_id
    assert "too_large" in outcome["error"]


async def test_results_that_outgrow_the_limit_stop_the_saga_before_the_next_command(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    s = settings_for(services, prefix, saga_partitions=1)
    blob = "r" * 600_000  # one result fits; the next command carries two of them
    saga_id = saga_id_for_order("o-grows")

    def big_results(topic: str, cmd: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if topic in (t.RESERVE_ITEMS, t.PROCESS_PAYMENT) and cmd["saga_id"] == saga_id:
            return [reply_for(topic, cmd, result={"blob": blob})]
        return [reply_for(topic, cmd)]

    scripted = ScriptedParticipants(s.kafka, prefix, big_results)
    async with running_orchestrator(s) as orchestrator, scripted.running():
        reader = SagaReader(redis_client, s)
        await send_orders(s.kafka, prefix, [good_order("o-grows")])
        state = await reader.wait_status("o-grows", "needs_operator")
        await assert_eventually(
            lambda: _outbox_of(redis_client, s, saga_id),
            lambda fields: fields == [],
            message="outbox emptied",
        )
        await send_orders(s.kafka, prefix, [good_order("o-after-grows")])
        await reader.wait_status("o-after-grows", "completed")
        assert orchestrator.ready
    # The shipment was never asked for, and refunding would repeat both results.
    assert t.CREATE_SHIPMENT not in scripted.topics_for(saga_id)
    assert state.error is not None
    assert "too_large" in state.error, state.error
    assert state.operator_reason is not None
    assert "too_large" in state.operator_reason, state.operator_reason


async def test_a_ten_kilobyte_traceparent_is_dropped_and_the_saga_completes(
    system: Running,
) -> None:
    s = system.settings
    producer: AIOKafkaProducer = make_producer(s.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            s.topics.physical(t.ORDER_CREATED),
            orjson.dumps(good_order("o-traced")),
            key=b"o-traced",
            headers=[(TRACEPARENT, b"00-" + b"a" * 10_000)],
        )
    finally:
        await producer.stop()
    state = await system.reader.wait_status("o-traced", "completed", within=60)
    assert "traceparent" not in state.data
    commands = await read_topic(s.kafka, s.topics.physical(t.RESERVE_ITEMS), expect=1)
    replies = await read_topic(s.kafka, s.topics.physical(t.STEP_COMPLETED), expect=4)
    for record in [*commands, *replies]:
        assert header_value(record.headers, TRACEPARENT) is None
        assert b"a" * 100 not in record.value
    assert all_alive(system.orchestrator, system.participants) == []


LOW = 64 * 1024


@pytest.mark.parametrize("system", [{"saga_max_message_bytes": LOW}], indirect=True)
async def test_a_lower_max_message_bytes_dead_letters_smaller_records_everywhere(
    system: Running,
) -> None:
    s = system.settings
    order_value = padded(good_order("o-mid"), 100_000)
    command = {
        **good_order("o-mid"),
        "saga_id": "s-mid",
        "step_name": "reserve_inventory",
        "command_id": "s-mid:reserve_inventory:a1",
        "attempt": 1,
    }
    command_value = padded(command, 100_000)
    await produce_all(
        s.kafka,
        [
            (s.topics.physical(t.ORDER_CREATED), b"o-mid", order_value),
            (s.topics.physical(t.RESERVE_ITEMS), b"s-mid", command_value),
        ],
    )
    letters = await system.letters()
    by_worker = {header_value(r.headers, DLQ_WORKER): r for r in letters}
    assert set(by_worker) == {"orchestrator", "participant.inventory"}
    for letter, original in (
        (by_worker["orchestrator"], order_value),
        (by_worker["participant.inventory"], command_value),
    ):
        assert header_value(letter.headers, DLQ_ERROR_CODE) == "too_large"
        assert header_value(letter.headers, DLQ_ORIGINAL_SIZE) == str(len(original))
        assert len(letter.value) < LOW
        assert letter.value == original[: len(letter.value)]
    await system.saga_completes("o-small")
    assert all_alive(system.orchestrator, system.participants) == []


async def test_a_limit_the_broker_would_refuse_stops_the_worker_at_start_in_one_line(
    services: Services, prefix: str
) -> None:
    two_mib = str(2 * 1024 * 1024)  # the topics keep the broker's default, about 1 MiB
    run = await cli(
        services, prefix, "orchestrator", SAGA_MAX_MESSAGE_BYTES=two_mib, SAGA_LOG_LEVEL="ERROR"
    )
    line = one_error_line(run, 2)
    assert f"SAGA_MAX_MESSAGE_BYTES is {two_mib}" in line
    assert f"at most {BROKER_DEFAULT} bytes (max.message.bytes)" in line


async def _outbox_of(redis: Redis, settings: Settings, saga_id: str) -> list[bytes]:
    fields = await redis.hkeys(settings.keys.saga(saga_id))
    return [f for f in fields if isinstance(f, bytes) and f.startswith(b"o:")]


def exactly(size: int) -> bytes:
    """A JSON object of exactly `size` bytes that no topic's model accepts."""
    value = padded({"saga_id": "s-edge"}, size)
    assert len(value) == size
    return value


@pytest.mark.parametrize("system", [{"saga_max_message_bytes": LOW}], indirect=True)
async def test_every_input_topic_draws_each_line_where_the_limits_say(system: Running) -> None:
    """Just under and just over each limit, on every topic a worker reads: the value
    (SAGA_MAX_MESSAGE_BYTES), the key (MAX_KEY_BYTES) and a header (MAX_HEADER_BYTES)."""
    s = system.settings
    at_cap, over_cap = b"h" * MAX_HEADER_BYTES, b"h" * (MAX_HEADER_BYTES + 1)
    cases = {  # key -> (value, the code its dead letter must carry)
        b"value-at-limit": (exactly(LOW), "invalid"),
        b"value-over-limit": (exactly(LOW + 1), "too_large"),
        b"a" * MAX_KEY_BYTES: (b"{}", "invalid"),
        b"b" * (MAX_KEY_BYTES + 1): (b"{}", "key_too_large"),
    }
    producer = make_producer(s.kafka)
    await producer.start()
    try:
        for name in INPUT_TOPICS:
            for key, (value, _) in cases.items():
                headers = [("x-at-cap", at_cap), ("x-over-cap", over_cap)]
                await producer.send_and_wait(
                    s.topics.physical(name), value, key=key, headers=headers
                )
    finally:
        await producer.stop()

    expected = len(INPUT_TOPICS) * len(cases)
    letters = await system.letters()

    assert len(letters) == expected
    wanted = {key[:MAX_KEY_BYTES]: code for key, (_, code) in cases.items()}
    seen: dict[str, list[str]] = {}
    for letter in letters:
        code = header_value(letter.headers, DLQ_ERROR_CODE)
        assert code == wanted[letter.key], (letter.key[:20], code)
        seen.setdefault(str(header_value(letter.headers, DLQ_SOURCE_TOPIC)), []).append(code)
        # The header at its cap travels with the letter; the one past it does not.
        assert header_value(letter.headers, "x-at-cap") == at_cap.decode()
        assert header_value(letter.headers, "x-over-cap") is None
        assert header_value(letter.headers, DLQ_DROPPED_HEADERS) == "1"
    assert {topic: sorted(codes) for topic, codes in seen.items()} == {
        s.topics.physical(name): sorted(wanted.values()) for name in INPUT_TOPICS
    }
    await system.saga_completes("o-after-the-edges")
    assert all_alive(system.orchestrator, system.participants) == []
