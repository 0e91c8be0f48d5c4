"""The hop arithmetic of `make hops`: consecutive records of one saga, by topic pair."""

from __future__ import annotations

from benchmarks.hops import Sent, hops, saga_of
from participants.app import saga_id_for_order
from schemas import topics as t


def test_hops_are_the_gaps_between_a_sagas_records_in_time_order() -> None:
    records = [
        Sent("s1", "B", 105),
        Sent("s1", "A", 100),
        Sent("s2", "A", 200),
        Sent("s1", "C", 112),
        Sent("s2", "B", 203),
    ]
    assert hops(records) == {"A -> B": [5, 3], "B -> C": [7]}


def test_hops_are_named_by_the_topics_last_part() -> None:
    records = [Sent("s1", "InventoryService.ReserveItems", 1), Sent("s1", "SagaStepCompleted", 4)]
    assert hops(records) == {"ReserveItems -> SagaStepCompleted": [3]}


def test_a_saga_with_one_record_has_no_hop() -> None:
    assert hops([Sent("s1", "A", 100)]) == {}


def test_a_start_message_belongs_to_the_saga_of_its_order() -> None:
    assert saga_of(t.ORDER_CREATED, b"ord-1") == saga_id_for_order("ord-1")
    assert saga_of(t.RESERVE_ITEMS, b"some-saga") == "some-saga"
