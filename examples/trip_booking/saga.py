"""The TripBooking saga (version 1).

    book_flight  } together   BookFlight -> CancelFlight      compensatable
    book_hotel   }            BookHotel  -> CancelHotel       compensatable
    charge_card               ChargeCard (RefundCard)         pivot
    send_itinerary            SendItinerary                   retriable

Why this shape: a seat and a room are only held, and can be given back, so they
are booked first, both at once. Charging the card is the point of no return:
once the money is taken the trip goes ahead, and the itinerary is retried until
it is sent (a failure that retrying cannot fix goes to an operator, never back
to cancelling a paid trip). A declined card is the usual way a trip fails: both
bookings are cancelled. RefundCard is sent only when the charge's outcome is
unknown (it timed out on its last attempt, or an operator aborted the trip
while it was in flight), in case money was taken unheard.
"""

from __future__ import annotations

from datetime import timedelta

from examples.trip_booking import topics as t
from saga_worker import Parallel, RetryPolicy, SagaDefinition, Step, StepKind

# A booking or charge that does not answer is retried a few times, then the trip fails.
STEP_RETRY = RetryPolicy(max_attempts=3, initial_backoff=timedelta(seconds=1))
# Giving back a seat, a room or money must not give up quickly: an operator is
# asked to step in only after about ten minutes of trying.
COMPENSATION_RETRY = RetryPolicy(max_attempts=15, initial_backoff=timedelta(seconds=1))

TRIP_BOOKING = SagaDefinition(
    name="TripBooking",
    version=1,
    stages=(
        Parallel(
            Step("book_flight", t.BOOK_FLIGHT, t.CANCEL_FLIGHT, retry=STEP_RETRY),
            Step("book_hotel", t.BOOK_HOTEL, t.CANCEL_HOTEL, retry=STEP_RETRY),
        ),
        # A card gateway may take a while to answer: a longer timeout than the bookings.
        Step(
            "charge_card",
            t.CHARGE_CARD,
            t.REFUND_CARD,
            timeout=timedelta(seconds=30),
            retry=STEP_RETRY,
            kind=StepKind.PIVOT,
        ),
        # retry=None: a retriable step's default, retried forever, at most a minute apart.
        Step("send_itinerary", t.SEND_ITINERARY, kind=StepKind.RETRIABLE),
    ),
    completed_topic=t.TRIP_BOOKED,
    failed_topic=t.TRIP_FAILED,
    compensation_retry=COMPENSATION_RETRY,
)
