"""Conservation after a run: nothing created or lost, whatever was retried or killed.

Pure: give it what was seeded, a DomainSnapshot and the saga ids that ended
completed and failed; it returns one line per violation (empty: all holds).

- per SKU: stock on hand + units held by completed sagas == stock seeded;
- per customer: balance + amounts charged to completed sagas == balance seeded;
- a saga that did not complete holds no reservation, no charge, no active shipment;
- a completed saga has one active shipment and its order one confirmation;
- no order has more than one notice of a kind.
Reservations, charges and shipments are recorded per saga id (one each per saga).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from participants.inspection import DomainSnapshot
from participants.notification import CONFIRMATION
from participants.seed import SeedData


def conservation_violations(
    seeded: SeedData,
    state: DomainSnapshot,
    completed: Collection[str],
    failed: Collection[str] = (),
) -> list[str]:
    problems: list[str] = []
    done = set(completed)
    for saga_id in sorted(set(failed) & done):
        problems.append(f"saga {saga_id} is both completed and failed")

    held: Counter[str] = Counter()
    for saga_id, items in state.reservations.items():
        if saga_id in done:
            held.update(items)
        else:
            problems.append(f"saga {saga_id} did not complete but holds a reservation {items}")
    for sku in sorted(set(seeded.stock) | set(state.stock)):
        seeded_units = seeded.stock.get(sku, 0)
        on_hand = state.stock.get(sku, 0)
        if on_hand + held[sku] != seeded_units:
            problems.append(
                f"SKU {sku}: {on_hand} on hand + {held[sku]} held != {seeded_units} seeded"
            )

    charged: Counter[str] = Counter()
    for saga_id, charge in state.charges.items():
        if saga_id in done:
            charged[charge.customer_id] += charge.amount
        else:
            problems.append(f"saga {saga_id} did not complete but keeps a charge {charge}")
    for customer in sorted(set(seeded.balances) | set(state.balances)):
        start = seeded.balances.get(customer, 0)
        balance = state.balances.get(customer, 0)
        if balance + charged[customer] != start:
            problems.append(
                f"customer {customer}: balance {balance} + {charged[customer]} charged "
                f"!= {start} seeded"
            )

    for saga_id in sorted(set(state.shipments) - done):
        problems.append(f"saga {saga_id} did not complete but has an active shipment")
    notices = Counter((n.kind, n.order_id) for n in state.notices)
    for (kind, order_id), count in sorted(notices.items()):
        if count > 1:
            problems.append(f"order {order_id} got {count} {kind} notices")
    for saga_id in sorted(done):
        shipment = state.shipments.get(saga_id)
        if shipment is None:
            problems.append(f"completed saga {saga_id} has no active shipment")
        elif notices[(CONFIRMATION, shipment.order_id)] != 1:
            problems.append(f"completed saga {saga_id}: order {shipment.order_id} unconfirmed")
    return problems
