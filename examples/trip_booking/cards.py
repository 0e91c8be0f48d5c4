"""The `cards` participant: charges the trip to the traveller's card, through a gateway.

Its effect happens outside Redis, so it is a `HandlerParticipant`: an async
function per command topic. The library stores each reply under the command's
id, so a redelivered command is answered from the store without calling the
gateway again; the idempotency key it passes is one per saga step, so even a
new attempt (after a timeout) never charges twice. A RefundCard that overtakes
its ChargeCard leaves a tombstone, so the late charge is refused, never sent.

A handler tells its outcome by how it returns:
- a JSON object: the step's result;
- `StepRefused`: a business failure (a declined card), not retried;
- any other exception (the gateway is down): retried by the saga's policy.
"""

from __future__ import annotations

from examples.trip_booking import topics as t
from examples.trip_booking.card_gateway import CardDeclined, FakeCardGateway
from examples.trip_booking.messages import ChargeCard, RefundCard
from saga_worker import Handler, HandlerParticipant, JsonObject, Kind, StepRefused

NAME = "cards"


def card_participant(gateway: FakeCardGateway) -> HandlerParticipant:
    async def charge(command: ChargeCard, key: str) -> JsonObject:
        try:
            receipt = await gateway.charge(
                command.card, command.amount, command.currency, idempotency_key=key
            )
        except CardDeclined as exc:
            raise StepRefused("card_declined", str(exc)) from exc
        return {"charge_id": receipt.charge_id, "amount": receipt.amount}

    async def refund(command: RefundCard, key: str) -> None:
        # `key` is the step's, the same for ChargeCard and RefundCard: the charge's key.
        await gateway.refund(charge_key=key)

    return HandlerParticipant(
        name=NAME,
        routes={
            t.CHARGE_CARD: Handler(ChargeCard, Kind.ACTION, charge),
            t.REFUND_CARD: Handler(RefundCard, Kind.COMPENSATION, refund),
        },
    )
