"""Starts stay idempotent after their saga expired, and a start with another body for the
same business key is dead-lettered (issue 12, idempotency of starts). On the real Kafka
and Redis: the orchestrator with sagas kept for 1 s, start markers for 90 days."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from participants.app import saga_id_for_order
from participants.order_fulfillment import ORDER_FULFILLMENT
from saga_worker.engine.decide import decide
from saga_worker.engine.events import StartSaga
from saga_worker.engine.state import SagaStatus
from saga_worker.runtime.clock import utcnow
from saga_worker.runtime.inbound import start_digest
from saga_worker.runtime.keys import KeySpace
from saga_worker.runtime.store import RedisSagaStore, SagaWrite
from saga_worker.wire import DLQ_ERROR_CODE, DLQ_REASON, DLQ_SOURCE_TOPIC, header_value
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.kafka_state import read_to_end
from tests.integration.saga_support import (
    SagaReader,
    ScriptedParticipants,
    order,
    running_orchestrator,
    send_orders,
    settings_for,
)
from tests.services import Services
from tests.unit.support import ORDER_DATA

DAY_MS = 24 * 3600 * 1000


def dead_letter_codes(letters: list[Any]) -> list[str | None]:
    return [header_value(r.headers, DLQ_ERROR_CODE) for r in letters]


@pytest.mark.timeout(120)
async def test_a_start_replayed_after_its_saga_expired_starts_nothing_again(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    # One partition: a later order completing means every earlier start was consumed.
    settings = settings_for(services, prefix, saga_partitions=1, saga_retention_s=1.0)
    scripted = ScriptedParticipants(settings.kafka, prefix)
    saga_id = saga_id_for_order("once-1")
    saga_key = settings.keys.saga(saga_id)
    marker_key = settings.keys.start_marker(saga_id)
    async with running_orchestrator(settings) as worker, scripted.running():
        reader = SagaReader(redis_client, settings)
        await send_orders(settings.kafka, prefix, [order("once-1")])
        await reader.wait_status("once-1", "completed")
        sent = scripted.topics_for(saga_id)
        assert t.PROCESS_PAYMENT in sent
        await assert_eventually(
            lambda: redis_client.exists(saga_key), lambda n: n == 0, message="expiry"
        )
        assert await redis_client.pttl(marker_key) > 89 * DAY_MS

        # The topic replayed: the same order, as it was sent the first time.
        await send_orders(settings.kafka, prefix, [order("once-1"), order("after-1")])
        await reader.wait_status("after-1", "completed")

        assert await reader.state("once-1") is None
        assert scripted.topics_for(saga_id) == sent  # no second payment, nor any command
        metrics = worker.metrics.render().decode()
        assert 'saga_worker_starts_repeated_total{definition="OrderFulfillment"} 1.0' in metrics
        assert 'saga_worker_sagas_started_total{definition="OrderFulfillment"} 2.0' in metrics

        # Another body for the same business key, after the saga expired: a conflict.
        conflict = order("once-1", payment_method="wallet")
        await send_orders(settings.kafka, prefix, [conflict, order("after-conflict")])
        await reader.wait_status("after-conflict", "completed")
        # One partition: the later order was handled after the conflict, whose dead
        # letter (and any command) went out before the later order's first command.
        [letter] = await read_to_end(settings.kafka, prefix + t.DEAD_LETTER)
    assert dead_letter_codes([letter]) == ["start_conflict"]
    assert header_value(letter.headers, DLQ_SOURCE_TOPIC) == prefix + t.ORDER_CREATED
    assert orjson.loads(letter.value)["payment_method"] == "wallet"
    reason = header_value(letter.headers, DLQ_REASON) or ""
    assert saga_id in reason
    assert "'once-1'" in reason
    assert scripted.topics_for(saga_id) == sent
    assert not await redis_client.exists(saga_key)


@pytest.mark.timeout(120)
async def test_a_start_with_another_body_for_a_running_saga_is_dead_lettered(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix, saga_partitions=1)
    scripted = ScriptedParticipants(settings.kafka, prefix)
    saga_id = saga_id_for_order("twice-1")
    async with running_orchestrator(settings) as worker, scripted.running():
        reader = SagaReader(redis_client, settings)
        await send_orders(settings.kafka, prefix, [order("twice-1")])
        first = await reader.wait_status("twice-1", "completed")
        sent = scripted.topics_for(saga_id)
        changed = order("twice-1", items=[{"sku": "sku-9", "quantity": 1, "unit_price": 1}])
        # The same start again is a duplicate, ignored; another body is a conflict.
        await send_orders(settings.kafka, prefix, [order("twice-1"), changed, order("after-2")])
        await reader.wait_status("after-2", "completed")
        letters = await read_to_end(settings.kafka, prefix + t.DEAD_LETTER)
        metrics = worker.metrics.render().decode()
    assert dead_letter_codes(letters) == ["start_conflict"]
    assert orjson.loads(letters[0].value) == changed
    assert (
        'saga_worker_dead_letters_total{code="start_conflict",worker="orchestrator"} 1.0' in metrics
    )
    assert (
        "saga_worker_starts_repeated_total{" not in metrics
    )  # the saga is kept: a plain duplicate
    assert await reader.state("twice-1") == first
    assert scripted.topics_for(saga_id) == sent


async def test_the_store_sets_a_marker_with_the_saga_and_renews_it_when_the_saga_finishes(
    redis_client: Redis, prefix: str
) -> None:
    keys = KeySpace(prefix)
    store = RedisSagaStore(
        redis_client, keys, retention=timedelta(seconds=30), start_retention=timedelta(hours=2)
    )
    digest = start_digest({"order_id": "o-1"})
    state = decide(None, StartSaga("marked", ORDER_DATA), utcnow(), ORDER_FULFILLMENT).state
    assert state is not None
    # A creation that loses its compare-and-set sets nothing.
    await redis_client.hset(keys.saga("raced"), mapping={"v": 1, "s": "{}"})
    lost = await store.save(
        [
            SagaWrite("marked", 0, state, start_digest=digest),
            SagaWrite("raced", 0, state, start_digest=digest),
        ]
    )
    assert lost == {"raced"}
    assert not await redis_client.exists(keys.start_marker("raced"))
    assert await redis_client.get(keys.start_marker("marked")) == digest.encode()
    assert 7_100_000 < await redis_client.pttl(keys.start_marker("marked")) <= 7_200_000

    # Asked for, the marker comes with the saga in the one load; not asked for, it does not.
    loaded = await store.load({"marked": [], "never": []}, starts={"marked", "never"})
    assert loaded["marked"].start_marker == digest
    assert loaded["never"].start_marker is None
    assert loaded["never"].state is None
    assert (await store.load({"marked": []}))["marked"].start_marker is None

    # A later write leaves the marker alone; finishing renews it, so it outlives the saga.
    await redis_client.pexpire(keys.start_marker("marked"), 60_000)
    await store.save([SagaWrite("marked", 1, state, start_digest="not-a-creation")])
    assert await redis_client.get(keys.start_marker("marked")) == digest.encode()
    assert await redis_client.pttl(keys.start_marker("marked")) <= 60_000
    done = replace(state, status=SagaStatus.COMPLETED, timers={})
    assert await store.save([SagaWrite("marked", 2, done)]) == set()
    assert await redis_client.pttl(keys.saga("marked")) <= 30_000
    assert await redis_client.pttl(keys.start_marker("marked")) > 7_100_000
