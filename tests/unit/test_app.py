"""The app's rules, without a broker: saga types and their ids, participants, topics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from saga_worker.app import SAGA_ID_NAMESPACE, App, SagaType
from saga_worker.engine.decide import decide
from saga_worker.engine.definition import ChildSaga, SagaDefinition, Step, StepKind, Wait
from saga_worker.engine.events import StartSaga
from saga_worker.engine.state import SagaState
from saga_worker.errors import DefinitionError, UnknownParticipantError, UnknownSagaTypeError
from saga_worker.participant.handlers import HandlerParticipant
from saga_worker.wire import topics as t
from saga_worker.wire.messages import WireMessage


class TripRequested(WireMessage):
    trip_id: str
    seats: int = 1


class RoomRequested(WireMessage):
    room: int


def trip(version: int = 1, *, name: str = "Trip", extra: bool = False) -> SagaDefinition:
    stages: tuple[Step, ...] = (
        Step("book", "trip.Book", "trip.Unbook"),
        Step("pay", "trip.Pay", kind=StepKind.PIVOT),
    )
    if extra:
        stages = (Step("hold", "trip.Hold", "trip.Release"), *stages)
    return SagaDefinition(
        name=name,
        version=version,
        stages=stages,
        completed_topic="trip.Done",
        failed_topic="trip.Failed",
        failure_notices=(("tell", "trip.Tell"),),
    )


def room() -> SagaDefinition:
    return SagaDefinition(
        name="Room",
        version=1,
        stages=(Step("reserve", "room.Reserve", "trip.Unbook"),),
        completed_topic="room.Done",
        failed_topic="trip.Failed",
    )


def trip_app() -> tuple[App, SagaType, SagaType]:
    app = App("travel")
    trips = app.saga(
        trip(2, extra=True),
        start_topic="trip.Requested",
        start_model=TripRequested,
        business_key="trip_id",
        older_versions=[trip(1)],
    )
    rooms = app.saga(
        room(), start_topic="room.Requested", start_model=RoomRequested, business_key="room"
    )
    return app, trips, rooms


def stored(definition: SagaDefinition, data: dict[str, object]) -> SagaState:
    decision = decide(None, StartSaga("s-1", data), datetime(2025, 1, 1, tzinfo=UTC), definition)
    assert decision.state is not None
    return decision.state


# -- saga types ------------------------------------------------------------------------------


def test_a_saga_id_is_derived_from_the_business_key_and_the_saga_type() -> None:
    _, trips, rooms = trip_app()
    expected = str(uuid.uuid5(uuid.uuid5(SAGA_ID_NAMESPACE, "Trip"), "t-1"))
    assert trips.saga_id("t-1") == expected
    assert uuid.UUID("6f1c3f52-1d0e-4b8e-9a57-4b1f7f0c2a10") == SAGA_ID_NAMESPACE
    assert trips.saga_id("t-1") == App("other").saga(
        trip(), start_topic="x", start_model=TripRequested, business_key="trip_id"
    ).saga_id("t-1")
    assert trips.saga_id("t-2") != expected
    assert rooms.saga_id("t-1") != expected
    assert (trips.name, rooms.name) == ("Trip", "Room")


def test_the_key_of_a_start_message_is_its_business_key_as_text() -> None:
    _, trips, rooms = trip_app()
    assert trips.key_of(TripRequested(trip_id="t-9", seats=3)) == "t-9"
    assert rooms.key_of(RoomRequested(room=42)) == "42"


def test_the_business_key_must_be_a_field_of_the_start_model() -> None:
    with pytest.raises(
        DefinitionError,
        match=r"^saga 'Trip': business_key 'order_id' is not a field of TripRequested$",
    ):
        SagaType(trip(), "trip.Requested", TripRequested, "order_id")


@pytest.mark.parametrize(
    "older",
    [trip(2), trip(3), trip(1, name="Voyage")],
    ids=["same-version", "later-version", "another-saga"],
)
def test_older_versions_must_be_earlier_versions_of_the_same_saga(older: SagaDefinition) -> None:
    with pytest.raises(
        DefinitionError, match=r"^saga 'Trip': older_versions must be earlier versions of it$"
    ):
        SagaType(trip(2), "trip.Requested", TripRequested, "trip_id", (trip(1), older))


def test_a_saga_types_topics_cover_every_version_in_order_without_repeats() -> None:
    _, trips, rooms = trip_app()
    assert trips.topics() == (
        "trip.Requested",
        "trip.Book",
        "trip.Unbook",
        "trip.Pay",
        "trip.Tell",
        "trip.Done",
        "trip.Failed",
        "trip.Hold",
        "trip.Release",
    )
    assert rooms.topics() == (
        "room.Requested",
        "room.Reserve",
        "trip.Unbook",
        "room.Done",
        "trip.Failed",
    )


# -- the app ---------------------------------------------------------------------------------


def test_an_app_runs_each_saga_type_once_from_its_own_start_topic() -> None:
    app, trips, rooms = trip_app()
    assert app.sagas == (trips, rooms)
    assert app.saga_type("Room") is rooms
    assert app.starting_from("trip.Requested") is trips
    assert app.starting_from("room.Requested") is rooms
    assert app.starting_from("trip.Book") is None
    with pytest.raises(DefinitionError, match=r"^app 'travel' already runs a saga 'Trip'$"):
        app.saga(trip(3), start_topic="new", start_model=TripRequested, business_key="trip_id")
    with pytest.raises(
        DefinitionError, match=r"^sagas 'Room' and 'Voyage' both start from 'room.Requested'$"
    ):
        app.saga(
            trip(name="Voyage"),
            start_topic="room.Requested",
            start_model=TripRequested,
            business_key="trip_id",
        )
    assert app.sagas == (trips, rooms)  # a refused saga type is not added


def test_an_unknown_saga_type_is_named_with_those_the_app_runs() -> None:
    app, _, _ = trip_app()
    with pytest.raises(
        UnknownSagaTypeError, match=r"^app 'travel' runs no saga 'X' \(it runs: Trip, Room\)$"
    ):
        app.saga_type("X")
    with pytest.raises(
        UnknownSagaTypeError, match=r"^app 'empty' runs no saga 'X' \(it runs: none\)$"
    ):
        App("empty").saga_type("X")
    assert App().name == "saga-worker"


def test_a_stored_saga_finds_its_type_only_in_a_version_the_app_has() -> None:
    app, trips, _ = trip_app()
    assert app.registry.versions("Trip") == (1, 2)
    assert app.registry.versions("Room") == (1,)
    assert app.saga_type_of(stored(trip(1), {"trip_id": "t-1"})) is trips
    assert app.saga_type_of(stored(trip(2, extra=True), {"trip_id": "t-1"})) is trips
    with pytest.raises(
        UnknownSagaTypeError,
        match=r"^saga s-1 runs Trip v3, which app 'travel' does not have \(versions: 1, 2\)$",
    ):
        app.saga_type_of(stored(trip(3), {"trip_id": "t-1"}))
    with pytest.raises(UnknownSagaTypeError, match="runs no saga 'Voyage'"):
        app.saga_type_of(stored(trip(1, name="Voyage"), {}))


def test_candidate_ids_are_the_id_given_then_the_id_each_type_derives() -> None:
    app, trips, rooms = trip_app()
    assert app.candidate_ids("k") == ["k", trips.saga_id("k"), rooms.saga_id("k")]
    derived = trips.saga_id("k")
    assert app.candidate_ids(derived)[0] == derived
    assert len(set(app.candidate_ids(derived))) == 3
    assert App("empty").candidate_ids("k") == ["k"]


def test_the_business_key_of_a_stored_saga() -> None:
    app, _, _ = trip_app()
    assert app.business_key(stored(trip(1), {"trip_id": "t-7"})) == "t-7"
    assert app.business_key(stored(room(), {"room": 12})) == "12"
    assert app.business_key(stored(trip(1), {"other": "x"})) is None
    assert app.business_key(stored(trip(1, name="Voyage"), {"trip_id": "t-7"})) is None


def test_participants_are_declared_once_and_built_when_asked() -> None:
    app = App("travel")
    hotels = HandlerParticipant("hotels", {})
    built: list[str] = []

    def make_cards() -> HandlerParticipant:
        built.append("cards")
        return HandlerParticipant("cards", {})

    app.participant(hotels)
    app.participant(make_cards, name="cards")
    app.participant(hotels, name="hotels_too")
    assert app.participant_names == ("hotels", "cards", "hotels_too")
    assert built == []  # a factory runs when its worker starts, not before
    assert app.build_participant("hotels") is hotels
    assert app.build_participant("hotels_too") is hotels
    assert app.build_participant("cards").name == "cards"
    assert built == ["cards"]
    with pytest.raises(DefinitionError, match=r"^a participant factory needs name=$"):
        app.participant(make_cards)
    with pytest.raises(DefinitionError, match=r"^app 'travel' already has a participant 'hotels'$"):
        app.participant(HandlerParticipant("hotels", {}))
    with pytest.raises(
        UnknownParticipantError,
        match=r"^app 'travel' has no participant 'x' \(it has: hotels, cards, hotels_too\)$",
    ):
        app.build_participant("x")
    with pytest.raises(
        UnknownParticipantError, match=r"^app 'empty' has no participant 'x' \(it has: none\)$"
    ):
        App("empty").build_participant("x")


def test_an_app_includes_another_apps_saga_types_and_participants() -> None:
    travel, trips, rooms = trip_app()
    hotels = HandlerParticipant("hotels", {})
    travel.participant(hotels)
    travel.participant(lambda: HandlerParticipant("cards", {}), name="cards")
    everything = App("everything")
    everything.include(travel)
    assert [s.name for s in everything.sagas] == ["Trip", "Room"]
    included = everything.saga_type("Trip")
    assert included == trips
    assert included.older_versions == trips.older_versions == (trip(1),)
    assert everything.saga_type("Room") == rooms
    assert everything.participant_names == ("hotels", "cards")
    assert everything.build_participant("hotels") is hotels
    assert everything.build_participant("cards").name == "cards"
    assert everything.registry.versions("Trip") == (1, 2)
    with pytest.raises(DefinitionError, match="already runs a saga 'Trip'"):
        everything.include(travel)


def test_the_orchestrator_reads_and_writes_exactly_the_apps_topics() -> None:
    app, trips, rooms = trip_app()
    starts = ("trip.Requested", "room.Requested")
    assert app.orchestrator_inbound() == (*starts, t.START_REQUESTED, *t.REPLY_TOPICS)
    library = [*t.REPLY_TOPICS, t.START_REQUESTED, t.DEAD_LETTER]
    expected = dict.fromkeys([*trips.topics(), *rooms.topics(), *library])
    assert app.orchestrator_topics() == tuple(expected)
    assert len(app.orchestrator_topics()) == len(set(app.orchestrator_topics()))
    assert App("empty").orchestrator_topics() == tuple(library)


def test_waits_and_children_add_their_topics_and_children_must_be_run_by_the_app() -> None:
    waiting = SagaDefinition(
        name="Loan",
        version=1,
        stages=(
            Wait(
                "approval", topic="loan.Decisions", correlate="loan_id", deadline=timedelta(days=1)
            ),
            ChildSaga("payout", "Payout", kind=StepKind.PIVOT),
        ),
        completed_topic="loan.Done",
        failed_topic="loan.Failed",
    )
    app = App("loans")
    app.saga(waiting)  # started only by name (SagaStartRequested), e.g. as a child
    assert app.orchestrator_inbound() == ("loan.Decisions", t.START_REQUESTED, *t.REPLY_TOPICS)
    assert "loan.Decisions" in app.orchestrator_topics()
    assert [(d.name, s.name) for d, s in app.waits_on("loan.Decisions")] == [("Loan", "approval")]
    assert app.waits_on("loan.Done") == ()
    assert None not in app.orchestrator_topics()
    started = decide(None, StartSaga("l", {}), datetime(2025, 1, 1, tzinfo=UTC), waiting).state
    assert started is not None
    assert app.business_key(started) is None  # a child-only type has no business key
    with pytest.raises(DefinitionError, match="starts child sagas Payout, which app 'loans'"):
        app.check_children()
    twice = SagaDefinition(
        name="Twice",
        version=1,
        stages=(
            ChildSaga("a", "Aa", kind=StepKind.PIVOT),
            ChildSaga("b", "Bb", kind=StepKind.RETRIABLE),
        ),
        completed_topic="t.Done",
        failed_topic="t.Failed",
    )
    two = App("two")
    two.saga(twice)
    with pytest.raises(DefinitionError, match="starts child sagas Aa, Bb, which"):
        two.check_children()
    with pytest.raises(
        DefinitionError,
        match="give start_topic, start_model and business_key together, or none of them for a "
        "saga started only as a child",
    ):
        App("half").saga(waiting, start_topic="loan.Requested")
    assert App("empty").registry.versions("Loan") == ()
    assert App("empty").orchestrator_inbound() == (t.START_REQUESTED, *t.REPLY_TOPICS)
