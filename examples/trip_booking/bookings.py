"""The `bookings` participant: a seat on a flight and a room in a hotel, held in Redis.

Its effects live in Redis, so it is a `Participant`: a pure `prepare` per
command topic says what to book, and bookings.lua books it (or refuses: an
unknown flight or hotel, or none left) in one atomic script, together with the
reply the library stores for a repeated command. A cancel gives back exactly
what was booked; one that arrives before its booking leaves a tombstone (the
library's doing), so the late booking is refused instead of holding a seat forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.trip_booking import topics as t
from examples.trip_booking.messages import BookFlight, BookHotel, CancelFlight, CancelHotel
from saga_worker import (
    Apply,
    JsonObject,
    Kind,
    Participant,
    ParticipantKeys,
    RedisClient,
    Route,
    Verdict,
)

NAME = "bookings"


@dataclass(frozen=True)
class BookingKeys:
    """Its Redis keys, under the participant's hash tag, so one script touches one slot."""

    seats: str  # HASH flight -> seats left
    rooms: str  # HASH hotel -> rooms left
    booked: str  # HASH <saga_id>/<kind> -> booking, for SAGA_RETENTION_S
    booked_written: str  # ZSET <saga_id>/<kind> -> when written (ms), by which it expires

    @classmethod
    def under(cls, prefix: str) -> BookingKeys:
        k = ParticipantKeys(prefix, NAME)
        return cls(
            k.domain("seats"), k.domain("rooms"), k.domain("booked"), k.domain("booked:written")
        )


def _booking(saga_id: str, kind: str, item: str, trip_id: str) -> Apply:
    booking: JsonObject = {"saga_id": saga_id, "kind": kind, "item": item}
    result: JsonObject = {kind: item, "booking_ref": f"{kind}:{trip_id}"}
    return Apply(args=booking, result=result, effect=booking)


def prepare_flight(command: BookFlight) -> Verdict:
    return _booking(command.saga_id, "flight", command.flight, command.trip_id)


def prepare_hotel(command: BookHotel) -> Verdict:
    return _booking(command.saga_id, "hotel", command.hotel, command.trip_id)


def _domain_keys(prefix: str) -> tuple[str, ...]:
    k = BookingKeys.under(prefix)
    return (k.seats, k.rooms, k.booked, k.booked_written)  # KEYS[3..6] of bookings.lua


BOOKINGS = Participant(
    name=NAME,
    routes={
        t.BOOK_FLIGHT: Route(BookFlight, Kind.ACTION, prepare_flight),
        t.CANCEL_FLIGHT: Route(CancelFlight, Kind.COMPENSATION),
        t.BOOK_HOTEL: Route(BookHotel, Kind.ACTION, prepare_hotel),
        t.CANCEL_HOTEL: Route(CancelHotel, Kind.COMPENSATION),
    },
    script=Path(__file__).with_name("bookings.lua"),
    domain_keys=_domain_keys,
)


async def open_for_booking(
    redis: RedisClient, key_prefix: str, *, seats: Mapping[str, int], rooms: Mapping[str, int]
) -> None:
    """Sets how many seats each flight and rooms each hotel have left (demo data)."""
    k = BookingKeys.under(key_prefix)
    async with redis.pipeline(transaction=True) as pipe:
        if seats:
            seats_left: dict[Any, Any] = dict(seats)
            pipe.hset(k.seats, mapping=seats_left)
        if rooms:
            rooms_left: dict[Any, Any] = dict(rooms)
            pipe.hset(k.rooms, mapping=rooms_left)
        await pipe.execute()
