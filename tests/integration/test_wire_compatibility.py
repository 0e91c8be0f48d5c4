"""A participant built with another Kafka client, speaking only the minimal contract."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from participants.app import saga_id_for_order
from participants.inspection import snapshot
from participants.inventory import INVENTORY
from participants.notification import NOTIFICATION
from participants.seed import DEMO_SEED, load_seed
from participants.shipping import shipping_participant
from tests.integration.foreign_payment import ForeignPayment
from tests.integration.saga_support import (
    SagaReader,
    order,
    prepare_topics,
    running_orchestrator,
    running_participants,
    send_orders,
    settings_for,
)
from tests.services import Services


async def test_sagas_complete_and_compensate_through_a_minimal_foreign_participant(
    services: Services, prefix: str, redis_client: aioredis.Redis
) -> None:
    settings = settings_for(services, prefix)
    await prepare_topics(settings)
    seeded = await load_seed(redis_client, prefix, DEMO_SEED)
    beans = [{"sku": "sku-espresso-beans", "quantity": 3, "unit_price": 2490}]
    foreign = ForeignPayment(services.bootstrap_servers, prefix)
    foreign.start()
    try:
        # kafka-python joins its group in its own time; no order goes out before.
        assert await asyncio.to_thread(foreign.assigned.wait, 60)
        ours = (INVENTORY, shipping_participant(), NOTIFICATION)
        async with running_orchestrator(settings), running_participants(settings, ours):
            await send_orders(
                settings.kafka,
                prefix,
                [
                    order("w-ok", customer_id="cust-001", items=beans),
                    order(
                        "w-declined",
                        customer_id="cust-002",
                        items=beans,
                        payment_method="declined_card",
                    ),
                ],
            )
            reader = SagaReader(redis_client, settings)
            await reader.wait_status("w-ok", "completed", within=60)
            failed = await reader.wait_status("w-declined", "failed", within=60)
    finally:
        foreign.stop()
    assert foreign.charged == {saga_id_for_order("w-ok"): 3 * 2490}
    assert "declined" in (failed.error or "")
    stock = (await snapshot(redis_client, prefix)).stock
    # The declined order's reservation was released by compensation; the good one holds 3.
    assert stock["sku-espresso-beans"] == seeded.stock["sku-espresso-beans"] - 3
