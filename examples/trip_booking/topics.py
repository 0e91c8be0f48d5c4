"""The trip saga's own topics, logical names (a deployment prefix is added by the workers).

The reply topics are the library's, shared by every saga type.
"""

from __future__ import annotations

TRIP_REQUESTED = "TripRequested"  # starts a saga

BOOK_FLIGHT = "Trips.BookFlight"
CANCEL_FLIGHT = "Trips.CancelFlight"
BOOK_HOTEL = "Trips.BookHotel"
CANCEL_HOTEL = "Trips.CancelHotel"
CHARGE_CARD = "Trips.ChargeCard"
REFUND_CARD = "Trips.RefundCard"
SEND_ITINERARY = "Trips.SendItinerary"

TRIP_BOOKED = "TripBooked"  # how a saga ended, for the outside world
TRIP_FAILED = "TripFailed"
