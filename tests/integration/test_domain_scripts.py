"""The sample's domain scripts against the real Redis: each checks everything before its
first write, since a Lua script that raises half-way is not rolled back.

Malformed data in Redis (stock or a balance that is not a whole number, a key of the
wrong type) or malformed arguments are a refusal (an action) or a fault (a
compensation, or a broken key), and nothing is written: a retry writes nothing either.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from participants import keys
from participants.inventory import INVENTORY
from participants.notification import NOTIFICATION
from participants.payment import PAYMENT
from participants.seed import SeedData, load_seed
from participants.shipping import shipping_participant
from saga_worker.participant.definition import Participant
from saga_worker.participant.effects import EffectStore, Pending
from saga_worker.participant.protocol import Apply, Compensated, Completed, Failed, Outcome
from saga_worker.wire import SagaCommand
from schemas import MESSAGE_TYPES
from schemas import topics as t

SHIP = shipping_participant(frozenset({"DE"}))
SEED = SeedData(stock={"sku-a": 10, "sku-b": 5}, balances={"alice": 5_000})
TWO_SKUS = [
    {"sku": "sku-a", "quantity": 1, "unit_price": 500},
    {"sku": "sku-b", "quantity": 2, "unit_price": 500},
]
ORDER: dict[str, Any] = {
    "order_id": "o-1",
    "customer_id": "alice",
    "items": TWO_SKUS,
    "payment_method": "card",
    "shipping_address": {"country": "DE", "postal_code": "10115"},
}


def command(topic: str, saga_id: str = "s1", attempt: int = 1, **fields: Any) -> Pending:
    participant = next(p for p in (INVENTORY, PAYMENT, SHIP, NOTIFICATION) if topic in p.routes)
    route = participant.routes[topic]
    body = {**ORDER, "saga_id": saga_id, "step_name": "step", "attempt": attempt, **fields}
    body["command_id"] = f"{saga_id}:{topic}:{attempt}"
    model = MESSAGE_TYPES[topic]
    assert issubclass(model, SagaCommand)
    cmd = model.model_validate(body)
    return Pending(cmd, topic, route.kind, route.prepare(cmd))


def with_args(pending: Pending, args: dict[str, Any]) -> Pending:
    """The command as a user's `prepare` might have got it wrong: these args and effect."""
    assert isinstance(pending.verdict, Apply)
    return replace(pending, verdict=Apply(args=args, result=pending.verdict.result, effect=args))


async def settle(
    redis: aioredis.Redis,
    prefix: str,
    participant: Participant,
    pending: Pending,
    *,
    retention_ms: int = 60_000,
) -> Outcome:
    store = EffectStore(redis, participant, prefix, retention_ms=retention_ms)
    [settled] = await store.settle([pending])
    return settled.outcome


async def text_hash(redis: aioredis.Redis, key: str) -> dict[str, str]:
    """A hash as stored, so a malformed figure shows as it is."""
    raw: dict[Any, Any] = await redis.hgetall(key)
    return {bytes(k).decode(): bytes(v).decode() for k, v in raw.items()}


def refused(outcome: Outcome, code: str) -> str:
    assert isinstance(outcome, Failed), outcome
    assert (outcome.code, outcome.retryable) == (code, False), outcome
    return outcome.error


def faulted(outcome: Outcome) -> str:
    assert isinstance(outcome, Failed), outcome
    assert outcome.retryable, outcome
    return outcome.error


@pytest.mark.parametrize(
    "stored", ["5.5", "1e3", "0x10", " 7", "007", "-3", "lots", "9007199254740993"]
)
async def test_a_reservation_meeting_stock_that_is_not_whole_units_is_refused_moving_nothing(
    redis_client: aioredis.Redis, prefix: str, stored: str
) -> None:
    inv = keys.inventory(prefix)
    await load_seed(redis_client, prefix, SEED)
    await redis_client.hset(inv.stock, "sku-b", stored)
    before = {"sku-a": "10", "sku-b": stored}

    for attempt in (1, 2):  # the retry of a refused step changes nothing either
        outcome = await settle(
            redis_client, prefix, INVENTORY, command(t.RESERVE_ITEMS, attempt=attempt)
        )
        assert await text_hash(redis_client, inv.stock) == before
        assert await redis_client.hgetall(inv.reservations) == {}
        assert "SKU sku-b" in refused(outcome, "invalid_stock")


async def test_a_release_onto_stock_that_is_not_whole_units_faults_until_it_is_repaired(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    inv = keys.inventory(prefix)
    await load_seed(redis_client, prefix, SEED)
    reserved = await settle(redis_client, prefix, INVENTORY, command(t.RESERVE_ITEMS))
    assert isinstance(reserved, Completed)
    await redis_client.hset(inv.stock, "sku-b", "3.5")

    for attempt in (1, 2):
        release = command(t.RELEASE_RESERVATION, attempt=attempt)
        outcome = await settle(redis_client, prefix, INVENTORY, release)
        assert await text_hash(redis_client, inv.stock) == {"sku-a": "9", "sku-b": "3.5"}
        assert list(await text_hash(redis_client, inv.reservations)) == ["s1"]
        error = faulted(outcome)
        assert "invalid_stock" in error
        assert "sku-b" in error

    await redis_client.hset(inv.stock, "sku-b", "3")
    release = command(t.RELEASE_RESERVATION, attempt=3)
    assert await settle(redis_client, prefix, INVENTORY, release) == Compensated()
    assert await text_hash(redis_client, inv.stock) == {"sku-a": "10", "sku-b": "5"}
    assert await redis_client.hgetall(inv.reservations) == {}


@pytest.mark.parametrize(
    ("items", "code"),
    [
        ([["sku-a", 1], ["sku-b", 1.5]], "invalid_quantity"),
        ([["sku-a", 1], ["sku-b", 0]], "invalid_quantity"),
        ([["sku-a", 1], ["sku-b", -4]], "invalid_quantity"),
        ([["sku-a", 1], ["sku-b", "2"]], "invalid_quantity"),
        ([["sku-a", 1], ["sku-b", 2**53 + 2]], "invalid_quantity"),
        ([["sku-a", 1], ["sku-b", 3], ["sku-b", 3]], "insufficient_stock"),  # 6 of 5
    ],
)
async def test_a_quantity_from_a_faulty_prepare_is_checked_before_any_stock_moves(
    redis_client: aioredis.Redis, prefix: str, items: list[Any], code: str
) -> None:
    inv = keys.inventory(prefix)
    await load_seed(redis_client, prefix, SEED)
    pending = with_args(command(t.RESERVE_ITEMS), {"saga_id": "s1", "items": items})
    outcome = await settle(redis_client, prefix, INVENTORY, pending)
    assert await text_hash(redis_client, inv.stock) == {"sku-a": "10", "sku-b": "5"}
    assert await redis_client.hgetall(inv.reservations) == {}
    refused(outcome, code)


async def test_a_charge_meeting_a_balance_that_is_not_whole_minor_units_is_refused_moving_nothing(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    pay = keys.payment(prefix)
    await load_seed(redis_client, prefix, SEED)
    await redis_client.hset(pay.balances, "alice", "5000.5")

    for attempt in (1, 2):
        outcome = await settle(
            redis_client, prefix, PAYMENT, command(t.PROCESS_PAYMENT, attempt=attempt)
        )
        assert "customer alice" in refused(outcome, "invalid_balance")
    bad_amount = with_args(
        command(t.PROCESS_PAYMENT, "s2"), {"saga_id": "s2", "customer_id": "alice", "amount": "1.5"}
    )
    refused(await settle(redis_client, prefix, PAYMENT, bad_amount), "invalid_amount")
    assert await text_hash(redis_client, pay.balances) == {"alice": "5000.5"}
    assert await redis_client.hgetall(pay.charges) == {}


async def test_a_refund_onto_a_balance_that_is_not_whole_minor_units_faults_until_repaired(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    pay = keys.payment(prefix)
    await load_seed(redis_client, prefix, SEED)
    charged = await settle(redis_client, prefix, PAYMENT, command(t.PROCESS_PAYMENT))
    assert isinstance(charged, Completed)  # the order total: 1500
    await redis_client.hset(pay.balances, "alice", "3500.0")

    error = faulted(await settle(redis_client, prefix, PAYMENT, command(t.REFUND_PAYMENT)))
    assert "invalid_balance" in error
    assert await text_hash(redis_client, pay.balances) == {"alice": "3500.0"}
    assert list(await text_hash(redis_client, pay.charges)) == ["s1"]

    await redis_client.hset(pay.balances, "alice", "3500")
    refund = command(t.REFUND_PAYMENT, attempt=2)
    assert await settle(redis_client, prefix, PAYMENT, refund) == Compensated()
    assert await text_hash(redis_client, pay.balances) == {"alice": "5000"}


async def test_an_inventory_or_payment_key_of_the_wrong_type_is_a_fault_with_nothing_written(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    inv, pay = keys.inventory(prefix), keys.payment(prefix)
    await load_seed(redis_client, prefix, SEED)
    await redis_client.set(inv.reservations, "not a hash")
    await redis_client.set(pay.charges, "not a hash")

    reserve = await settle(redis_client, prefix, INVENTORY, command(t.RESERVE_ITEMS))
    charge = await settle(redis_client, prefix, PAYMENT, command(t.PROCESS_PAYMENT))
    assert await text_hash(redis_client, inv.stock) == {"sku-a": "10", "sku-b": "5"}
    assert await text_hash(redis_client, pay.balances) == {"alice": "5000"}
    assert "not a hash" in faulted(reserve)
    assert "not a hash" in faulted(charge)


async def test_a_cancellation_whose_cancelled_key_has_the_wrong_type_keeps_the_shipment(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    ship = keys.shipping(prefix)
    created = await settle(redis_client, prefix, SHIP, command(t.CREATE_SHIPMENT))
    assert isinstance(created, Completed)
    await redis_client.set(ship.cancelled, "not a hash")

    cancelled = await settle(redis_client, prefix, SHIP, command(t.CANCEL_SHIPMENT))
    assert list(await text_hash(redis_client, ship.shipments)) == ["s1"]
    assert "not a hash" in faulted(cancelled)

    await redis_client.delete(ship.cancelled)
    again = command(t.CANCEL_SHIPMENT, attempt=2)
    assert await settle(redis_client, prefix, SHIP, again) == Compensated()
    assert await redis_client.hgetall(ship.shipments) == {}
    assert list(await text_hash(redis_client, ship.cancelled)) == ["s1"]


async def test_a_notice_whose_stream_key_has_the_wrong_type_is_a_fault_marking_nothing_sent(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    note = keys.notification(prefix)
    await redis_client.set(note.notices, "not a stream")
    confirm = command(t.SEND_ORDER_CONFIRMATION)
    assert "not a stream" in faulted(await settle(redis_client, prefix, NOTIFICATION, confirm))
    assert await redis_client.hgetall(note.sent) == {}


async def test_records_that_cannot_expire_are_refused_before_the_domain_body_writes(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    # SAGA_RETENTION_S below a millisecond: SET ... PX 0 would fail after the effect.
    inv = keys.inventory(prefix)
    await load_seed(redis_client, prefix, SEED)
    for attempt in (1, 2):
        reserve = command(t.RESERVE_ITEMS, attempt=attempt)
        outcome = await settle(redis_client, prefix, INVENTORY, reserve, retention_ms=0)
        assert await text_hash(redis_client, inv.stock) == {"sku-a": "10", "sku-b": "5"}
        assert await redis_client.hgetall(inv.reservations) == {}
        assert isinstance(outcome, Failed)
        assert (outcome.code, outcome.retryable) == ("invalid_ttl", True)
