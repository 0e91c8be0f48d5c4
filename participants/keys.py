"""Every Redis key of the sample participants' domain state, named in one place.

They sit under each participant's hash tag (`saga_worker.ParticipantKeys.domain`),
next to the runtime's own reply and effect records, so one script call touches
one cluster slot (a multi-SKU reservation stays atomic): a property of this
sample, not of the library.

    <prefix>{inventory}:catalogue             HASH sku -> JSON {name, unit_price}
    <prefix>{inventory}:stock                 HASH sku -> units on hand
    <prefix>{inventory}:reservations          HASH saga_id -> JSON [[sku, quantity], ...]
    <prefix>{inventory}:reservations:written  ZSET saga_id -> when written (ms)
    <prefix>{inventory}:settled               HASH sku -> units of expired reservations
    <prefix>{payment}:balances                HASH customer_id -> minor units
    <prefix>{payment}:charges                 HASH saga_id -> JSON {customer, amount}
    <prefix>{payment}:charges:written         ZSET saga_id -> when written (ms)
    <prefix>{payment}:settled                 HASH customer_id -> minor units of expired
                                              charges
    <prefix>{shipping}:shipments              HASH saga_id -> JSON shipment (active)
    <prefix>{shipping}:shipments:written      ZSET saga_id -> when written (ms)
    <prefix>{shipping}:cancelled              HASH saga_id -> JSON shipment (cancelled)
    <prefix>{shipping}:cancelled:written      ZSET saga_id -> when written (ms)
    <prefix>{shipping}:trimmed                HASH shipments|cancelled -> records dropped
    <prefix>{notification}:notices            STREAM of notices sent
    <prefix>{notification}:sent               HASH <kind>:<order_id> -> stream entry id
    <prefix>{notification}:sent:written       ZSET <kind>:<order_id> -> when written (ms)
    <prefix>{notification}:trimmed            HASH notices|sent -> records dropped

Records kept per saga (reservations, charges, shipments, cancellations, notices and
sent marks) live SAGA_RETENTION_S: each hash of them has an index (`:written`) by
which the scripts drop, a few per call, the fields written longer ago than that
(saga_worker's `retention` helper, saga_worker/participant/lua/prologue.lua); the
notices stream is trimmed by entry id, which is the time the notice was added.
Expired reservations and charges are added up in `settled`, and the other dropped
records counted in `trimmed`, so the conservation checks (participants.conservation)
hold across trimming. Catalogue, stock, balances and the two tallies are per SKU or
customer, not per saga, and are kept.
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
    reservations_written: str
    settled: str


@dataclass(frozen=True)
class PaymentKeys:
    balances: str
    charges: str
    charges_written: str
    settled: str


@dataclass(frozen=True)
class ShippingKeys:
    shipments: str
    cancelled: str
    shipments_written: str
    cancelled_written: str
    trimmed: str


@dataclass(frozen=True)
class NotificationKeys:
    notices: str
    sent: str
    sent_written: str
    trimmed: str


def inventory(prefix: str) -> InventoryKeys:
    k = ParticipantKeys(prefix, INVENTORY)
    return InventoryKeys(
        k.domain("catalogue"),
        k.domain("stock"),
        k.domain("reservations"),
        k.domain("reservations:written"),
        k.domain("settled"),
    )


def payment(prefix: str) -> PaymentKeys:
    k = ParticipantKeys(prefix, PAYMENT)
    return PaymentKeys(
        k.domain("balances"),
        k.domain("charges"),
        k.domain("charges:written"),
        k.domain("settled"),
    )


def shipping(prefix: str) -> ShippingKeys:
    k = ParticipantKeys(prefix, SHIPPING)
    return ShippingKeys(
        k.domain("shipments"),
        k.domain("cancelled"),
        k.domain("shipments:written"),
        k.domain("cancelled:written"),
        k.domain("trimmed"),
    )


def notification(prefix: str) -> NotificationKeys:
    k = ParticipantKeys(prefix, NOTIFICATION)
    return NotificationKeys(
        k.domain("notices"), k.domain("sent"), k.domain("sent:written"), k.domain("trimmed")
    )
