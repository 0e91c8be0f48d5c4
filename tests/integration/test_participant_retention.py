"""Participants' records live SAGA_RETENTION_S, and no longer (issue 12, class 3).

Reservations, charges, shipments, cancellations, sent marks and notices used to be
kept for ever, and so were the trip-booking example's bookings and itineraries. On the
real Redis, with a retention of seconds: the records written before it ran out are
dropped by the next commands (a few per call), with their index entries and stream
entries; the ones written since stay; expired reservations and charges are settled, so
stock and money are still conserved; and round after round, nothing of a participant
grows.

Every record lives the retention plus a grace of one second (prologue.lua's
`retention`), so that it outlives its step's effect record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from examples.trip_booking import topics as trip
from examples.trip_booking.bookings import BOOKINGS, BookingKeys, open_for_booking
from examples.trip_booking.itineraries import ITINERARIES, ItineraryKeys
from examples.trip_booking.saga import TRIP_BOOKING
from participants import inspection, keys
from participants.conservation import conservation_violations
from participants.inventory import INVENTORY
from participants.notification import NOTIFICATION
from participants.seed import SeedData, load_seed
from saga_worker.participant.definition import Participant
from saga_worker.participant.effects import EffectStore, Pending
from saga_worker.participant.protocol import Apply, Compensated, Completed, Failed, Outcome
from saga_worker.participant.runtime import settler_for
from saga_worker.wire import SagaCommand
from schemas import MESSAGE_TYPES
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.kafka_state import wait_caught_up
from tests.integration.saga_support import (
    Bus,
    bus,
    inbound,
    running_participants,
    settings_for,
)
from tests.services import Services

GRACE_MS = 1_000  # prologue.lua: a record lives the retention and this grace
SEED = SeedData(stock={"sku-a": 1_000}, balances={"alice": 1_000_000})
UNITS, AMOUNT = 2, 2_000  # what each order below reserves and charges
PARTICIPANTS = (keys.INVENTORY, keys.PAYMENT, keys.SHIPPING, keys.NOTIFICATION)


def order_command(topic: str, saga_id: str, step: str, **fields: Any) -> dict[str, Any]:
    """A command as the orchestrator sends it; compensations get their own command id."""
    return {
        "saga_id": saga_id,
        "step_name": step,
        "command_id": f"{saga_id}:{topic}",
        "attempt": 1,
        "order_id": f"order-{saga_id}",
        "customer_id": "alice",
        "items": [{"sku": "sku-a", "quantity": UNITS, "unit_price": AMOUNT // UNITS}],
        "payment_method": "card",
        "shipping_address": {"country": "DE", "city": "Berlin", "postal_code": "10115"},
        **fields,
    }


async def redis_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def wait_past_the_retention(redis: aioredis.Redis, written_by_ms: int, ttl_ms: int) -> None:
    """Until Redis's clock says what was written by `written_by_ms` has outlived its life."""
    await assert_eventually(
        lambda: redis_ms(redis),
        lambda now: now > written_by_ms + ttl_ms + GRACE_MS,
        within=ttl_ms / 1000 + 10,
        message="past the retention",
    )


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def members(redis: aioredis.Redis, key: str) -> set[str]:
    return {text(m) for m in await redis.zrange(key, 0, -1)}


async def fields(redis: aioredis.Redis, key: str) -> set[str]:
    return {text(f) for f in await redis.hkeys(key)}


async def score(redis: aioredis.Redis, key: str, member: str) -> float:
    found = await redis.zscore(key, member)
    assert found is not None, (key, member)
    return float(found)


async def keys_of(redis: aioredis.Redis, prefix: str, participant: str) -> dict[str, int]:
    """Every key under the participant's hash tag, with its PTTL (-1: kept for good); a
    key that expired between the scan and its PTTL is left out."""
    found = [k async for k in redis.scan_iter(match=f"{prefix}{{{participant}}}:*", count=500)]
    ttls = {bytes(k).decode(): int(await redis.pttl(k)) for k in found}
    return {key: ttl for key, ttl in ttls.items() if ttl != -2}


class Rounds:
    """Each round: some orders done (reserved, charged, shipped, confirmed) and some undone
    (reserved, charged and shipped, then released, refunded, cancelled and told so)."""

    def __init__(self, b: Bus) -> None:
        self.bus = b
        self.completed_replies = 0
        self.compensated_replies = 0

    async def run(self, done: Sequence[str], undone: Sequence[str]) -> None:
        b = self.bus
        for saga in (*done, *undone):
            await b.send(t.RESERVE_ITEMS, order_command(t.RESERVE_ITEMS, saga, "reserve"))
            await b.send(t.PROCESS_PAYMENT, order_command(t.PROCESS_PAYMENT, saga, "pay"))
            await b.send(t.CREATE_SHIPMENT, order_command(t.CREATE_SHIPMENT, saga, "ship"))
        for saga in done:
            confirm = order_command(t.SEND_ORDER_CONFIRMATION, saga, "confirm")
            await b.send(t.SEND_ORDER_CONFIRMATION, confirm)
        self.completed_replies += 3 * (len(done) + len(undone)) + len(done)
        await b.wait_for(self.completed_replies, t.STEP_COMPLETED)
        # Compensations only once their actions are done: one arriving first would leave
        # a tombstone instead of a cancelled shipment.
        for saga in undone:
            await b.send(
                t.RELEASE_RESERVATION, order_command(t.RELEASE_RESERVATION, saga, "reserve")
            )
            await b.send(t.REFUND_PAYMENT, order_command(t.REFUND_PAYMENT, saga, "pay"))
            await b.send(t.CANCEL_SHIPMENT, order_command(t.CANCEL_SHIPMENT, saga, "ship"))
            notice = order_command(t.SEND_CANCELLATION_NOTICE, saga, "tell")
            await b.send(t.SEND_CANCELLATION_NOTICE, notice)
        self.completed_replies += len(undone)
        self.compensated_replies += 3 * len(undone)
        await b.wait_for(self.completed_replies, t.STEP_COMPLETED)
        await b.wait_for(self.compensated_replies, t.COMPENSATION_COMPLETED)


async def test_records_outliving_the_retention_are_dropped_and_nothing_grows_round_after_round(
    services: Services, prefix: str, redis_client: aioredis.Redis
) -> None:
    # Each round must run within the retention (checked below): three seconds leave a
    # slow machine room, where one second did not.
    settings = settings_for(services, prefix, saga_retention_s=3.0)
    ttl_ms = 3_000
    await load_seed(redis_client, prefix, SEED)
    inv, pay = keys.inventory(prefix), keys.payment(prefix)
    ship, note = keys.shipping(prefix), keys.notification(prefix)
    completed: set[str] = set()
    failed: set[str] = set()
    kept_for_good: list[set[str]] = []
    async with running_participants(settings) as workers, bus(settings) as b:
        rounds = Rounds(b)
        written_by = 0
        for n in range(1, 4):
            if n > 1:
                await wait_past_the_retention(redis_client, written_by, ttl_ms)
            done = [f"r{n}-done-{i}" for i in range(4)]
            undone = [f"r{n}-undone-{i}" for i in range(2)]
            started = await redis_ms(redis_client)
            await rounds.run(done, undone)
            written_by = await redis_ms(redis_client)
            # Else this round's first records would be dropped by its own last commands.
            assert written_by - started < ttl_ms + GRACE_MS, "a round outlasted its records"
            # Every command committed, so every reply is in: none of them a failure.
            await wait_caught_up(settings.kafka, inbound(settings, participants=workers))
            step_failed = settings.topics.physical(t.STEP_FAILED)
            assert [r.value for r in await b.all_sent() if r.topic == step_failed] == []
            completed |= set(done)
            failed |= set(undone)

            # This round's records, and none of the rounds before: hashes and indexes alike.
            state = await inspection.snapshot(redis_client, prefix)
            assert set(state.reservations) == set(done)
            assert set(state.charges) == set(done)
            assert set(state.shipments) == set(done)
            assert set(state.cancelled_shipments) == set(undone)
            assert await members(redis_client, inv.reservations_written) == set(done)
            assert await members(redis_client, pay.charges_written) == set(done)
            assert await members(redis_client, ship.shipments_written) == set(done)
            assert await members(redis_client, ship.cancelled_written) == set(undone)
            marks = {f"confirmation:order-{s}" for s in done}
            marks |= {f"cancellation:order-{s}" for s in undone}
            assert await fields(redis_client, note.sent) == marks
            assert await members(redis_client, note.sent_written) == marks
            assert sorted((n.kind, n.saga_id) for n in state.notices) == sorted(
                [("confirmation", s) for s in done] + [("cancellation", s) for s in undone]
            )
            assert await redis_client.xlen(note.notices) == len(done) + len(undone)

            # What was dropped is accounted for, so stock and money are still conserved
            # and no completed saga's dropped shipment or notice counts as lost.
            before = n - 1
            assert state.settled_stock == ({"sku-a": 4 * UNITS * before} if before else {})
            assert state.settled_charges == ({"alice": 4 * AMOUNT * before} if before else {})
            dropped = {"shipments": 4, "cancelled": 2, "notices": 6, "sent": 6}
            assert state.trimmed == {k: v * before for k, v in dropped.items() if before}
            assert conservation_violations(SEED, state, completed, failed) == []

            # Bounded: the keys kept for good are the same few from the second round on;
            # every other key of a participant (replies, effect records) expires.
            kept = set()
            for participant in PARTICIPANTS:
                for key, pttl in (await keys_of(redis_client, prefix, participant)).items():
                    if pttl == -1:
                        kept.add(key)
                    else:
                        assert 0 < pttl <= ttl_ms, (key, pttl)
            kept_for_good.append(kept)
    assert kept_for_good[1] == kept_for_good[2]
    assert kept_for_good[2] == {
        inv.stock,
        inv.reservations,
        inv.reservations_written,
        inv.settled,
        pay.balances,
        pay.charges,
        pay.charges_written,
        pay.settled,
        ship.shipments,
        ship.shipments_written,
        ship.cancelled,
        ship.cancelled_written,
        ship.trimmed,
        note.notices,
        note.sent,
        note.sent_written,
        note.trimmed,
    }


# -- one call at a time, on the effect store -------------------------------------------


def pending(participant: Participant, topic: str, saga_id: str, **fields: Any) -> Pending:
    route = participant.routes[topic]
    model = MESSAGE_TYPES[topic]
    assert issubclass(model, SagaCommand)
    command = model.model_validate(order_command(topic, saga_id, "step", **fields))
    return Pending(command, topic, route.kind, route.prepare(command))


async def settle(
    redis: aioredis.Redis, prefix: str, participant: Participant, *batch: Pending, ttl_ms: int
) -> list[Outcome]:
    store = EffectStore(redis, participant, prefix, retention_ms=ttl_ms)
    return [s.outcome for s in await store.settle(batch)]


async def test_a_backlog_goes_a_few_records_per_call_and_an_unreadable_one_is_kept(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    inv = keys.inventory(prefix)
    await load_seed(redis_client, prefix, SEED)
    old = [f"s{i}" for i in range(10)]
    reserve = [pending(INVENTORY, t.RESERVE_ITEMS, s) for s in old]
    assert all(
        isinstance(o, Completed)
        for o in await settle(redis_client, prefix, INVENTORY, *reserve, ttl_ms=1)
    )
    # The last one cannot be read back: it cannot be settled, and must not be lost.
    await redis_client.hset(inv.reservations, "s9", "not json")
    await wait_past_the_retention(redis_client, await redis_ms(redis_client), 1)

    first_written = await score(redis_client, inv.reservations_written, "s9")

    left = []
    for call in range(4):  # each call settles at most 4 of the expired reservations
        new = pending(INVENTORY, t.RESERVE_ITEMS, f"n{call}")
        await settle(redis_client, prefix, INVENTORY, new, ttl_ms=1)
        left.append(sorted((await fields(redis_client, inv.reservations)) & set(old)))
    assert left == [old[4:], old[8:], ["s9"], ["s9"]]
    assert await members(redis_client, inv.reservations_written) == {"s9", "n0", "n1", "n2", "n3"}
    # s9 was set aside for another retention: indexed again, not dropped.
    assert await score(redis_client, inv.reservations_written, "s9") > first_written
    state = await inspection.read_stock(redis_client, prefix)
    assert state == {"sku-a": 1_000 - 14 * UNITS}
    assert await redis_client.hgetall(inv.settled) == {b"sku-a": str(9 * UNITS).encode()}


async def test_a_backlog_of_notices_goes_by_whole_stream_nodes(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    note = keys.notification(prefix)
    old = [pending(NOTIFICATION, t.SEND_ORDER_CONFIRMATION, f"s{i}") for i in range(150)]
    await settle(redis_client, prefix, NOTIFICATION, *old, ttl_ms=1)
    assert await redis_client.xlen(note.notices) == 150
    await wait_past_the_retention(redis_client, await redis_ms(redis_client), 1)

    first = pending(NOTIFICATION, t.SEND_ORDER_CONFIRMATION, "n0")
    await settle(redis_client, prefix, NOTIFICATION, first, ttl_ms=1)
    # Whole nodes of expired entries went at once (Redis keeps up to 100 entries in a
    # node), more than the 4 entries a call deletes one by one.
    assert await redis_client.xlen(note.notices) < 1 + 150 - 4
    news = [pending(NOTIFICATION, t.SEND_ORDER_CONFIRMATION, f"n{i}") for i in range(1, 40)]
    await settle(redis_client, prefix, NOTIFICATION, *news, ttl_ms=1)
    sagas = [n.saga_id for n in await inspection.read_notices(redis_client, prefix)]
    assert sagas == [f"n{i}" for i in range(40)]
    assert await redis_client.hlen(note.sent) == 40
    trimmed = await redis_client.hgetall(note.trimmed)
    assert trimmed == {b"notices": b"150", b"sent": b"150"}


# -- the library's helper, in a domain body of one's own ---------------------------------

LEDGER_LUA = """
-- KEYS[3] entries HASH saga_id -> effect JSON, KEYS[4] their index ZSET, KEYS[5] what
-- the last call trimmed, and the ttl it was given.
local ENTRIES, WRITTEN, LAST = KEYS[3], KEYS[4], KEYS[5]
local trimmed = retention.trim(ENTRIES, WRITTEN, 2)
redis.call('SET', LAST, cjson.encode({trimmed, retention.ttl_ms}))

local function apply(args, effect_json)
  retention.keep(ENTRIES, WRITTEN, args.saga_id, effect_json)
  return true
end

local function undo(effect, _)
  retention.drop(ENTRIES, WRITTEN, effect.saga_id)
end
"""


LEDGER = Participant(
    name="ledger",
    routes=dict(INVENTORY.routes),
    script=LEDGER_LUA,
    domain_keys=lambda p: tuple(f"{p}{{ledger}}:{name}" for name in ("entries", "written", "last")),
)


def entry(saga_id: str, topic: str = t.RESERVE_ITEMS) -> Pending:
    p = pending(INVENTORY, topic, saga_id)
    verdict = Apply(args={"saga_id": saga_id}, effect={"saga_id": saga_id})
    return Pending(p.command, p.logical_topic, p.kind, verdict)


async def test_a_domain_body_of_ones_own_keeps_and_trims_its_records_with_the_helper(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    book = LEDGER
    entries, written, last = book.domain_keys(prefix)
    batch = [entry(s) for s in ("a", "b", "c", "x")]
    await settle(redis_client, prefix, book, *batch, ttl_ms=60_000)
    await settle(redis_client, prefix, book, entry("x", t.RELEASE_RESERVATION), ttl_ms=60_000)
    assert await fields(redis_client, entries) == {"a", "b", "c"}
    assert await members(redis_client, written) == {"a", "b", "c"}
    await wait_past_the_retention(redis_client, await redis_ms(redis_client), 5)

    # Past their life under the ttl the call is given (SAGA_RETENTION_S as it is now).
    await settle(redis_client, prefix, book, entry("d"), ttl_ms=5)
    assert orjson.loads(text(await redis_client.get(last))) == [2, 5]
    assert await fields(redis_client, entries) == {"c", "d"}
    await settle(redis_client, prefix, book, entry("e"), ttl_ms=5)
    assert await fields(redis_client, entries) == {"d", "e"}
    assert await members(redis_client, written) == {"d", "e"}

    # An index of the wrong type: refused before anything is written.
    await redis_client.delete(written)
    await redis_client.set(written, "not a sorted set")
    [outcome] = await settle(redis_client, prefix, book, entry("f"), ttl_ms=5)
    assert isinstance(outcome, Failed)
    assert outcome.retryable
    assert "not a zset" in outcome.error
    assert await fields(redis_client, entries) == {"d", "e"}


# -- the trip-booking example's records -----------------------------------------------

FLIGHT, HOTEL = "LH1234-2025-06-01", "hotel-alpenrose"
STEP_OF = {  # topic -> its step: a cancel finds the effect record of its booking's step
    topic: name
    for name, step in TRIP_BOOKING.steps.items()
    for topic in (step.command_topic, step.compensation_topic)
    if topic is not None
}


def trip_command(participant: Participant, topic: str, saga_id: str) -> Pending:
    route = participant.routes[topic]
    command = route.model.model_validate(
        {
            "saga_id": saga_id,
            "step_name": STEP_OF[topic],
            "command_id": f"{saga_id}:{topic}",
            "attempt": 1,
            "trip_id": f"trip-{saga_id}",
            "traveller": {"name": "Ada Lovelace", "email": "ada@example.org"},
            "flight": FLIGHT,
            "hotel": HOTEL,
        }
    )
    return Pending(command, topic, route.kind, route.prepare(command))


async def test_the_trip_examples_bookings_and_itineraries_outliving_the_retention_are_dropped(
    services: Services, prefix: str, redis_client: aioredis.Redis
) -> None:
    settings = settings_for(services, prefix, saga_retention_s=1.0)
    ttl_ms = int(settings.retention.total_seconds() * 1000)
    # The stores the participant workers settle their batches through, as they make them.
    bookings = settler_for(BOOKINGS, redis_client, settings.saga_key_prefix, ttl_ms)
    itineraries = settler_for(ITINERARIES, redis_client, settings.saga_key_prefix, ttl_ms)
    booked, sent = BookingKeys.under(prefix), ItineraryKeys.under(prefix)
    await open_for_booking(redis_client, prefix, seats={FLIGHT: 10}, rooms={HOTEL: 10})

    async def trips(*sagas: str, cancel_hotel: Sequence[str] = ()) -> None:
        books = [(s, topic) for s in sagas for topic in (trip.BOOK_FLIGHT, trip.BOOK_HOTEL)]
        batch = [trip_command(BOOKINGS, topic, s) for s, topic in books]
        batch += [trip_command(BOOKINGS, trip.CANCEL_HOTEL, s) for s in cancel_hotel]
        outcomes = [type(settled.outcome) for settled in await bookings.settle(batch)]
        assert outcomes == [Completed] * len(books) + [Compensated] * len(cancel_hotel)
        sends = [trip_command(ITINERARIES, trip.SEND_ITINERARY, s) for s in sagas]
        assert all(isinstance(s.outcome, Completed) for s in await itineraries.settle(sends))

    async def left() -> tuple[int, int]:
        seats = await redis_client.hget(booked.seats, FLIGHT)
        rooms = await redis_client.hget(booked.rooms, HOTEL)
        return int(seats or -1), int(rooms or -1)

    await trips("o0", "o1", "o2", cancel_hotel=["o2"])
    old = {"o0/flight", "o0/hotel", "o1/flight", "o1/hotel", "o2/flight"}
    assert await fields(redis_client, booked.booked) == old
    assert await members(redis_client, booked.booked_written) == old
    assert await fields(redis_client, sent.sent) == {"trip-o0", "trip-o1", "trip-o2"}
    assert await members(redis_client, sent.sent_written) == {"trip-o0", "trip-o1", "trip-o2"}
    assert await left() == (7, 8)
    await wait_past_the_retention(redis_client, await redis_ms(redis_client), ttl_ms)

    # Two booking calls drop up to 4 expired bookings each, one itinerary call up to 4.
    await trips("n0")
    assert await fields(redis_client, booked.booked) == {"n0/flight", "n0/hotel"}
    assert await members(redis_client, booked.booked_written) == {"n0/flight", "n0/hotel"}
    assert await fields(redis_client, sent.sent) == {"trip-n0"}
    assert await members(redis_client, sent.sent_written) == {"trip-n0"}
    assert await left() == (6, 7)  # what expired stays booked: no cancel can come for it

    # An index of the wrong type: refused before the seat is taken.
    await redis_client.delete(booked.booked_written)
    await redis_client.set(booked.booked_written, "not a sorted set")
    [settled] = await bookings.settle([trip_command(BOOKINGS, trip.BOOK_FLIGHT, "n1")])
    assert isinstance(settled.outcome, Failed)
    assert settled.outcome.retryable
    assert "not a zset" in settled.outcome.error
    assert await left() == (6, 7)
    assert await fields(redis_client, booked.booked) == {"n0/flight", "n0/hotel"}
