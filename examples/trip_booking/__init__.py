"""Trip booking: a flight and a hotel booked together, the card charged, an itinerary sent.

    topics.py         the saga's topic names
    messages.py       TripRequested (starts a saga), the commands, the outcomes
    saga.py           the TripBooking saga: its steps, their kinds, timeouts and retries
    bookings.py       the `bookings` participant: seats and rooms in Redis  + bookings.lua
    itineraries.py    the `itineraries` participant: itineraries sent        + itineraries.lua
    card_gateway.py   a stand-in for an outside card gateway (not part of the saga)
    cards.py          the `cards` participant: charges and refunds through that gateway
    app.py            the App tying the saga and its participants together
    __main__.py       opens flights and hotels, and requests a few trips

Run it (Kafka and Redis reachable as the Settings say):

    saga-worker all --app examples.trip_booking.app:app     # orchestrator + participants
    python -m examples.trip_booking                          # seats, rooms, three trips
    saga-worker list --type TripBooking --app examples.trip_booking.app:app
"""
