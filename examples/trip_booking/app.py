"""The trip-booking app: the TripBooking saga, started from TripRequested, and its participants.

    saga-worker orchestrator --app examples.trip_booking.app:app
    saga-worker participant bookings --app examples.trip_booking.app:app   # likewise
                            itineraries, cards

`GATEWAY` is the fake card gateway of this process: a test running the cards
participant in its own process can look at it (and tell it to decline a card).
"""

from __future__ import annotations

from examples.trip_booking import topics as t
from examples.trip_booking.bookings import BOOKINGS
from examples.trip_booking.card_gateway import FakeCardGateway
from examples.trip_booking.cards import card_participant
from examples.trip_booking.itineraries import ITINERARIES
from examples.trip_booking.messages import TripRequested
from examples.trip_booking.saga import TRIP_BOOKING
from saga_worker import App

GATEWAY = FakeCardGateway()

app = App("trip-booking")
# A trip's saga id is derived from its trip_id: a TripRequested sent twice
# finds the saga the first one started instead of booking the trip again.
TRIPS = app.saga(
    TRIP_BOOKING, start_topic=t.TRIP_REQUESTED, start_model=TripRequested, business_key="trip_id"
)
app.participant(BOOKINGS)
app.participant(card_participant(GATEWAY))
app.participant(ITINERARIES)
