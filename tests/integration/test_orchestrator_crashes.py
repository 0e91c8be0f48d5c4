"""Orchestrator processes killed with SIGKILL, and stopped mid-run, lose and double nothing."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from redis.asyncio import Redis

from participants.app import saga_id_for_order
from tests.eventually import assert_eventually
from tests.integration.kafka_state import wait_assigned
from tests.integration.saga_support import (
    OrchestratorProcess,
    SagaReader,
    ScriptedParticipants,
    order,
    prepare_topics,
    send_orders,
    settings_for,
)
from tests.services import Services


async def supervise(procs: list[OrchestratorProcess], until: asyncio.Event) -> None:
    """Restarts any orchestrator that died, as a process supervisor would."""
    while not until.is_set():
        for proc in procs:
            if not proc.alive:
                proc.start()
        await asyncio.sleep(0.05)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("point", ["after_save", "after_publish"])
async def test_killed_orchestrators_finish_every_saga_with_one_effect_each(
    services: Services, prefix: str, redis_client: Redis, point: str
) -> None:
    # A kill after the save leaves the batch's outbox to the sweeper of the next instance.
    settings = settings_for(services, prefix, saga_batch_size=5, saga_outbox_sweep_after_s=1.0)
    await prepare_topics(settings)
    crashing = OrchestratorProcess(
        settings,
        {
            "SAGA_CRASH_POINT": point,
            "SAGA_CRASH_PROBABILITY": "0.25",  # at least one kill in ~24 batches: 1 - 0.75**24
            "SAGA_INSTANCE_ID": "orchestrator-1",  # a restart takes its partitions straight back
        },
    )
    orders = [f"k-{i}" for i in range(30)]
    scripted = ScriptedParticipants(settings.kafka, prefix)
    done = asyncio.Event()
    async with scripted.running():
        supervisor = asyncio.create_task(supervise([crashing], done))
        try:
            await send_orders(settings.kafka, prefix, [order(o) for o in orders])
            reader = SagaReader(redis_client, settings)
            await assert_eventually(
                lambda: reader.statuses(orders),
                lambda c: c["completed"] == len(orders),
                within=180,
                message="every saga completed",
            )
        finally:
            done.set()
            await supervisor
            crashing.kill()
    assert crashing.starts > 1, "the fault injection never fired"
    # Each step of each saga was commanded under exactly one command id: the
    # replays after a kill resent at most the same command, never a new one.
    assert scripted.effects() == Counter(
        {(saga_id_for_order(o), topic): 1 for o in orders for topic in FORWARD_TOPICS}
    )


SAGA = "OrderFulfillment"
FORWARD_TOPICS = (
    "InventoryService.ReserveItems",
    "PaymentService.ProcessPayment",
    "ShippingService.CreateShipment",
    "NotificationService.SendOrderConfirmation",
)


@pytest.mark.timeout(240)
async def test_two_instances_share_six_partitions_and_survive_one_stopping(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix, saga_partitions=6)
    await prepare_topics(settings)
    first, second = OrchestratorProcess(settings), OrchestratorProcess(settings)
    group = settings.group_id("orchestrator")
    orders = [f"p-{i}" for i in range(500)]
    scripted = ScriptedParticipants(settings.kafka, prefix)
    reader = SagaReader(redis_client, settings)
    async with scripted.running():
        first.start()
        second.start()
        try:
            await first.wait_ready()
            await second.wait_ready()
            # Both in the group, each holding partitions, before the first order.
            await wait_assigned(settings.kafka, {group: 2})
            await send_orders(settings.kafka, prefix, [order(o) for o in orders])
            await assert_eventually(
                lambda: reader.statuses(orders), lambda c: c["completed"] >= 250, within=120
            )
            # Each read orders from its partitions of OrderCreated and started their sagas.
            started = [
                await p.metric("saga_worker_sagas_started_total", definition=SAGA)
                for p in (first, second)
            ]
            assert all(n > 0 for n in started), started
            assert second.terminate() == 0  # SIGTERM: drains, commits, exits 0
            await wait_assigned(settings.kafka, {group: 1})  # the first took every partition
            await assert_eventually(
                lambda: reader.statuses(orders),
                lambda c: c["completed"] == len(orders),
                within=120,
                message="every saga completed",
            )
        finally:
            first.kill()
            second.kill()
    assert scripted.effects() == Counter(
        {(saga_id_for_order(o), topic): 1 for o in orders for topic in FORWARD_TOPICS}
    )
