"""A stand-in for an outside card gateway's API (think Stripe), for the demo and tests.

What matters about the real thing, kept here:
- a charge carries an idempotency key, and the same key charges at most once:
  asking again returns the first charge;
- a refund names the charge's key; one that comes before its charge cancels the
  payment, so the late charge is declined instead of taking money nobody refunds;
- it is outside: nothing here is in Redis, so it cannot join a Redis script.
It also counts what it was asked, per key, so tests can see how often it was called.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


class CardDeclined(Exception):
    """The gateway said no: a business answer, asking again will not change it."""


class GatewayUnavailable(Exception):
    """The gateway did not answer: asking again later may work."""


@dataclass(frozen=True)
class Charge:
    charge_id: str
    card: str
    amount: int  # minor units
    currency: str


class FakeCardGateway:
    def __init__(self, declined_cards: Iterable[str] = ("tok_declined",)) -> None:
        self.declined_cards = set(declined_cards)
        self.down = False  # True: every call raises GatewayUnavailable
        self.charge_calls: Counter[str] = Counter()  # charge requests, per idempotency key
        self.charges: dict[str, Charge] = {}  # money taken, per idempotency key
        self.refunded: set[str] = set()  # keys whose charge was refunded or cancelled

    def decline(self, card: str) -> None:
        """From now on, charging `card` is declined."""
        self.declined_cards.add(card)

    async def charge(
        self, card: str, amount: int, currency: str, *, idempotency_key: str
    ) -> Charge:
        await asyncio.sleep(0)  # an outside call: other work runs meanwhile
        self.charge_calls[idempotency_key] += 1
        if self.down:
            raise GatewayUnavailable("card gateway did not answer")
        if idempotency_key in self.charges:
            return self.charges[idempotency_key]  # the same request again: the same charge
        if idempotency_key in self.refunded:
            raise CardDeclined("the payment was cancelled before it was charged")
        if card in self.declined_cards:
            raise CardDeclined(f"card {card} was declined")
        charge = Charge(f"ch_{len(self.charges) + 1}", card, amount, currency)
        self.charges[idempotency_key] = charge
        return charge

    async def refund(self, *, charge_key: str) -> Charge | None:
        """Refunds the charge made with `charge_key`, or cancels it if none was made yet;
        returns the refunded charge, if there was one. Refunding twice refunds once."""
        await asyncio.sleep(0)
        if self.down:
            raise GatewayUnavailable("card gateway did not answer")
        self.refunded.add(charge_key)
        return self.charges.get(charge_key)

    def money_taken(self) -> int:
        """Charged and not refunded, in minor units, over every card."""
        return sum(c.amount for k, c in self.charges.items() if k not in self.refunded)
