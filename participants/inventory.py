"""Inventory: stock per SKU; reserve every item of an order or none; release exactly that.

Reserving checks every line before moving any stock (lua/inventory.lua); a SKU
ordered on several lines is reserved once with the summed quantity. An unknown
SKU or too little stock is a business failure naming the SKU. The reservation
recorded is what the release gives back, whatever `original_result` says.
"""

from __future__ import annotations

from participants import keys, lua_parts
from saga_worker import Apply, JsonObject, Kind, Participant, Route, Verdict
from schemas import ReleaseReservation, ReserveItems
from schemas import topics as t


def wanted_quantities(command: ReserveItems) -> dict[str, int]:
    """Quantity per SKU, in the order the SKUs first appear."""
    wanted: dict[str, int] = {}
    for item in command.items:
        wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
    return wanted


def prepare_reserve(command: ReserveItems) -> Verdict:
    wanted = wanted_quantities(command)
    effect: JsonObject = {
        "saga_id": command.saga_id,
        "items": [[sku, quantity] for sku, quantity in wanted.items()],
    }
    result: JsonObject = {
        "reservation_id": f"res:{command.saga_id}",
        "reserved": [{"sku": sku, "quantity": quantity} for sku, quantity in wanted.items()],
    }
    return Apply(args=effect, result=result, effect=effect)


def _domain_keys(prefix: str) -> tuple[str, ...]:
    k = keys.inventory(prefix)
    return (k.stock, k.reservations, k.reservations_written, k.settled)


INVENTORY = Participant(
    name=keys.INVENTORY,
    routes={
        t.RESERVE_ITEMS: Route(ReserveItems, Kind.ACTION, prepare_reserve),
        t.RELEASE_RESERVATION: Route(ReleaseReservation, Kind.COMPENSATION),
    },
    script=lua_parts("settling.lua", "inventory.lua"),
    domain_keys=_domain_keys,
)
