"""Reading the participants' domain state, for tests, the demo and conservation checks.

`snapshot()` reads everything in one pipelined round trip; the single readers are
for a test that cares about one thing.

Records kept per saga live SAGA_RETENTION_S (participants.keys): what the scripts
dropped since shows as tallies, `settled_stock` and `settled_charges` (the units and
amounts of expired reservations and charges) and `trimmed` (how many shipments,
cancellations, notices and sent marks were dropped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from participants import keys
from saga_worker import RedisClient


@dataclass(frozen=True)
class Charge:
    customer_id: str
    amount: int


@dataclass(frozen=True)
class Shipment:
    saga_id: str
    order_id: str
    tracking_number: str
    carrier: str
    country: str


@dataclass(frozen=True)
class Notice:
    entry_id: str
    kind: str  # "confirmation" | "cancellation"
    order_id: str
    customer_id: str
    saga_id: str


@dataclass(frozen=True)
class DomainSnapshot:
    stock: dict[str, int] = field(default_factory=dict)  # sku -> on hand
    reservations: dict[str, dict[str, int]] = field(default_factory=dict)  # saga -> sku -> qty
    balances: dict[str, int] = field(default_factory=dict)  # customer -> minor units
    charges: dict[str, Charge] = field(default_factory=dict)  # by saga id
    shipments: dict[str, Shipment] = field(default_factory=dict)  # active, by saga id
    cancelled_shipments: dict[str, Shipment] = field(default_factory=dict)  # by saga id
    notices: list[Notice] = field(default_factory=list)  # in stream order
    settled_stock: dict[str, int] = field(default_factory=dict)  # sku -> units expired
    settled_charges: dict[str, int] = field(default_factory=dict)  # customer -> expired
    # shipments | cancelled | notices | sent -> records dropped past their retention
    trimmed: dict[str, int] = field(default_factory=dict)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ints(raw: dict[Any, Any]) -> dict[str, int]:
    return {_text(k): int(v) for k, v in raw.items()}


def _reservations(raw: dict[Any, Any]) -> dict[str, dict[str, int]]:
    held: dict[str, dict[str, int]] = {}
    for saga_id, effect in raw.items():
        items = orjson.loads(effect)["items"]
        held[_text(saga_id)] = {sku: int(qty) for sku, qty in items}
    return held


def _charges(raw: dict[Any, Any]) -> dict[str, Charge]:
    out: dict[str, Charge] = {}
    for saga_id, effect in raw.items():
        body = orjson.loads(effect)
        out[_text(saga_id)] = Charge(body["customer_id"], int(body["amount"]))
    return out


def _shipments(raw: dict[Any, Any]) -> dict[str, Shipment]:
    out: dict[str, Shipment] = {}
    for saga_id, effect in raw.items():
        body = orjson.loads(effect)
        out[_text(saga_id)] = Shipment(
            body["saga_id"],
            body["order_id"],
            body["tracking_number"],
            body["carrier"],
            body["country"],
        )
    return out


def _notices(raw: list[Any] | None) -> list[Notice]:
    notices = []
    for entry_id, fields in raw or ():
        f = {_text(k): _text(v) for k, v in fields.items()}
        notices.append(
            Notice(_text(entry_id), f["kind"], f["order_id"], f["customer_id"], f["saga_id"])
        )
    return notices


async def snapshot(redis: RedisClient, key_prefix: str) -> DomainSnapshot:
    """Every participant's domain state, read in one pipelined round trip."""
    inv, pay = keys.inventory(key_prefix), keys.payment(key_prefix)
    ship, note = keys.shipping(key_prefix), keys.notification(key_prefix)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(inv.stock)
        pipe.hgetall(inv.reservations)
        pipe.hgetall(pay.balances)
        pipe.hgetall(pay.charges)
        pipe.hgetall(ship.shipments)
        pipe.hgetall(ship.cancelled)
        pipe.xrange(note.notices)
        pipe.hgetall(inv.settled)
        pipe.hgetall(pay.settled)
        pipe.hgetall(ship.trimmed)
        pipe.hgetall(note.trimmed)
        (
            stock,
            held,
            balances,
            charges,
            shipments,
            cancelled,
            notices,
            settled_stock,
            settled_charges,
            ship_trimmed,
            note_trimmed,
        ) = await pipe.execute()
    return DomainSnapshot(
        stock=_ints(stock),
        reservations=_reservations(held),
        balances=_ints(balances),
        charges=_charges(charges),
        shipments=_shipments(shipments),
        cancelled_shipments=_shipments(cancelled),
        notices=_notices(notices),
        settled_stock=_ints(settled_stock),
        settled_charges=_ints(settled_charges),
        trimmed={**_ints(ship_trimmed), **_ints(note_trimmed)},
    )


async def read_stock(redis: RedisClient, key_prefix: str) -> dict[str, int]:
    return _ints(await redis.hgetall(keys.inventory(key_prefix).stock))


async def read_reservations(redis: RedisClient, key_prefix: str) -> dict[str, dict[str, int]]:
    return _reservations(await redis.hgetall(keys.inventory(key_prefix).reservations))


async def read_balances(redis: RedisClient, key_prefix: str) -> dict[str, int]:
    return _ints(await redis.hgetall(keys.payment(key_prefix).balances))


async def read_charges(redis: RedisClient, key_prefix: str) -> dict[str, Charge]:
    return _charges(await redis.hgetall(keys.payment(key_prefix).charges))


async def read_shipments(redis: RedisClient, key_prefix: str) -> dict[str, Shipment]:
    """Active shipments by saga id."""
    return _shipments(await redis.hgetall(keys.shipping(key_prefix).shipments))


async def read_cancelled_shipments(redis: RedisClient, key_prefix: str) -> dict[str, Shipment]:
    return _shipments(await redis.hgetall(keys.shipping(key_prefix).cancelled))


async def read_notices(redis: RedisClient, key_prefix: str) -> list[Notice]:
    return _notices(await redis.xrange(keys.notification(key_prefix).notices))
