"""Conservation after a run: nothing created or lost, whatever was retried or killed.

Pure: give it what was seeded, a DomainSnapshot and the saga ids that ended
completed and failed; it returns one line per violation (empty: all holds).

- per SKU: stock on hand + units held by completed sagas + units settled == stock seeded;
- per customer: balance + amounts charged to completed sagas + amounts settled ==
  balance seeded;
- a saga that did not complete holds no reservation, no charge, no active shipment;
- a completed saga has one active shipment and its order one confirmation;
- no order has more than one notice of a kind.
Reservations, charges and shipments are recorded per saga id (one each per saga).

Records outlive their saga by at most SAGA_RETENTION_S (participants.keys); a
dropped record is not a lost one. Expired reservations and charges are settled (their
units and amounts tallied, DomainSnapshot.settled_*), so the sums stay exact. Dropped
shipments and notices are only counted (DomainSnapshot.trimmed): completed sagas
without a shipment, or without a confirmation, are violations only when there are
more of them than shipments, or notices, dropped.
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
    for sku in sorted(set(seeded.stock) | set(state.stock) | set(state.settled_stock)):
        seeded_units = seeded.stock.get(sku, 0)
        on_hand = state.stock.get(sku, 0)
        settled = state.settled_stock.get(sku, 0)
        if on_hand + held[sku] + settled != seeded_units:
            problems.append(
                f"SKU {sku}: {on_hand} on hand + {held[sku]} held"
                f"{_settled(settled)} != {seeded_units} seeded"
            )

    charged: Counter[str] = Counter()
    for saga_id, charge in state.charges.items():
        if saga_id in done:
            charged[charge.customer_id] += charge.amount
        else:
            problems.append(f"saga {saga_id} did not complete but keeps a charge {charge}")
    customers = set(seeded.balances) | set(state.balances) | set(state.settled_charges)
    for customer in sorted(customers):
        start = seeded.balances.get(customer, 0)
        balance = state.balances.get(customer, 0)
        settled = state.settled_charges.get(customer, 0)
        if balance + charged[customer] + settled != start:
            problems.append(
                f"customer {customer}: balance {balance} + {charged[customer]} charged"
                f"{_settled(settled)} != {start} seeded"
            )

    for saga_id in sorted(set(state.shipments) - done):
        problems.append(f"saga {saga_id} did not complete but has an active shipment")
    notices = Counter((n.kind, n.order_id) for n in state.notices)
    for (kind, order_id), count in sorted(notices.items()):
        if count > 1:
            problems.append(f"order {order_id} got {count} {kind} notices")
    unshipped: list[str] = []
    unconfirmed: list[str] = []
    for saga_id in sorted(done):
        shipment = state.shipments.get(saga_id)
        if shipment is None:
            unshipped.append(f"completed saga {saga_id} has no active shipment")
        elif notices[(CONFIRMATION, shipment.order_id)] > 1:
            problems.append(f"completed saga {saga_id}: order {shipment.order_id} unconfirmed")
        elif notices[(CONFIRMATION, shipment.order_id)] == 0:
            unconfirmed.append(f"completed saga {saga_id}: order {shipment.order_id} unconfirmed")
    problems.extend(_beyond_dropped(unshipped, state.trimmed.get("shipments", 0), "shipments"))
    problems.extend(_beyond_dropped(unconfirmed, state.trimmed.get("notices", 0), "notices"))
    return problems


def _settled(settled: int) -> str:
    return f" + {settled} settled" if settled else ""


def _beyond_dropped(missing: list[str], dropped: int, what: str) -> list[str]:
    """Every line of `missing`, unless the records dropped past their retention can
    account for all of them."""
    if len(missing) <= dropped:
        return []
    if not dropped:
        return missing
    note = f" ({len(missing)} such sagas, only {dropped} {what} dropped past their retention)"
    return [line + note for line in missing]
