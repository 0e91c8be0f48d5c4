"""Conservation across records dropped past their retention: dropped is not lost."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from participants.conservation import conservation_violations
from participants.inspection import Charge, DomainSnapshot, Notice, Shipment
from participants.seed import SeedData

SEEDED = SeedData(stock={"a": 10}, balances={"alice": 1_000})


AFTER_TRIMMING = DomainSnapshot(  # s1 completed long ago: its records dropped and settled
    stock={"a": 6},
    reservations={"s2": {"a": 2}},
    settled_stock={"a": 2},
    balances={"alice": 400},
    charges={"s2": Charge("alice", 300)},
    settled_charges={"alice": 300},
    shipments={"s2": Shipment("s2", "o2", "TRK2", "demo-post", "DE")},
    notices=[Notice("2-0", "confirmation", "o2", "alice", "s2")],
    trimmed={"shipments": 1, "notices": 1, "sent": 1},
)


def _after_trimming(**changes: Any) -> DomainSnapshot:
    return replace(AFTER_TRIMMING, **changes)


def test_settled_units_and_amounts_and_dropped_records_are_not_counted_as_lost() -> None:
    state = _after_trimming()
    assert conservation_violations(SEEDED, state, completed={"s1", "s2"}) == []


def test_without_the_settled_tallies_the_sums_do_not_hold() -> None:
    state = _after_trimming(settled_stock={}, settled_charges={})
    problems = conservation_violations(SEEDED, state, completed={"s1", "s2"})
    assert problems == [
        "SKU a: 6 on hand + 2 held != 10 seeded",
        "customer alice: balance 400 + 300 charged != 1000 seeded",
    ]


def test_more_completed_sagas_without_a_shipment_than_shipments_dropped_are_named() -> None:
    state = _after_trimming(stock={"a": 6}, settled_stock={"a": 2})
    problems = conservation_violations(SEEDED, state, completed={"s0", "s1", "s2"})
    # Two sagas lack a shipment, one shipment was dropped: one of them is a loss.
    assert [p for p in problems if "shipment" in p] == [
        f"completed saga {s} has no active shipment "
        "(2 such sagas, only 1 shipments dropped past their retention)"
        for s in ("s0", "s1")
    ]


def test_a_missing_confirmation_is_excused_only_by_a_dropped_notice() -> None:
    unconfirmed = _after_trimming(notices=[])
    assert conservation_violations(SEEDED, unconfirmed, completed={"s2"}) == []
    nothing_dropped = _after_trimming(notices=[], trimmed={"shipments": 1})
    assert conservation_violations(SEEDED, nothing_dropped, completed={"s2"}) == [
        "completed saga s2: order o2 unconfirmed"
    ]
    # A second confirmation is never excused.
    twice = [Notice("2-0", "confirmation", "o2", "alice", "s2")] * 2
    problems = conservation_violations(SEEDED, _after_trimming(notices=twice), completed={"s2"})
    assert "order o2 got 2 confirmation notices" in problems
