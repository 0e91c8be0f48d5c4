"""The trip saga's messages: what starts it, what each participant reads, how it ended.

The orchestrator sends every command with the whole start message in it (the
saga's data) plus the results of the steps so far. A command model re-declares,
as required fields, only what its participant needs: the participant then gets
validated data, and fields it does not know travel on untouched.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from saga_worker import (
    CompensationCommand,
    ErrorText,
    Identifier,
    OpenModel,
    SagaCommand,
    SagaOutcome,
    ShortText,
    WireMessage,
)

# Integer minor units (cents): money is never a float on the wire.
MinorUnits = Annotated[int, Field(strict=True, ge=1, le=10**9)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]  # ISO 4217


class Traveller(OpenModel):
    name: ShortText
    email: ShortText


class TripRequested(WireMessage):
    """Starts one TripBooking saga; `trip_id` is its business key (one trip, one saga)."""

    trip_id: Identifier
    traveller: Traveller
    flight: Identifier  # a flight on a day, e.g. "LH1234-2025-06-01"
    hotel: Identifier  # a hotel for the stay, e.g. "hotel-alpenrose"
    amount: MinorUnits  # the whole trip
    currency: Currency
    card: Identifier  # a token the card gateway issued, never a card number


# -- commands, one per topic ---------------------------------------------------------


class BookFlight(SagaCommand):
    trip_id: Identifier
    flight: Identifier


class CancelFlight(CompensationCommand):
    """Undoes BookFlight; the participant knows what it booked, so nothing more is needed."""


class BookHotel(SagaCommand):
    trip_id: Identifier
    hotel: Identifier


class CancelHotel(CompensationCommand):
    pass


class ChargeCard(SagaCommand):
    trip_id: Identifier
    card: Identifier
    amount: MinorUnits
    currency: Currency


class RefundCard(CompensationCommand):
    """Sent only when ChargeCard's outcome is unknown (it timed out, or an operator
    aborted while it was in flight): refunds the charge if there was one."""


class SendItinerary(SagaCommand):
    trip_id: Identifier
    traveller: Traveller
    flight: Identifier
    hotel: Identifier


# -- outcomes --------------------------------------------------------------------------


class TripBooked(SagaOutcome):
    trip_id: Identifier


class TripFailed(SagaOutcome):
    trip_id: Identifier
    error: ErrorText
