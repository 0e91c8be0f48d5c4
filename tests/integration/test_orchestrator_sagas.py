"""The orchestrator on the real broker and Redis, with scripted participants."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from participants.app import saga_id_for_order
from saga_worker.engine.decide import TIMEOUT, timer_id
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.kafka_state import read_to_end
from tests.integration.saga_support import (
    SHORT,
    SagaReader,
    ScriptedParticipants,
    fail_reply,
    fast_fulfillment,
    fire_now,
    metric,
    order,
    read_topic,
    reply_for,
    running_orchestrator,
    send_orders,
    settings_for,
)
from tests.services import Services

Reply = list[tuple[str, dict[str, Any]]]


async def test_a_saga_completes_and_announces_it(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix)
    async with running_orchestrator(settings), scripted.running():
        await send_orders(settings.kafka, prefix, [order("o-1")])
        state = await SagaReader(redis_client, settings).wait_status("o-1", "completed")
    saga_id = saga_id_for_order("o-1")
    assert scripted.topics_for(saga_id) == [
        t.RESERVE_ITEMS,
        t.PROCESS_PAYMENT,
        t.CREATE_SHIPMENT,
        t.SEND_ORDER_CONFIRMATION,
    ]
    assert set(state.steps) == {
        "reserve_inventory",
        "process_payment",
        "create_shipment",
        "send_confirmation",
    }
    outcomes = await read_topic(settings.kafka, prefix + t.FULFILLMENT_COMPLETED, expect=1)
    assert [r.key.decode() for r in outcomes] == [saga_id]


async def test_a_failed_step_compensates_in_reverse_order(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        if topic == t.CREATE_SHIPMENT:
            return [fail_reply(cmd, "address not served", retryable=False)]
        return [reply_for(topic, cmd)]

    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix, script)
    async with running_orchestrator(settings), scripted.running():
        await send_orders(settings.kafka, prefix, [order("o-2")])
        state = await SagaReader(redis_client, settings).wait_status("o-2", "failed")
        saga_id = saga_id_for_order("o-2")
        await assert_eventually(
            lambda: _async(scripted.topics_for(saga_id)),
            lambda topics: t.SEND_CANCELLATION_NOTICE in topics,
        )
    assert scripted.topics_for(saga_id) == [
        t.RESERVE_ITEMS,
        t.PROCESS_PAYMENT,
        t.CREATE_SHIPMENT,
        t.REFUND_PAYMENT,
        t.RELEASE_RESERVATION,
        t.SEND_CANCELLATION_NOTICE,
    ]
    assert "address not served" in (state.error or "")
    failed = await read_topic(settings.kafka, prefix + t.FULFILLMENT_FAILED, expect=1)
    assert len(failed) == 1


async def test_a_silent_step_is_retried_then_compensated_with_its_own_compensation(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        return [] if topic == t.PROCESS_PAYMENT else [reply_for(topic, cmd)]

    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix, script)
    # Only the silent step times out; every answered command has all the time it needs.
    silent_payment = fast_fulfillment(timeouts={"process_payment": SHORT})
    async with running_orchestrator(settings, silent_payment), scripted.running():
        await send_orders(settings.kafka, prefix, [order("o-3")])
        await SagaReader(redis_client, settings).wait_status("o-3", "failed")
    saga_id = saga_id_for_order("o-3")
    # Two attempts (the policy's max), then the unknown outcome is compensated too.
    assert scripted.by_saga(saga_id)[:5] == [
        f"{t.RESERVE_ITEMS}#1",
        f"{t.PROCESS_PAYMENT}#1",
        f"{t.PROCESS_PAYMENT}#2",
        f"{t.REFUND_PAYMENT}#1",
        f"{t.RELEASE_RESERVATION}#1",
    ]


async def test_a_retryable_failure_is_retried_and_then_succeeds(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        if topic == t.RESERVE_ITEMS and cmd["attempt"] == 1:
            return [fail_reply(cmd, "redis hiccup", retryable=True)]
        return [reply_for(topic, cmd)]

    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix, script)
    async with running_orchestrator(settings), scripted.running():
        await send_orders(settings.kafka, prefix, [order("o-4")])
        await SagaReader(redis_client, settings).wait_status("o-4", "completed")
    assert scripted.by_saga(saga_id_for_order("o-4"))[:2] == [
        f"{t.RESERVE_ITEMS}#1",
        f"{t.RESERVE_ITEMS}#2",
    ]


async def test_duplicate_orders_and_replies_change_nothing(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        reply = reply_for(topic, cmd)
        return [reply, reply]  # every reply delivered twice

    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix, script)
    completed = prefix + t.FULFILLMENT_COMPLETED
    async with running_orchestrator(settings) as worker, scripted.running():
        await send_orders(settings.kafka, prefix, [order("o-5"), order("o-5"), order("o-5")])
        reader = SagaReader(redis_client, settings)
        state = await reader.wait_status("o-5", "completed")
        await read_topic(settings.kafka, completed, expect=1)  # its outcome is out
        await send_orders(settings.kafka, prefix, [order("o-5")])  # after the end, too
        # Two copies of the start and one copy of each of the four replies before the
        # end, one start after it: each was read and ignored, so none sent anything.
        await assert_eventually(
            lambda: _async(metric(worker, "saga_worker_events_ignored_total")),
            lambda ignored: ignored == 7,
            message="every duplicate read and ignored",
        )
        outcomes = await read_to_end(settings.kafka, completed)
        after = await reader.state("o-5")
    saga_id = saga_id_for_order("o-5")
    assert scripted.by_saga(saga_id) == [
        f"{t.RESERVE_ITEMS}#1",
        f"{t.PROCESS_PAYMENT}#1",
        f"{t.CREATE_SHIPMENT}#1",
        f"{t.SEND_ORDER_CONFIRMATION}#1",
    ]
    assert len(outcomes) == 1
    assert after is not None
    assert after.history == state.history


async def test_a_late_reply_to_an_earlier_attempt_changes_nothing(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        if topic == t.RESERVE_ITEMS and cmd["attempt"] == 1:
            return []  # silent: attempt 1 times out
        if topic == t.RESERVE_ITEMS and cmd["attempt"] == 2:
            first = {**cmd, "attempt": 1, "command_id": cmd["command_id"].replace(":a2", ":a1")}
            # The late answer to attempt 1 says "failed for good"; it must not count.
            return [fail_reply(first, "late: out of stock", retryable=False), reply_for(topic, cmd)]
        return [reply_for(topic, cmd)]

    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix, script)
    saga_id = saga_id_for_order("o-6")
    async with running_orchestrator(settings), scripted.running():
        await send_orders(settings.kafka, prefix, [order("o-6")])
        await assert_eventually(
            lambda: _async(scripted.by_saga(saga_id)),
            lambda sent: sent == [f"{t.RESERVE_ITEMS}#1"],
            message="attempt 1 sent",
        )
        # Attempt 1 times out now; attempt 2, answered, has all the time it needs.
        await fire_now(redis_client, settings, saga_id, timer_id(TIMEOUT, "reserve_inventory", 1))
        state = await SagaReader(redis_client, settings).wait_status("o-6", "completed")
    assert scripted.by_saga(saga_id)[:2] == [f"{t.RESERVE_ITEMS}#1", f"{t.RESERVE_ITEMS}#2"]
    assert state.error is None
    assert all(h.detail is None or "late" not in h.detail for h in state.history)


async def _async(value: Any) -> Any:
    return value
