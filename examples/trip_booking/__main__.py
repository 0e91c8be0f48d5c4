"""`python -m examples.trip_booking`: opens two flights and a hotel, then requests three trips.

Start the workers first (they create the topics): `saga-worker all --app
examples.trip_booking.app:app`. Then see how the trips went with
`saga-worker list --type TripBooking --app examples.trip_booking.app:app`, or
`saga-worker show trip-2 --app ...`: trip-2's card is declined, so its flight
and hotel bookings are cancelled; trip-1 and trip-3 both want the last seat on
LH1234, so one of them is booked and the other fails and gives its room back.
"""

from __future__ import annotations

import asyncio

from examples.trip_booking import topics as t
from examples.trip_booking.bookings import open_for_booking
from examples.trip_booking.messages import Traveller, TripRequested
from saga_worker import Settings, encode, load_settings, make_producer, make_redis


def trip(trip_id: str, flight: str, card: str) -> TripRequested:
    return TripRequested(
        trip_id=trip_id,
        traveller=Traveller(name="Ada Lovelace", email="ada@example.org"),
        flight=flight,
        hotel="hotel-alpenrose",
        amount=84_900,
        currency="EUR",
        card=card,
    )


TRIPS = (
    trip("trip-1", "LH1234-2025-06-01", "tok_visa"),
    trip("trip-2", "LX318-2025-06-01", "tok_declined"),
    trip("trip-3", "LH1234-2025-06-01", "tok_visa"),
)


async def main(settings: Settings) -> None:
    redis = make_redis(settings)
    try:
        seats = {"LH1234-2025-06-01": 1, "LX318-2025-06-01": 40}
        await open_for_booking(
            redis, settings.saga_key_prefix, seats=seats, rooms={"hotel-alpenrose": 10}
        )
    finally:
        await redis.aclose()
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        topic = settings.topics.physical(t.TRIP_REQUESTED)
        for request in TRIPS:
            await producer.send_and_wait(topic, encode(request), key=request.trip_id.encode())
            print(f"requested {request.trip_id}")
    finally:
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main(load_settings()))
