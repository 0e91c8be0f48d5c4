"""The trip-booking example: its saga through the in-memory harness, its card handlers
against the fake gateway, and the pure parts of its Redis participants."""

from __future__ import annotations

from typing import Any

import pytest

from examples.trip_booking import topics as t
from examples.trip_booking.app import TRIPS, app
from examples.trip_booking.bookings import BOOKINGS, prepare_flight, prepare_hotel
from examples.trip_booking.card_gateway import FakeCardGateway, GatewayUnavailable
from examples.trip_booking.cards import card_participant
from examples.trip_booking.itineraries import prepare_itinerary
from examples.trip_booking.messages import (
    BookFlight,
    BookHotel,
    ChargeCard,
    RefundCard,
    SendItinerary,
    TripFailed,
    TripRequested,
)
from examples.trip_booking.saga import TRIP_BOOKING
from saga_worker import (
    Apply,
    Fail,
    NoReply,
    SagaHarness,
    SagaStatus,
    StepRefused,
    StepScript,
    Succeed,
    WireMessage,
)

SID = "trip-saga-1"
REQUEST = TripRequested.model_validate(
    {
        "trip_id": "trip-1",
        "traveller": {"name": "Ada Lovelace", "email": "ada@example.org"},
        "flight": "LH1234-2025-06-01",
        "hotel": "hotel-alpenrose",
        "amount": 84_900,
        "currency": "EUR",
        "card": "tok_visa",
    }
)
DATA = REQUEST.model_dump(mode="json", exclude_none=True)
COMMANDS: dict[str, type[WireMessage]] = {
    t.BOOK_FLIGHT: BookFlight,
    t.BOOK_HOTEL: BookHotel,
    t.CHARGE_CARD: ChargeCard,
    t.REFUND_CARD: RefundCard,
    t.SEND_ITINERARY: SendItinerary,
}


BOOKED = {
    "book_flight": {"flight": "LH1234-2025-06-01", "booking_ref": "flight:trip-1"},
    "book_hotel": {"hotel": "hotel-alpenrose", "booking_ref": "hotel:trip-1"},
}


def run_trip(**scripts: StepScript) -> SagaHarness:
    """A trip whose participants all succeed, unless a step's script says otherwise."""
    booked = {step: StepScript(then=Succeed(result)) for step, result in BOOKED.items()}
    harness = SagaHarness(TRIP_BOOKING, {**booked, **scripts})
    harness.run_saga(SID, DATA)
    return harness


def sent(harness: SagaHarness) -> list[str]:
    return [m.topic for m in harness.published]


# -- the saga, in memory ---------------------------------------------------------------------


def test_a_trip_books_flight_and_hotel_together_then_charges_then_sends_the_itinerary() -> None:
    harness = run_trip()

    assert harness.state(SID).status is SagaStatus.COMPLETED
    topics = sent(harness)
    assert sorted(topics[:2]) == sorted([t.BOOK_FLIGHT, t.BOOK_HOTEL])
    assert topics[2:] == [t.CHARGE_CARD, t.SEND_ITINERARY, t.TRIP_BOOKED]


def test_every_command_carries_what_its_participant_needs() -> None:
    harness = run_trip()

    for message in harness.published:
        model = COMMANDS.get(message.topic)
        if model is not None:
            model.model_validate(message.payload)  # raises if a required field is missing
    charge = next(m for m in harness.published if m.topic == t.CHARGE_CARD)
    assert ChargeCard.model_validate(charge.payload).amount == 84_900
    itinerary = next(m for m in harness.published if m.topic == t.SEND_ITINERARY)
    assert SendItinerary.model_validate(itinerary.payload).results == {**BOOKED, "charge_card": {}}


def test_a_declined_card_cancels_both_bookings_and_the_trip_fails() -> None:
    declined = Fail("card tok_visa was declined", error_code="card_declined")
    harness = run_trip(charge_card=StepScript(attempts=(declined,)))

    state = harness.state(SID)
    assert state.status is SagaStatus.FAILED
    after_charge = sent(harness)[3:]
    assert sorted(after_charge[:2]) == sorted([t.CANCEL_FLIGHT, t.CANCEL_HOTEL])
    # The card was declined, so no money moved: nothing to refund.
    assert after_charge[2:] == [t.TRIP_FAILED]
    outcome = TripFailed.model_validate(harness.published[-1].payload)
    assert outcome.trip_id == "trip-1"
    assert "card tok_visa was declined" in outcome.error


def test_a_sold_out_flight_cancels_the_hotel_only() -> None:
    sold_out = Fail("flight LH1234-2025-06-01 is fully booked", error_code="sold_out")
    harness = run_trip(book_flight=StepScript(attempts=(sold_out,)))

    assert harness.state(SID).status is SagaStatus.FAILED
    assert t.CANCEL_FLIGHT not in sent(harness)
    assert sent(harness)[2:] == [t.CANCEL_HOTEL, t.TRIP_FAILED]


def test_a_charge_that_never_answers_is_refunded_in_case_money_was_taken_unheard() -> None:
    silent = StepScript(attempts=(NoReply(applied=True),) * 3)
    harness = run_trip(charge_card=silent)

    assert harness.state(SID).status is SagaStatus.FAILED
    assert sent(harness).count(t.CHARGE_CARD) == 3
    assert {t.REFUND_CARD, t.CANCEL_FLIGHT, t.CANCEL_HOTEL} <= set(sent(harness))


def test_a_bounced_itinerary_waits_for_an_operator_and_cancels_nothing() -> None:
    bounced = Fail("mail to ada@example.org bounces", error_code="address_bounced")
    harness = run_trip(send_itinerary=StepScript(attempts=(bounced,)))

    assert harness.state(SID).status is SagaStatus.NEEDS_OPERATOR
    assert not {t.CANCEL_FLIGHT, t.CANCEL_HOTEL, t.REFUND_CARD, t.TRIP_FAILED} & set(sent(harness))


# -- the cards participant, against the fake gateway -------------------------------------------


def command(model: type[Any], step: str = "charge_card", attempt: int = 1, **fields: Any) -> Any:
    return model.model_validate(
        {
            **DATA,
            "saga_id": SID,
            "step_name": step,
            "command_id": f"{SID}:{step}:a{attempt}",
            "attempt": attempt,
            **fields,
        }
    )


async def charge(gateway: FakeCardGateway, attempt: int = 1, **fields: Any) -> Any:
    handler = card_participant(gateway).routes[t.CHARGE_CARD]
    return await handler.handle(
        command(ChargeCard, attempt=attempt, **fields), f"{SID}/charge_card"
    )


async def refund(gateway: FakeCardGateway) -> Any:
    handler = card_participant(gateway).routes[t.REFUND_CARD]
    return await handler.handle(command(RefundCard), f"{SID}/charge_card")


async def test_charging_again_with_the_same_step_key_takes_the_money_once() -> None:
    gateway = FakeCardGateway()

    first = await charge(gateway)
    again = await charge(gateway, attempt=2)

    assert first == again == {"charge_id": "ch_1", "amount": 84_900}
    assert gateway.charge_calls[f"{SID}/charge_card"] == 2
    assert gateway.money_taken() == 84_900


async def test_a_declined_card_is_a_step_refused_not_an_error_to_retry() -> None:
    gateway = FakeCardGateway()
    gateway.decline("tok_visa")

    with pytest.raises(StepRefused) as refused:
        await charge(gateway)

    assert refused.value.code == "card_declined"
    assert gateway.charges == {}


async def test_a_gateway_that_is_down_raises_so_the_saga_retries() -> None:
    gateway = FakeCardGateway()
    gateway.down = True

    with pytest.raises(GatewayUnavailable):
        await charge(gateway)


async def test_a_refund_gives_the_money_back_and_one_before_the_charge_cancels_it() -> None:
    charged = FakeCardGateway()
    await charge(charged)
    assert await refund(charged) is None
    assert charged.money_taken() == 0

    early = FakeCardGateway()
    await refund(early)
    with pytest.raises(StepRefused, match="cancelled before it was charged"):
        await charge(early)
    assert early.money_taken() == 0


# -- the Redis participants' pure part, and the app ---------------------------------------------


def test_a_booking_says_what_to_take_and_the_same_is_recorded_to_give_back() -> None:
    flight = prepare_flight(command(BookFlight, step="book_flight"))
    hotel = prepare_hotel(command(BookHotel, step="book_hotel"))

    assert flight == Apply(
        args={"saga_id": SID, "kind": "flight", "item": "LH1234-2025-06-01"},
        result={"flight": "LH1234-2025-06-01", "booking_ref": "flight:trip-1"},
        effect={"saga_id": SID, "kind": "flight", "item": "LH1234-2025-06-01"},
    )
    assert isinstance(hotel, Apply)
    assert hotel.effect == {"saga_id": SID, "kind": "hotel", "item": "hotel-alpenrose"}
    assert BOOKINGS.script_text().count("local function") == 2  # apply and undo


def test_an_itinerary_goes_to_the_travellers_address() -> None:
    verdict = prepare_itinerary(command(SendItinerary, step="send_itinerary"))

    assert isinstance(verdict, Apply)
    assert verdict.result == {"sent_to": "ada@example.org"}


def test_the_app_starts_one_saga_per_trip_and_knows_every_topic_and_participant() -> None:
    assert app.starting_from(t.TRIP_REQUESTED) is TRIPS
    assert TRIPS.saga_id("trip-1") == TRIPS.saga_id("trip-1") != TRIPS.saga_id("trip-2")
    assert app.participant_names == ("bookings", "cards", "itineraries")
    every_topic = {v for k, v in vars(t).items() if k.isupper()}
    assert every_topic <= set(app.orchestrator_topics())
    served = {
        topic for name in app.participant_names for topic in app.build_participant(name).topics
    }
    commands = {s.command_topic for s in TRIP_BOOKING.steps.values()}
    compensations = {s.compensation_topic for s in TRIP_BOOKING.steps.values()} - {None}
    assert served == commands | compensations
    steps = TRIP_BOOKING.steps
    assert steps["charge_card"].timeout > steps["book_flight"].timeout  # a gateway is slower
