"""The participant scripts against the real Redis: exactly-once effects, tombstones, rules."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from participants import inspection
from participants.inventory import INVENTORY
from participants.notification import NOTIFICATION
from participants.payment import PAYMENT
from participants.seed import SeedData, load_seed
from participants.shipping import shipping_participant, tracking_number
from saga_worker.participant.definition import Participant
from saga_worker.participant.effects import EffectStore, Pending
from saga_worker.participant.protocol import Compensated, Completed, Failed, Fault, Settled
from saga_worker.wire import SagaCommand
from schemas import MESSAGE_TYPES
from schemas import topics as t

SEED = SeedData(stock={"sku-a": 10, "sku-b": 2}, balances={"alice": 5_000, "bob": 100})
ORDER: dict[str, Any] = {
    "order_id": "o-1",
    "customer_id": "alice",
    "items": [{"sku": "sku-a", "quantity": 3, "unit_price": 500}],
    "payment_method": "card",
    "shipping_address": {"country": "DE", "postal_code": "10115"},
}


def command(topic: str, saga_id: str = "s1", attempt: int | None = 1, **fields: Any) -> Pending:
    participant = next(p for p in (INVENTORY, PAYMENT, SHIP, NOTIFICATION) if topic in p.routes)
    route = participant.routes[topic]
    body: dict[str, Any] = {**ORDER, "saga_id": saga_id, "step_name": "step", **fields}
    if attempt is not None:
        body.setdefault("command_id", f"{saga_id}:{topic}:{attempt}")
        body["attempt"] = attempt
    model = MESSAGE_TYPES[topic]
    assert issubclass(model, SagaCommand)
    cmd = model.model_validate(body)
    return Pending(cmd, topic, route.kind, route.prepare(cmd))


SHIP = shipping_participant(frozenset({"DE", "US"}))


async def settle(
    redis: aioredis.Redis, prefix: str, participant: Participant, *pending: Pending
) -> list[Settled]:
    store = EffectStore(redis, participant, prefix, retention_ms=60_000)
    return await store.settle(pending)


async def test_a_command_repeated_in_one_batch_takes_effect_once(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    await load_seed(redis_client, prefix, SEED)
    same = command(t.RESERVE_ITEMS)
    results = await settle(redis_client, prefix, INVENTORY, same, same, same)
    assert [r.fresh for r in results] == [True, False, False]
    assert results[1].outcome == results[0].outcome == results[2].outcome
    assert results[0].outcome == Completed(
        {"reservation_id": "res:s1", "reserved": [{"sku": "sku-a", "quantity": 3}]}
    )
    assert await inspection.read_stock(redis_client, prefix) == {"sku-a": 7, "sku-b": 2}


async def test_a_new_attempt_after_success_answers_the_same_result_without_a_second_effect(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    await load_seed(redis_client, prefix, SEED)
    first = await settle(redis_client, prefix, INVENTORY, command(t.RESERVE_ITEMS, attempt=1))
    second = await settle(redis_client, prefix, INVENTORY, command(t.RESERVE_ITEMS, attempt=2))
    assert second[0].outcome == first[0].outcome
    assert second[0].fresh
    assert (await inspection.read_stock(redis_client, prefix))["sku-a"] == 7


async def test_reserving_is_all_or_nothing_and_names_the_sku(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    await load_seed(redis_client, prefix, SEED)
    items = [
        {"sku": "sku-a", "quantity": 1, "unit_price": 1},
        {"sku": "sku-b", "quantity": 2, "unit_price": 1},
        {"sku": "sku-b", "quantity": 1, "unit_price": 1},
    ]
    short, unknown = await settle(
        redis_client,
        prefix,
        INVENTORY,
        command(t.RESERVE_ITEMS, "s1", items=items),
        command(t.RESERVE_ITEMS, "s2", items=[{"sku": "nope", "quantity": 1, "unit_price": 1}]),
    )
    assert isinstance(short.outcome, Failed)
    assert short.outcome.code == "insufficient_stock"
    assert "sku-b" in short.outcome.error
    assert not short.outcome.retryable
    assert unknown.outcome == Failed("unknown_sku", "unknown SKU nope", False)
    assert await inspection.read_stock(redis_client, prefix) == {"sku-a": 10, "sku-b": 2}
    assert await inspection.read_reservations(redis_client, prefix) == {}


async def test_release_gives_back_exactly_what_was_reserved(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    await load_seed(redis_client, prefix, SEED)
    await settle(redis_client, prefix, INVENTORY, command(t.RESERVE_ITEMS))
    assert await inspection.read_reservations(redis_client, prefix) == {"s1": {"sku-a": 3}}
    lying = {"reserved": [{"sku": "sku-a", "quantity": 99}]}
    release = command(t.RELEASE_RESERVATION, original_result=lying)
    results = await settle(redis_client, prefix, INVENTORY, release, release)
    assert [r.outcome for r in results] == [Compensated(), Compensated()]
    assert await inspection.read_stock(redis_client, prefix) == {"sku-a": 10, "sku-b": 2}
    assert await inspection.read_reservations(redis_client, prefix) == {}
    again = await settle(redis_client, prefix, INVENTORY, command(t.RELEASE_RESERVATION, attempt=2))
    assert again[0].outcome == Compensated()
    assert (await inspection.read_stock(redis_client, prefix))["sku-a"] == 10


async def test_compensation_before_action_leaves_a_tombstone_that_refuses_the_action(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    await load_seed(redis_client, prefix, SEED)
    early = await settle(redis_client, prefix, PAYMENT, command(t.REFUND_PAYMENT))
    late = await settle(redis_client, prefix, PAYMENT, command(t.PROCESS_PAYMENT, amount=100))
    assert early[0].outcome == Compensated()
    assert isinstance(late[0].outcome, Failed)
    assert late[0].outcome.code == "already_compensated"
    assert not late[0].outcome.retryable
    assert await inspection.read_balances(redis_client, prefix) == {"alice": 5_000, "bob": 100}
    assert await inspection.read_charges(redis_client, prefix) == {}


async def test_payment_charges_refunds_and_refuses(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    await load_seed(redis_client, prefix, SEED)
    results = await settle(
        redis_client,
        prefix,
        PAYMENT,
        command(t.PROCESS_PAYMENT, "s1"),  # the order total: 1500
        command(t.PROCESS_PAYMENT, "s2", customer_id="bob"),
        command(t.PROCESS_PAYMENT, "s3", customer_id="carol"),
        command(t.PROCESS_PAYMENT, "s4", payment_method="declined_card"),
    )
    assert results[0].outcome == Completed(
        {"payment_id": "pay:s1", "customer_id": "alice", "amount": 1500}
    )
    codes = [r.outcome.code for r in results[1:] if isinstance(r.outcome, Failed)]
    assert codes == ["insufficient_funds", "unknown_customer", "payment_declined"]
    assert await inspection.read_balances(redis_client, prefix) == {"alice": 3_500, "bob": 100}
    assert await inspection.read_charges(redis_client, prefix) == {
        "s1": inspection.Charge("alice", 1500)
    }
    await settle(redis_client, prefix, PAYMENT, command(t.REFUND_PAYMENT, "s1"))
    assert await inspection.read_balances(redis_client, prefix) == {"alice": 5_000, "bob": 100}
    assert await inspection.read_charges(redis_client, prefix) == {}


async def test_shipping_creates_refuses_and_cancels(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    created, abroad, malformed = await settle(
        redis_client,
        prefix,
        SHIP,
        command(t.CREATE_SHIPMENT, "s1"),
        command(t.CREATE_SHIPMENT, "s2", shipping_address={"country": "FR"}),
        command(t.CREATE_SHIPMENT, "s3", shipping_address={"country": "US", "postal_code": "x1"}),
    )
    assert created.outcome == Completed(
        {"tracking_number": tracking_number("s1"), "carrier": "demo-post"}
    )
    assert isinstance(abroad.outcome, Failed)
    assert abroad.outcome.code == "unsupported_destination"
    assert isinstance(malformed.outcome, Failed)
    assert malformed.outcome.code == "malformed_address"
    assert list(await inspection.read_shipments(redis_client, prefix)) == ["s1"]
    await settle(redis_client, prefix, SHIP, command(t.CANCEL_SHIPMENT, "s1"))
    assert await inspection.read_shipments(redis_client, prefix) == {}
    assert list(await inspection.read_cancelled_shipments(redis_client, prefix)) == ["s1"]


async def test_a_notice_is_recorded_once_per_order(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    results = await settle(
        redis_client,
        prefix,
        NOTIFICATION,
        command(t.SEND_ORDER_CONFIRMATION, "s1"),
        command(t.SEND_ORDER_CONFIRMATION, "s1", attempt=2),
        command(t.SEND_ORDER_CONFIRMATION, "s2"),  # another saga for the same order
        command(t.SEND_CANCELLATION_NOTICE, "s3", order_id="o-2"),
    )
    assert all(isinstance(r.outcome, Completed) for r in results)
    notices = await inspection.read_notices(redis_client, prefix)
    assert [(n.kind, n.order_id, n.saga_id) for n in notices] == [
        ("confirmation", "o-1", "s1"),
        ("cancellation", "o-2", "s3"),
    ]


async def test_minimal_commands_are_deduplicated_by_saga_step_and_topic(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    await load_seed(redis_client, prefix, SEED)
    minimal = command(t.RESERVE_ITEMS, attempt=None)
    assert minimal.command.command_id is None
    first = await settle(redis_client, prefix, INVENTORY, minimal)
    again = await settle(redis_client, prefix, INVENTORY, minimal)
    assert (first[0].fresh, again[0].fresh) == (True, False)
    assert again[0].outcome == first[0].outcome
    assert (await inspection.read_stock(redis_client, prefix))["sku-a"] == 7


async def test_a_fault_changes_nothing_and_is_not_remembered(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    await load_seed(redis_client, prefix, SEED)
    reserve = command(t.RESERVE_ITEMS)
    faulty = Pending(reserve.command, reserve.logical_topic, reserve.kind, Fault("boom", "boom"))
    failed = await settle(redis_client, prefix, INVENTORY, faulty)
    assert failed[0].outcome == Failed("boom", "boom", True)
    assert not failed[0].fresh
    assert (await inspection.read_stock(redis_client, prefix))["sku-a"] == 10
    done = await settle(redis_client, prefix, INVENTORY, reserve)
    assert isinstance(done[0].outcome, Completed)
    assert (await inspection.read_stock(redis_client, prefix))["sku-a"] == 7
