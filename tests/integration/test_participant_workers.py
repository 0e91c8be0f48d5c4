"""Participant workers end to end: commands on Kafka in, replies and effects out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from participants import inspection
from participants.inventory import INVENTORY
from participants.notification import NOTIFICATION
from participants.payment import PAYMENT
from participants.seed import SeedData, load_seed
from participants.shipping import shipping_participant
from saga_worker.participant.definition import Participant
from saga_worker.participant.knobs import CRASH_EXIT_CODE, Knobs
from saga_worker.participant.runtime import ParticipantWorker
from saga_worker.settings import Settings, load_settings
from saga_worker.wire import DLQ_ERROR_CODE, DLQ_SOURCE_TOPIC, TRACEPARENT, header_value
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.saga_support import bus, running_participants
from tests.services import Services, redis_client_for

REPO = Path(__file__).resolve().parents[2]
SEED = SeedData(
    stock={"sku-a": 10, "sku-b": 1}, balances={"alice": 10_000, "bob": 100, "carol": 10_000}
)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACED = [(TRACEPARENT, TRACE.encode())]
SHIPPING = shipping_participant(frozenset({"DE", "US"}))


def settings_for(services: Services, prefix: str) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        redis_url=services.redis_url,
        saga_topic_prefix=prefix,
        saga_key_prefix=prefix,
        saga_partitions=2,
    )


def order(saga_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "saga_id": saga_id,
        "order_id": f"order-{saga_id}",
        "customer_id": "alice",
        "items": [{"sku": "sku-a", "quantity": 2, "unit_price": 1_000}],
        "payment_method": "card",
        "shipping_address": {"country": "DE", "city": "Berlin", "postal_code": "10115"},
    }
    return {**body, **fields}


def cmd(step: str, saga_id: str, attempt: int | None = 1, **fields: Any) -> dict[str, Any]:
    body = order(saga_id, step_name=step, **fields)
    if attempt is not None:
        body["command_id"] = f"{saga_id}:{step}:a{attempt}"
        body["attempt"] = attempt
    return body


def running(
    settings: Settings, *participants: Participant, knobs: Knobs | None = None
) -> contextlib.AbstractAsyncContextManager[list[ParticipantWorker]]:
    chosen = {p.name: knobs for p in participants} if knobs else None
    return running_participants(settings, participants, chosen)


@pytest.fixture
async def redis(services: Services, prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client_for(services.redis_url)
    await load_seed(client, prefix, SEED)
    try:
        yield client
    finally:
        await client.aclose()


def body(record: Any) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(record.value)
    return value


async def test_happy_path_every_participant_answers_and_takes_effect(
    services: Services, prefix: str, redis: aioredis.Redis
) -> None:
    s = settings_for(services, prefix)
    async with running(s, INVENTORY, PAYMENT, SHIPPING, NOTIFICATION), bus(s, TRACED) as b:
        await b.send(t.RESERVE_ITEMS, cmd("reserve_inventory", "s1"))
        await b.send(t.PROCESS_PAYMENT, cmd("process_payment", "s1"))
        await b.send(t.CREATE_SHIPMENT, cmd("create_shipment", "s1"))
        await b.send(t.SEND_ORDER_CONFIRMATION, cmd("send_confirmation", "s1"))
        replies = await b.wait_for(4, t.STEP_COMPLETED)
    by_step = {body(r)["step_name"]: r for r in replies}
    assert set(by_step) == {
        "reserve_inventory",
        "process_payment",
        "create_shipment",
        "send_confirmation",
    }
    for step, record in by_step.items():
        reply = body(record)
        assert record.key == b"s1"
        assert reply["command_id"] == f"s1:{step}:a1"
        assert reply["attempt"] == 1
        assert reply["message_id"] == f"s1:{step}:a1:reply"
        assert header_value(record.headers, TRACEPARENT) == TRACE
    assert body(by_step["process_payment"])["result"]["amount"] == 2_000
    state = await inspection.snapshot(redis, prefix)
    assert state.stock == {"sku-a": 8, "sku-b": 1}
    assert state.reservations == {"s1": {"sku-a": 2}}
    assert state.balances["alice"] == 8_000
    assert list(state.shipments) == ["s1"]
    assert [(n.kind, n.order_id) for n in state.notices] == [("confirmation", "order-s1")]


async def test_business_failures_reply_failed_without_effect(
    services: Services, prefix: str, redis: aioredis.Redis
) -> None:
    s = settings_for(services, prefix)
    async with running(s, INVENTORY, PAYMENT, SHIPPING), bus(s, TRACED) as b:
        too_many = [{"sku": "sku-b", "quantity": 2, "unit_price": 1}]
        await b.send(t.RESERVE_ITEMS, cmd("reserve_inventory", "s1", items=too_many))
        await b.send(t.PROCESS_PAYMENT, cmd("process_payment", "s2", customer_id="bob"))
        far = {"country": "AQ"}
        await b.send(t.CREATE_SHIPMENT, cmd("create_shipment", "s3", shipping_address=far))
        failed = await b.wait_for(3, t.STEP_FAILED)
    codes = {body(r)["saga_id"]: (body(r)["error_code"], body(r)["retryable"]) for r in failed}
    assert codes == {
        "s1": ("insufficient_stock", False),
        "s2": ("insufficient_funds", False),
        "s3": ("unsupported_destination", False),
    }
    assert "sku-b" in next(body(r)["error"] for r in failed if body(r)["saga_id"] == "s1")
    state = await inspection.snapshot(redis, prefix)
    assert state.stock == dict(SEED.stock)
    assert state.balances == dict(SEED.balances)
    assert (state.reservations, state.charges, state.shipments) == ({}, {}, {})


async def test_a_command_delivered_three_times_takes_effect_once_with_identical_replies(
    services: Services, prefix: str, redis: aioredis.Redis
) -> None:
    s = settings_for(services, prefix)
    async with running(s, PAYMENT), bus(s, TRACED) as b:
        for _ in range(3):
            await b.send(t.PROCESS_PAYMENT, cmd("process_payment", "s1"))
        replies = await b.wait_for(3, t.STEP_COMPLETED)
        await b.send(t.PROCESS_PAYMENT, cmd("process_payment", "s1", attempt=2))
        replies = await b.wait_for(4, t.STEP_COMPLETED)
    assert replies[0].value == replies[1].value == replies[2].value
    retried = body(replies[3])
    assert (retried["attempt"], retried["command_id"]) == (2, "s1:process_payment:a2")
    assert retried["result"] == body(replies[0])["result"]
    assert await inspection.read_balances(redis, prefix) == {**SEED.balances, "alice": 8_000}


async def test_compensation_before_action_leaves_a_tombstone_and_the_late_action_is_refused(
    services: Services, prefix: str, redis: aioredis.Redis
) -> None:
    s = settings_for(services, prefix)
    async with running(s, INVENTORY), bus(s, TRACED) as b:
        await b.send(t.RELEASE_RESERVATION, cmd("reserve_inventory", "s1", attempt=None))
        compensated = await b.wait_for(1, t.COMPENSATION_COMPLETED)
        await b.send(t.RESERVE_ITEMS, cmd("reserve_inventory", "s1"))
        refused = await b.wait_for(1, t.STEP_FAILED)
    assert body(compensated[0])["saga_id"] == "s1"
    assert "command_id" not in body(compensated[0])  # the minimal contract, answered in kind
    assert body(refused[0])["error_code"] == "already_compensated"
    assert body(refused[0])["retryable"] is False
    assert await inspection.read_stock(redis, prefix) == dict(SEED.stock)


async def test_poison_records_are_dead_lettered_and_valid_commands_beside_them_handled(
    services: Services, prefix: str, redis: aioredis.Redis
) -> None:
    s = settings_for(services, prefix)
    async with running(s, INVENTORY), bus(s, TRACED) as b:
        await b.send(t.RESERVE_ITEMS, b"not json", key="s1")
        await b.send(t.RESERVE_ITEMS, cmd("reserve_inventory", "s1"))
        await b.send(t.RESERVE_ITEMS, orjson.dumps({"saga_id": "s1"}), key="s1")
        await b.send(t.RESERVE_ITEMS, cmd("reserve_inventory", "s2"))
        await b.wait_for(2, t.STEP_COMPLETED)
        dead = await b.wait_for(2, t.DEAD_LETTER)
    assert [r.value for r in dead] == [b"not json", orjson.dumps({"saga_id": "s1"})]
    assert [header_value(r.headers, DLQ_ERROR_CODE) for r in dead] == ["not_json", "invalid"]
    assert {header_value(r.headers, DLQ_SOURCE_TOPIC) for r in dead} == {
        s.topics.physical(t.RESERVE_ITEMS)
    }
    assert header_value(dead[0].headers, TRACEPARENT) == TRACE
    assert (await inspection.read_stock(redis, prefix))["sku-a"] == 6


async def test_a_worker_killed_after_its_effect_replies_once_restarted_with_one_effect(
    services: Services, prefix: str, redis: aioredis.Redis
) -> None:
    s = settings_for(services, prefix)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SAGA_TOPIC_PREFIX": prefix,
        "SAGA_KEY_PREFIX": prefix,
        "SAGA_PARTITIONS": "1",
        "SAGA_INVENTORY_CRASH_RATE": "1",  # every fresh effect kills the process
        "SAGA_PARTICIPANT_SEED": "7",
    }

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "saga_worker", "participant", "inventory", cwd=REPO, env=env
        )

    crashed = await start()
    async with bus(s, TRACED) as b:
        await assert_eventually(lambda: b.topic_exists(s.topics.physical(t.RESERVE_ITEMS)))
        await b.send(t.RESERVE_ITEMS, cmd("reserve_inventory", "s1"))
        assert await asyncio.wait_for(crashed.wait(), 60) == CRASH_EXIT_CODE
        assert (await inspection.read_stock(redis, prefix))["sku-a"] == 8
        assert await b.all_sent() == []  # the process is gone: it answered nothing

        restarted = await start()  # the replay is answered from the stored outcome: no crash
        try:
            replies = await b.wait_for(1, t.STEP_COMPLETED)
        finally:
            restarted.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(restarted.wait(), 60)
    assert code == 0
    assert len(replies) == 1
    assert body(replies[0])["command_id"] == "s1:reserve_inventory:a1"
    assert (await inspection.read_stock(redis, prefix))["sku-a"] == 8
