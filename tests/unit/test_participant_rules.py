"""The participants' pure rules: what each command would do, or why it is refused."""

from __future__ import annotations

from typing import Any

import pytest

from participants.app import NAMES, app
from participants.conservation import conservation_violations
from participants.inspection import Charge, DomainSnapshot, Notice, Shipment
from participants.inventory import prepare_reserve
from participants.notification import prepare_cancellation, prepare_confirmation
from participants.payment import MAX_AMOUNT, prepare_charge
from participants.seed import DEMO_SEED, SeedData
from participants.shipping import (
    DEFAULT_COUNTRIES,
    countries_from_env,
    shipping_participant,
    tracking_number,
)
from saga_worker.errors import InvalidKnobError, UnknownParticipantError
from saga_worker.participant.knobs import FaultInjector, Knobs
from saga_worker.participant.protocol import Apply, Refuse
from schemas import (
    CreateShipment,
    ProcessPayment,
    ReserveItems,
    SendCancellationNotice,
    SendOrderConfirmation,
)
from schemas import topics as t

BASE: dict[str, Any] = {
    "saga_id": "s1",
    "step_name": "step",
    "order_id": "o1",
    "customer_id": "alice",
    "items": [{"sku": "a", "quantity": 2, "unit_price": 150}],
}


def test_reserving_sums_a_sku_ordered_on_several_lines() -> None:
    items = [
        {"sku": "a", "quantity": 2, "unit_price": 1},
        {"sku": "b", "quantity": 1, "unit_price": 1},
        {"sku": "a", "quantity": 3, "unit_price": 1},
    ]
    verdict = prepare_reserve(ReserveItems.model_validate({**BASE, "items": items}))
    assert isinstance(verdict, Apply)
    assert verdict.effect == {"saga_id": "s1", "items": [["a", 5], ["b", 1]]}
    assert verdict.result["reserved"] == [{"sku": "a", "quantity": 5}, {"sku": "b", "quantity": 1}]


@pytest.mark.parametrize("method", ["declined_card", "Declined", "declined-visa"])
def test_a_declined_payment_method_is_refused(method: str) -> None:
    verdict = prepare_charge(ProcessPayment.model_validate({**BASE, "payment_method": method}))
    assert isinstance(verdict, Refuse)
    assert verdict.code == "payment_declined"


def test_a_charge_is_the_amount_due_as_an_exact_string() -> None:
    verdict = prepare_charge(ProcessPayment.model_validate({**BASE, "payment_method": "card"}))
    assert isinstance(verdict, Apply)
    assert verdict.effect == {"saga_id": "s1", "customer_id": "alice", "amount": "300"}
    assert verdict.result["amount"] == 300
    explicit = prepare_charge(ProcessPayment.model_validate({**BASE, "amount": 7}))
    assert isinstance(explicit, Apply)
    assert explicit.effect["amount"] == "7"


def test_an_amount_lua_cannot_compare_exactly_is_refused() -> None:
    items = [{"sku": "a", "quantity": 10_000, "unit_price": 10**12}]
    verdict = prepare_charge(ProcessPayment.model_validate({**BASE, "items": items}))
    assert isinstance(verdict, Refuse)
    assert verdict.code == "amount_too_large"
    assert MAX_AMOUNT < 10_000 * 10**12


def shipment(address: dict[str, Any], countries: frozenset[str] = DEFAULT_COUNTRIES) -> Any:
    participant = shipping_participant(countries)
    route = participant.routes[t.CREATE_SHIPMENT]
    return route.prepare(CreateShipment.model_validate({**BASE, "shipping_address": address}))


@pytest.mark.parametrize(
    ("address", "code"),
    [
        ({"country": "AQ"}, "unsupported_destination"),
        ({"country": "US", "postal_code": "ABCDE"}, "malformed_address"),
        ({"country": "NL", "postal_code": "12345"}, "malformed_address"),
        ({"country": "DE", "postal_code": "1011"}, "malformed_address"),
    ],
)
def test_unsupported_or_malformed_addresses_are_refused(address: dict[str, Any], code: str) -> None:
    verdict = shipment(address)
    assert isinstance(verdict, Refuse)
    assert verdict.code == code


@pytest.mark.parametrize(
    "address",
    [
        {"country": "DE"},
        {"country": "US", "postal_code": "94105-1234"},
        {"country": "NL", "postal_code": "1011 ab"},
    ],
)
def test_supported_addresses_get_a_deterministic_tracking_number(address: dict[str, Any]) -> None:
    verdict = shipment(address)
    assert isinstance(verdict, Apply)
    assert verdict.result["tracking_number"] == tracking_number("s1")
    assert tracking_number("s1") != tracking_number("s2")


def test_supported_countries_come_from_the_environment() -> None:
    assert countries_from_env({}) == DEFAULT_COUNTRIES
    assert countries_from_env({"SAGA_SHIPPING_COUNTRIES": "de, fr"}) == {"DE", "FR"}
    with pytest.raises(InvalidKnobError, match="SAGA_SHIPPING_COUNTRIES"):
        countries_from_env({"SAGA_SHIPPING_COUNTRIES": "Germany"})
    assert isinstance(shipment({"country": "DE"}, frozenset({"FR"})), Refuse)


def test_both_notices_record_their_kind_per_order() -> None:
    body = {**BASE, "step_name": "send"}
    confirm = prepare_confirmation(SendOrderConfirmation.model_validate(body))
    cancel = prepare_cancellation(SendCancellationNotice.model_validate(body))
    assert isinstance(confirm, Apply)
    assert isinstance(cancel, Apply)
    assert (confirm.args["kind"], cancel.args["kind"]) == ("confirmation", "cancellation")


def test_knobs_are_read_per_participant_and_validated() -> None:
    env = {
        "SAGA_PAYMENT_LATENCY_MS": "25",
        "SAGA_PAYMENT_BUSINESS_FAILURE_RATE": "0.1",
        "SAGA_PAYMENT_ERROR_RATE": "0.2",
        "SAGA_PAYMENT_CRASH_RATE": "0.05",
        "SAGA_PAYMENT_HANG_RATE": "0.01",
        "SAGA_PARTICIPANT_SEED": "42",
    }
    assert Knobs.from_env("payment", env) == Knobs(25, 0.1, 0.2, 0.05, 0.01, 42)
    assert Knobs.from_env("inventory", env) == Knobs(seed=42)
    assert Knobs.from_env("payment", {**env, "SAGA_PAYMENT_SEED": "7"}).seed == 7
    for bad in ({"SAGA_PAYMENT_ERROR_RATE": "1.5"}, {"SAGA_PAYMENT_LATENCY_MS": "fast"}):
        with pytest.raises(InvalidKnobError, match="SAGA_PAYMENT_"):
            Knobs.from_env("payment", bad)


def test_fault_draws_are_reproducible_from_the_seed() -> None:
    knobs = Knobs(error_rate=0.5, seed=3)
    first, second = FaultInjector(knobs), FaultInjector(knobs)
    assert [first.error() for _ in range(50)] == [second.error() for _ in range(50)]
    assert not any(FaultInjector(Knobs()).crash() for _ in range(100))


def test_every_participant_is_registered_by_name() -> None:
    assert [app.build_participant(name).name for name in NAMES] == list(NAMES)
    with pytest.raises(UnknownParticipantError):
        app.build_participant("billing")


def test_the_demo_seed_prices_every_stocked_sku() -> None:
    assert {item.sku for item in DEMO_SEED.catalogue} == set(DEMO_SEED.stock)
    assert DEMO_SEED.price("sku-ceramic-mug") == 1490


SEEDED = SeedData(stock={"a": 10}, balances={"alice": 1_000})


def test_conservation_holds_for_a_completed_and_a_failed_saga() -> None:
    state = DomainSnapshot(
        stock={"a": 8},
        reservations={"s1": {"a": 2}},
        balances={"alice": 700},
        charges={"s1": Charge("alice", 300)},
        shipments={"s1": Shipment("s1", "o1", "TRK1", "demo-post", "DE")},
        notices=[Notice("1-0", "confirmation", "o1", "alice", "s1")],
    )
    assert conservation_violations(SEEDED, state, completed={"s1"}, failed={"s2"}) == []


def test_conservation_names_what_leaked() -> None:
    state = DomainSnapshot(
        stock={"a": 7},
        reservations={"s2": {"a": 3}},
        balances={"alice": 1_000},
        charges={},
        notices=[Notice("1-0", "confirmation", "o1", "alice", "s1")] * 2,
    )
    problems = conservation_violations(SEEDED, state, completed={"s1"}, failed={"s2"})
    assert any("s2 did not complete but holds" in p for p in problems)
    assert any("SKU a" in p for p in problems)
    assert any("has no active shipment" in p for p in problems)
    assert any("2 confirmation notices" in p for p in problems)


def test_hanging_is_decided_per_saga_and_takes_the_planned_share() -> None:
    faults = FaultInjector(Knobs(hang_rate=0.25, seed=7))
    sagas = [f"saga-{i}" for i in range(4000)]
    hung = [s for s in sagas if faults.hangs(s)]
    assert 0.22 < len(hung) / len(sagas) < 0.28
    # Every attempt of a hung saga hangs again: the answer depends on the saga alone.
    assert all(faults.hangs(s) for s in hung)
    assert not FaultInjector(Knobs(hang_rate=0.0)).hangs("saga-1")
