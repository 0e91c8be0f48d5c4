"""Two saga types in one orchestrator, on the real Kafka and Redis: the order-fulfillment
sample and the trip-booking example (`tests.integration.two_sagas:app`), run side by side,
then operated with the CLI run for real."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from examples.trip_booking import topics as trip_topics
from examples.trip_booking.app import GATEWAY, TRIPS
from examples.trip_booking.app import app as TRIP_APP
from examples.trip_booking.bookings import BookingKeys, open_for_booking
from examples.trip_booking.card_gateway import Charge
from examples.trip_booking.itineraries import ItineraryKeys
from examples.trip_booking.messages import TripBooked, TripFailed
from participants.app import saga_id_for_order
from participants.seed import load_seed
from saga_worker import (
    STEP_COMPLETED,
    RedisSagaStore,
    SagaState,
    Settings,
    WorkerProcess,
    make_producer,
)
from saga_worker.participant.runtime import ParticipantWorker
from saga_worker.runtime.kafka_admin import kafka_admin
from saga_worker.runtime.kafka_clients import KafkaConnection
from saga_worker.runtime.orchestrator import Orchestrator
from saga_worker.runtime.run import participant_worker
from schemas import topics as order_topics
from tests.eventually import assert_eventually
from tests.integration.kafka_state import wait_assigned
from tests.integration.saga_support import (
    Run,
    cli,
    one_error_line,
    order,
    role_of,
    send_orders,
    settings_for,
    started,
    worker_env,
)
from tests.integration.two_sagas import app
from tests.readme import run_block
from tests.services import Services

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.two_sagas:app"
FLIGHT = "LH1234-2025-06-01"
HOTEL = "hotel-alpenrose"
AMOUNT = 84_900
TRIP_TOPICS = [v for k, v in vars(trip_topics).items() if k.isupper()]
ORDER_PARTICIPANTS = ("inventory", "payment", "shipping", "notification")


def trip(trip_id: str, card: str = "tok_visa", email: str = "ada@example.org") -> dict[str, Any]:
    return {
        "trip_id": trip_id,
        "traveller": {"name": "Ada Lovelace", "email": email},
        "flight": FLIGHT,
        "hotel": HOTEL,
        "amount": AMOUNT,
        "currency": "EUR",
        "card": card,
    }


def an_order(order_id: str, payment_method: str = "card") -> dict[str, Any]:
    return order(
        order_id,
        customer_id="cust-001",
        items=[{"sku": "sku-espresso-beans", "quantity": 1, "unit_price": 2490}],
        payment_method=payment_method,
        shipping_address={
            "line1": "1 Rue X",
            "city": "Lyon",
            "postal_code": "69001",
            "country": "FR",
        },
    )


async def send_trips(conn: KafkaConnection, prefix: str, bodies: list[dict[str, Any]]) -> None:
    producer = make_producer(conn)
    await producer.start()
    try:
        for body in bodies:
            await producer.send_and_wait(
                prefix + trip_topics.TRIP_REQUESTED,
                orjson.dumps(body),
                key=body["trip_id"].encode(),
            )
    finally:
        await producer.stop()


# -- the workers ------------------------------------------------------------------------------


def two_sagas_process(settings: Settings, logs: Path, *command: str) -> WorkerProcess:
    """`python -m saga_worker <command> --app tests.integration.two_sagas:app`."""
    return WorkerProcess(
        command[-1], (*command, "--app", APP), worker_env(settings), logs / f"{command[-1]}.log"
    )


def roles_of(worker: WorkerProcess) -> list[str]:
    """The roles (consumer groups) a worker process runs: `all` runs the whole app's."""
    if worker.name == "all":
        return ["orchestrator", *(f"participant.{n}" for n in TRIP_APP.participant_names)]
    return [role_of(worker.name)]


@contextlib.asynccontextmanager
async def in_process(settings: Settings, *names: str) -> AsyncIterator[list[ParticipantWorker]]:
    """Participants of the app in this process (so the test can look at the card gateway)."""
    workers = [participant_worker(app, name, settings) for name in names]
    tasks = [asyncio.create_task(w.run()) for w in workers]

    async def all_started() -> bool:
        for task in tasks:
            if task.done():
                task.result()  # a worker that died while starting: its error, not a timeout
        return all(w.ready for w in workers)

    try:
        await assert_eventually(all_started, within=30, message="participants started")
        await wait_assigned(settings.kafka, {w.group_id: 1 for w in workers})
        yield workers
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)


@contextlib.asynccontextmanager
async def orchestrating(settings: Settings) -> AsyncIterator[Orchestrator]:
    worker = Orchestrator(settings, app)
    task = asyncio.create_task(worker.run())

    async def ready() -> bool:
        if task.done():
            task.result()
        return worker.ready

    try:
        await assert_eventually(ready, within=30, message="orchestrator ready")
        await wait_assigned(settings.kafka, {settings.group_id("orchestrator"): 1})
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)


# -- looking at the outcome ---------------------------------------------------------------------


class Sagas:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.store = RedisSagaStore(redis, settings.keys)

    async def state(self, saga_id: str) -> SagaState | None:
        return (await self.store.load({saga_id: []}))[saga_id].state

    async def wait(self, saga_id: str, status: str, within: float = 30) -> SagaState:
        found = await assert_eventually(
            lambda: self.state(saga_id),
            lambda s: s is not None and s.status.value == status,
            within=within,
            message=f"saga {saga_id} {status}",
        )
        assert found is not None
        return found


async def left(redis: Redis, prefix: str) -> tuple[int, int]:
    """Seats left on FLIGHT and rooms left in HOTEL."""
    k = BookingKeys.under(prefix)
    seats, rooms = await redis.hget(k.seats, FLIGHT), await redis.hget(k.rooms, HOTEL)
    return int(seats or -1), int(rooms or -1)


async def records(
    conn: KafkaConnection,
    topic: str,
    wanted: Callable[[dict[str, Any]], bool],
    *,
    expect: int,
    within: float = 20,
) -> list[bytes]:
    """The values of `topic`, from the beginning, whose JSON body is `wanted`: at least `expect`."""
    consumer = AIOKafkaConsumer(
        topic, **conn.options(), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[bytes] = []
    try:

        async def more() -> int:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                found.extend(r.value for r in recs if r.value and wanted(orjson.loads(r.value)))
            return len(found)

        await assert_eventually(more, lambda n: n >= expect, within=within, interval=0)
    finally:
        await consumer.stop()
    return found


async def reproduce(conn: KafkaConnection, topic: str, value: bytes, key: str, times: int) -> None:
    producer: AIOKafkaProducer = make_producer(conn)
    await producer.start()
    try:
        for _ in range(times):
            await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def topics_in_kafka(conn: KafkaConnection) -> set[str]:
    async with kafka_admin(conn) as admin:
        return set(await admin.list_topics())


def lag_of(report: Any, settings: Settings) -> dict[str, tuple[int, int]]:
    """(lag, committed partitions) per role of the app's workers, from `stats --json`."""
    prefix = settings.group_id("")
    return {
        g["group"].removeprefix(prefix): (g["lag"], g["committed_partitions"])
        for g in report["lag"]
    }


# -- the tests ------------------------------------------------------------------------------------


async def test_trips_and_orders_complete_and_compensate_side_by_side_in_one_orchestrator(
    services: Services, prefix: str, redis_client: Redis, tmp_path: Path
) -> None:
    settings = settings_for(services, prefix)
    sagas = Sagas(redis_client, settings)
    await load_seed(redis_client, prefix)
    await open_for_booking(redis_client, prefix, seats={FLIGHT: 10}, rooms={HOTEL: 10})
    booked, declined = f"{prefix}trip-booked", f"{prefix}trip-declined"
    booked_id, declined_id = TRIPS.saga_id(booked), TRIPS.saga_id(declined)
    charge_key = f"{booked_id}/charge_card"

    async with started(
        settings, two_sagas_process(settings, tmp_path, "orchestrator"), roles=roles_of
    ):
        # Nobody else has touched this prefix: the orchestrator made every topic of the app.
        made = await topics_in_kafka(settings.kafka)
        assert {prefix + name for name in TRIP_TOPICS} <= made
        assert prefix + order_topics.ORDER_CREATED in made

        async with (
            started(
                settings,
                two_sagas_process(settings, tmp_path, "participant", "bookings"),
                roles=roles_of,
            ),
            in_process(settings, *ORDER_PARTICIPANTS, "cards", "itineraries"),
        ):
            await send_trips(
                settings.kafka, prefix, [trip(booked), trip(declined, card="tok_declined")]
            )
            await send_orders(
                settings.kafka,
                prefix,
                [an_order(f"{prefix}o-ok"), an_order(f"{prefix}o-declined", "declined_card")],
            )
            await sagas.wait(booked_id, "completed")
            failed = await sagas.wait(declined_id, "failed")
            await sagas.wait(saga_id_for_order(f"{prefix}o-ok"), "completed")
            await sagas.wait(saga_id_for_order(f"{prefix}o-declined"), "failed")

            # The declined trip gave its seat and room back; the booked one holds one each.
            assert await left(redis_client, prefix) == (9, 9)
            assert await redis_client.hkeys(BookingKeys.under(prefix).booked) in (
                [f"{booked_id}/flight".encode(), f"{booked_id}/hotel".encode()],
                [f"{booked_id}/hotel".encode(), f"{booked_id}/flight".encode()],
            )
            assert {n: s.status.value for n, s in failed.steps.items()} == {
                "book_flight": "compensated",
                "book_hotel": "compensated",
                "charge_card": "failed",
            }
            assert "declined" in (failed.error or "")
            assert await redis_client.hexists(ItineraryKeys.under(prefix).sent, booked)
            assert GATEWAY.charges[charge_key].amount == AMOUNT
            assert f"{declined_id}/charge_card" not in GATEWAY.charges

            # The charge command, delivered twice more with the same command_id: answered
            # from the store, the same reply byte for byte, and the gateway not called again.
            charge_topic = prefix + trip_topics.CHARGE_CARD
            (command,) = await records(
                settings.kafka, charge_topic, lambda c: c["saga_id"] == booked_id, expect=1
            )
            await reproduce(settings.kafka, charge_topic, command, booked_id, times=2)
            cid = orjson.loads(command)["command_id"]
            replies = await records(
                settings.kafka,
                prefix + STEP_COMPLETED,
                lambda r: r.get("command_id") == cid,
                expect=3,
            )
            assert len(set(replies)) == 1
            assert GATEWAY.charge_calls[charge_key] == 1
            assert len([k for k in GATEWAY.charges if k.startswith(booked_id)]) == 1

            (done,) = await records(
                settings.kafka, prefix + trip_topics.TRIP_BOOKED, lambda _: True, expect=1
            )
            (lost,) = await records(
                settings.kafka, prefix + trip_topics.TRIP_FAILED, lambda _: True, expect=1
            )
            assert TripBooked.model_validate_json(done).trip_id == booked
            assert TripFailed.model_validate_json(lost).trip_id == declined

            # The CLI, on the same app: every group of it caught up, orchestrator and
            # each participant, trips' and orders' alike.
            stats = await assert_eventually(
                lambda: _json(services, prefix, "stats", "--json", "--app", APP),
                lambda r: all(lag == 0 for lag, _ in lag_of(r, settings).values()),
                within=30,
                message="every group of the app caught up",
            )
            roles = ["orchestrator", *(f"participant.{n}" for n in app.participant_names)]
            assert sorted(lag_of(stats, settings)) == sorted(roles)
            assert all(committed > 0 for _, committed in lag_of(stats, settings).values())
            assert GATEWAY.charge_calls[charge_key] == 1  # still, with the cards group caught up

    await _operator_views(services, prefix, booked, booked_id, declined_id)


async def _operator_views(
    services: Services, prefix: str, trip_id: str, saga_id: str, other_trip: str
) -> None:
    """show (by saga id and trip id), list --type, and show with an app lacking the type."""
    by_id, by_trip, listed, foreign = await asyncio.gather(
        cli(services, prefix, "show", saga_id, "--app", APP),
        _json(services, prefix, "show", trip_id, "--json", "--app", APP),
        _json(services, prefix, "list", "--type", "TripBooking", "--json", "--app", APP),
        cli(services, prefix, "show", saga_id, "--app", "participants.app:app"),
    )
    assert by_id.code == 0, by_id.err
    for expected in (saga_id, "completed", "book_flight", "charge_card", "send_itinerary"):
        assert expected in by_id.out
    assert by_trip["saga_id"] == saga_id
    assert by_trip["status"] == "completed"
    assert by_trip["data"]["trip_id"] == trip_id
    assert by_trip["steps"]["charge_card"]["status"] == "succeeded"
    assert sorted(s["saga_id"] for s in listed["sagas"]) == sorted([saga_id, other_trip])
    assert one_error_line(foreign, 1) == (
        "error: app 'order-fulfillment' runs no saga 'TripBooking' (it runs: OrderFulfillment)"
    )


async def test_an_operator_aborts_a_trip_stuck_on_the_card_gateway_and_retries_a_bounced_one(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix)
    sagas = Sagas(redis_client, settings)
    await open_for_booking(redis_client, prefix, seats={FLIGHT: 10}, rooms={HOTEL: 10})
    stuck, bounced = f"{prefix}trip-stuck", f"{prefix}trip-bounced"
    stuck_id, bounced_id = TRIPS.saga_id(stuck), TRIPS.saga_id(bounced)
    bounced_set = ItineraryKeys.under(prefix).bounced
    await redis_client.sadd(bounced_set, "bob@example.org")

    async with orchestrating(settings), in_process(settings, "bookings", "itineraries"):
        # No cards participant yet: the trip waits on charge_card, bookings held.
        await send_trips(settings.kafka, prefix, [trip(stuck)])
        await assert_eventually(
            lambda: sagas.state(stuck_id),
            lambda s: s is not None and s.step("charge_card").status.value == "pending",
            message="waiting on charge_card",
        )
        assert await left(redis_client, prefix) == (9, 9)

        aborted = await cli(
            services, prefix, "abort", stuck, "--reason", "trip called off", "--app", APP
        )
        assert aborted.code == 0, aborted.err
        assert f"aborted saga {stuck_id}: now compensating" in aborted.out

        async with in_process(settings, "cards"):
            # The charge may have gone through unheard: refunded, then the bookings cancelled.
            failed = await sagas.wait(stuck_id, "failed")
            assert "trip called off" in (failed.error or "")
            assert {n: s.status.value for n, s in failed.steps.items()} == {
                "book_flight": "compensated",
                "book_hotel": "compensated",
                "charge_card": "compensated",
            }
            assert await left(redis_client, prefix) == (10, 10)
            key = f"{stuck_id}/charge_card"
            assert key not in GATEWAY.charges or key in GATEWAY.refunded

            # The itinerary bounces after the card was charged: an operator, not a refund.
            await send_trips(settings.kafka, prefix, [trip(bounced, email="bob@example.org")])
            waiting = await sagas.wait(bounced_id, "needs_operator")
            assert waiting.step("send_itinerary").status.value == "failed"
            await redis_client.srem(bounced_set, "bob@example.org")
            resumed = await cli(services, prefix, "retry", bounced, "--app", APP)
            assert resumed.code == 0, resumed.err
            assert f"resumed saga {bounced_id}" in resumed.out
            await sagas.wait(bounced_id, "completed")

    assert await redis_client.hexists(ItineraryKeys.under(prefix).sent, bounced)
    assert await left(redis_client, prefix) == (9, 9)
    assert f"{bounced_id}/charge_card" in GATEWAY.charges
    assert f"{bounced_id}/charge_card" not in GATEWAY.refunded
    again = await cli(services, prefix, "abort", bounced, "--app", APP)
    assert "refused" in one_error_line(again, 1)


async def test_a_charge_retried_after_the_gateway_was_down_takes_the_money_once(
    services: Services, prefix: str, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(services, prefix)
    sagas = Sagas(redis_client, settings)
    await open_for_booking(redis_client, prefix, seats={FLIGHT: 10}, rooms={HOTEL: 10})
    trip_id = f"{prefix}trip-retried"
    saga_id = TRIPS.saga_id(trip_id)
    key = f"{saga_id}/charge_card"

    real_charge = GATEWAY.charge

    async def down_for_the_first_call(
        card: str, amount: int, currency: str, *, idempotency_key: str
    ) -> Charge:
        # Down for exactly this trip's first charge, however soon the retry comes.
        GATEWAY.down = idempotency_key == key and GATEWAY.charge_calls[key] == 0
        try:
            return await real_charge(card, amount, currency, idempotency_key=idempotency_key)
        finally:
            GATEWAY.down = False

    monkeypatch.setattr(GATEWAY, "charge", down_for_the_first_call)
    async with orchestrating(settings), in_process(settings, "bookings", "cards", "itineraries"):
        await send_trips(settings.kafka, prefix, [trip(trip_id)])
        done = await sagas.wait(saga_id, "completed")

    assert done.step("charge_card").attempt == 2  # the saga retried the transient failure
    assert GATEWAY.charge_calls[key] == 2
    assert GATEWAY.charges[key].amount == AMOUNT  # one charge, under the step's key


async def test_the_trip_example_runs_as_the_readme_says(
    services: Services, prefix: str, tmp_path: Path
) -> None:
    workers, requests, listing, showing = run_block("your-own-saga")
    assert workers[:2] == ["saga-worker", "all"]
    assert requests[0] == "python"
    settings = settings_for(services, prefix)
    worker = WorkerProcess("all", tuple(workers[1:]), worker_env(settings), tmp_path / "all.log")
    async with started(settings, worker, roles=roles_of):
        demo = await asyncio.create_subprocess_exec(
            sys.executable,
            *requests[1:],
            cwd=ROOT,
            env={**os.environ, **worker_env(settings)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(demo.communicate(), timeout=60)
        assert demo.returncode == 0, err.decode()
        assert out.decode().splitlines() == [f"requested trip-{n}" for n in (1, 2, 3)]
        listed = await assert_eventually(
            lambda: _json(services, prefix, *listing[1:], "--json"),
            lambda page: (
                len(page["sagas"]) == 3
                and all(s["status"] in ("completed", "failed") for s in page["sagas"])
            ),
            within=30,
            message="three trips finished",
        )
        shown = await cli(services, prefix, *showing[1:])

    ended = {s["business_key"]: s["status"] for s in listed["sagas"]}
    assert ended["trip-2"] == "failed"
    assert sorted([ended["trip-1"], ended["trip-3"]]) == ["completed", "failed"]
    assert shown.code == 0, shown.err
    assert "TripBooking v1" in shown.out
    assert "card_declined" in shown.out


async def _json(services: Services, prefix: str, *args: str) -> Any:
    run: Run = await cli(services, prefix, *args)
    return run.json()
