"""The `itineraries` participant: sends the traveller their itinerary, once per trip.

"Sending" records the itinerary in Redis (a real one would hand it to a mailer).
An address known to bounce is refused, a business failure that retrying does
not fix: send_itinerary comes after the card was charged, so the saga does not
cancel the trip but waits for an operator, who fixes the address and runs
`saga-worker retry <trip_id>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from examples.trip_booking import topics as t
from examples.trip_booking.messages import SendItinerary
from saga_worker import Apply, JsonObject, Kind, Participant, ParticipantKeys, Route, Verdict

NAME = "itineraries"


@dataclass(frozen=True)
class ItineraryKeys:
    bounced: str  # SET of e-mail addresses
    sent: str  # HASH trip_id -> itinerary, for SAGA_RETENTION_S
    sent_written: str  # ZSET trip_id -> when written (ms), by which it expires

    @classmethod
    def under(cls, prefix: str) -> ItineraryKeys:
        k = ParticipantKeys(prefix, NAME)
        return cls(k.domain("bounced"), k.domain("sent"), k.domain("sent:written"))


def prepare_itinerary(command: SendItinerary) -> Verdict:
    itinerary: JsonObject = {
        "trip_id": command.trip_id,
        "email": command.traveller.email,
        "flight": command.flight,
        "hotel": command.hotel,
        # What the bookings answered, e.g. {"flight": ..., "booking_ref": ...}.
        "bookings": [command.results.get("book_flight"), command.results.get("book_hotel")],
    }
    return Apply(args=itinerary, result={"sent_to": command.traveller.email}, effect=itinerary)


def _domain_keys(prefix: str) -> tuple[str, ...]:
    k = ItineraryKeys.under(prefix)
    return (k.bounced, k.sent, k.sent_written)  # KEYS[3..5] of itineraries.lua


ITINERARIES = Participant(
    name=NAME,
    routes={t.SEND_ITINERARY: Route(SendItinerary, Kind.ACTION, prepare_itinerary)},
    script=Path(__file__).with_name("itineraries.lua"),
    domain_keys=_domain_keys,
)
