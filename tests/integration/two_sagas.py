"""Two apps in one: the order-fulfillment sample and the trip-booking example, run by
one orchestrator (one consumer group) and operated by one CLI
(`--app tests.integration.two_sagas:app`)."""

from __future__ import annotations

from examples.trip_booking.app import app as trips
from participants.app import app as orders
from saga_worker import App

app = App("two-sagas")
app.include(orders)
app.include(trips)
