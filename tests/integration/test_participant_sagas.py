"""The real orchestrator with the real participants: outcomes and conservation."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any

from participants.app import saga_id_for_order
from participants.conservation import conservation_violations
from participants.inspection import snapshot
from participants.seed import DEMO_SEED, load_seed
from saga_worker.engine.retry import RetryPolicy
from saga_worker.errors import StoreUnavailableError
from saga_worker.participant.knobs import Knobs
from tests.eventually import assert_eventually
from tests.integration.saga_support import (
    SagaReader,
    fast_fulfillment,
    running_orchestrator,
    running_participants,
    send_orders,
    settings_for,
)
from tests.services import Services, redis_client_for

PATIENT_COMPENSATION = RetryPolicy(
    max_attempts=None,
    initial_backoff=timedelta(milliseconds=50),
    multiplier=2.0,
    max_backoff=timedelta(milliseconds=200),
    jitter=0.0,
)
DEFINITION = dataclasses.replace(fast_fulfillment(), compensation_retry=PATIENT_COMPENSATION)
ENDED = {"completed", "failed"}


def order(n: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": f"order-{n}",
        "customer_id": f"cust-{n % 50 + 1:03d}",
        "items": [
            {"sku": "sku-espresso-beans", "quantity": 2, "unit_price": 2490},
            {"sku": "sku-ceramic-mug", "quantity": 1, "unit_price": 1490},
        ],
        "payment_method": "card",
        "shipping_address": {"line1": "1 Main St", "city": "Lyon", "country": "FR"},
    }
    return {**body, **changes}


FAILING = [
    order(101, items=[{"sku": "sku-limited-dripper", "quantity": 5, "unit_price": 8900}]),
    order(102, customer_id="cust-broke"),
    order(103, shipping_address={"country": "AQ"}),
    order(104, payment_method="declined_card"),
    order(105, items=[{"sku": "sku-unknown", "quantity": 1, "unit_price": 1}]),
]


def knobs_for(knobs: Knobs | None) -> dict[str, Knobs]:
    if knobs is None:
        return {}
    # The confirmation comes after the pivot and must not fail for good: errors only.
    notices = dataclasses.replace(knobs, business_failure_rate=0.0)
    return {**dict.fromkeys(("inventory", "payment", "shipping"), knobs), "notification": notices}


async def run_orders(
    services: Services, prefix: str, orders: list[dict[str, Any]], knobs: Knobs | None = None
) -> tuple[set[str], set[str], list[str]]:
    s = settings_for(services, prefix)
    redis = redis_client_for(services.redis_url)
    try:
        seeded = await load_seed(redis, prefix, DEMO_SEED)
        reader = SagaReader(redis, s)
        async with (
            running_orchestrator(s, DEFINITION),
            running_participants(s, knobs=knobs_for(knobs)),
        ):
            await send_orders(s.kafka, prefix, orders)
            ids = [o["order_id"] for o in orders]

            async def statuses() -> Counter[str]:
                try:
                    return await reader.statuses(ids)
                except StoreUnavailableError:  # a slow moment of a shared Redis; ask again
                    return Counter()

            await assert_eventually(
                statuses,
                lambda c: set(c) <= ENDED and sum(c.values()) == len(ids),
                within=90,
                message="every saga ended",
            )
        completed: set[str] = set()
        failed: set[str] = set()
        for o in orders:
            state = await reader.state(o["order_id"])
            assert state is not None
            saga_id = saga_id_for_order(o["order_id"])
            (completed if state.status.value == "completed" else failed).add(saga_id)
        problems = conservation_violations(seeded, await snapshot(redis, prefix), completed, failed)
        return completed, failed, problems
    finally:
        await redis.aclose()


async def test_orders_complete_or_fail_and_nothing_is_created_or_lost(
    services: Services, prefix: str
) -> None:
    good = [order(n) for n in range(1, 9)]
    completed, failed, problems = await run_orders(services, prefix, good + FAILING)
    assert problems == []
    assert completed == {saga_id_for_order(o["order_id"]) for o in good}
    assert failed == {saga_id_for_order(o["order_id"]) for o in FAILING}


async def test_conservation_holds_under_injected_errors_and_business_failures(
    services: Services, prefix: str
) -> None:
    knobs = Knobs(error_rate=0.2, business_failure_rate=0.05, seed=11)
    good = [order(n) for n in range(1, 13)]
    completed, failed, problems = await run_orders(services, prefix, good + FAILING, knobs)
    assert problems == []
    assert len(completed) + len(failed) == len(good) + len(FAILING)
    assert completed  # with these odds most orders still go through
