"""Every Redis key of the sample participants' domain state, named in one place.

They sit under each participant's hash tag (`saga_worker.ParticipantKeys.domain`),
next to the runtime's own reply and effect records, so one script call touches
one cluster slot (a multi-SKU reservation stays atomic): a property of this
sample, not of the library.

    <prefix>{inventory}:catalogue             HASH sku -> JSON {name, unit_price}
    <prefix>{inventory}:stock                 HASH sku -> units on hand
    <prefix>{inventory}:reservations          HASH saga_id -> JSON [[sku, quantity], ...]
    <prefix>{payment}:balances                HASH customer_id -> minor units
    <prefix>{payment}:charges                 HASH saga_id -> JSON {customer, amount}
    <prefix>{shipping}:shipments              HASH saga_id -> JSON shipment (active)
    <prefix>{shipping}:cancelled              HASH saga_id -> JSON shipment (cancelled)
    <prefix>{notification}:notices            STREAM of notices sent
    <prefix>{notification}:sent               HASH <kind>:<order_id> -> stream entry id
"""

from __future__ import annotations

from dataclasses import dataclass

from saga_worker import ParticipantKeys

INVENTORY = "inventory"
PAYMENT = "payment"
SHIPPING = "shipping"
NOTIFICATION = "notification"


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
