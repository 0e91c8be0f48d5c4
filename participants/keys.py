"""Every Redis key the participants use, named in one place.

All keys of one participant share the hash tag `{<participant>}`, so each
command's script touches one cluster slot, and sit under the configurable key
prefix (`SAGA_KEY_PREFIX`), so tests and deployments can share a Redis:

    <prefix>{<p>}:reply:<idempotency key>     the stored outcome of one command (TTL)
    <prefix>{<p>}:effect:<saga_id>/<step>     what the step did: applied, compensated
                                              or a tombstone (TTL)
    <prefix>{inventory}:catalogue             HASH sku -> JSON {name, unit_price}
    <prefix>{inventory}:stock                 HASH sku -> units on hand
    <prefix>{inventory}:reservations          HASH saga_id -> JSON [[sku, quantity], ...]
    <prefix>{payment}:balances                HASH customer_id -> minor units
    <prefix>{payment}:charges                 HASH saga_id -> JSON {customer, amount}
    <prefix>{shipping}:shipments              HASH saga_id -> JSON shipment (active)
    <prefix>{shipping}:cancelled              HASH saga_id -> JSON shipment (cancelled)
    <prefix>{notification}:notices            STREAM of notices sent
    <prefix>{notification}:sent               HASH <kind>:<order_id> -> stream entry id

Saga ids cannot contain `/` (schemas.fields.SagaId), so `<saga_id>/<step>` is
unambiguous whatever the step name holds.
"""

from __future__ import annotations

from dataclasses import dataclass

INVENTORY = "inventory"
PAYMENT = "payment"
SHIPPING = "shipping"
NOTIFICATION = "notification"


@dataclass(frozen=True)
class ParticipantKeys:
    prefix: str
    participant: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}{{{self.participant}}}"

    def reply(self, idempotency_key: str) -> str:
        return f"{self.tag}:reply:{idempotency_key}"

    def effect(self, saga_id: str, step_name: str) -> str:
        return f"{self.tag}:effect:{saga_id}/{step_name}"

    def domain(self, name: str) -> str:
        return f"{self.tag}:{name}"


@dataclass(frozen=True)
class InventoryKeys:
    catalogue: str
    stock: str
    reservations: str


@dataclass(frozen=True)
class PaymentKeys:
    balances: str
    charges: str


@dataclass(frozen=True)
class ShippingKeys:
    shipments: str
    cancelled: str


@dataclass(frozen=True)
class NotificationKeys:
    notices: str
    sent: str


def inventory(prefix: str) -> InventoryKeys:
    k = ParticipantKeys(prefix, INVENTORY)
    return InventoryKeys(k.domain("catalogue"), k.domain("stock"), k.domain("reservations"))


def payment(prefix: str) -> PaymentKeys:
    k = ParticipantKeys(prefix, PAYMENT)
    return PaymentKeys(k.domain("balances"), k.domain("charges"))


def shipping(prefix: str) -> ShippingKeys:
    k = ParticipantKeys(prefix, SHIPPING)
    return ShippingKeys(k.domain("shipments"), k.domain("cancelled"))


def notification(prefix: str) -> NotificationKeys:
    k = ParticipantKeys(prefix, NOTIFICATION)
    return NotificationKeys(k.domain("notices"), k.domain("sent"))
