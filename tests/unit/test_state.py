from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from participants.order_fulfillment import ORDER_FULFILLMENT
from saga_worker.engine.harness import Fail, SagaHarness, StepScript, Succeed
from saga_worker.engine.state import (
    TERMINAL,
    TRANSITIONS,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
    Transition,
    check_transition,
    from_ms,
    is_transition_valid,
    to_ms,
)
from saga_worker.errors import InvalidTransitionError, StateError

from .support import ORDER_DATA, RESULTS

MAX_FINISHED_BYTES = 2048


def test_the_table_covers_every_status_and_terminal_ones_lead_nowhere() -> None:
    assert set(TRANSITIONS) == {None, *SagaStatus}
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
    assert is_transition_valid(None, SagaStatus.STARTED)
    assert is_transition_valid(SagaStatus.NEEDS_OPERATOR, SagaStatus.COMPENSATING)
    assert not is_transition_valid(SagaStatus.COMPENSATING, SagaStatus.COMPLETED)
    assert not is_transition_valid(SagaStatus.FAILED, SagaStatus.COMPENSATING)
    with pytest.raises(InvalidTransitionError, match="from completed to pending"):
        check_transition(SagaStatus.COMPLETED, SagaStatus.PENDING)


# Every pair of the transition table, written out by hand: a row is the status a saga
# is in (`-` for no saga yet), a column the status it moves to, `Y` allowed, `.` refused.
# It is not derived from TRANSITIONS: a changed entry there must fail this test.
PINNED_TABLE = """
                started  pending  compensating  completed  failed  needs_operator
-                  Y        .          .            .         .          .
started            .        Y          .            .         .          .
pending            .        Y          Y            Y         Y          Y
compensating       .        .          Y            .         Y          Y
completed          .        .          .            .         .          .
failed             .        .          .            .         .          .
needs_operator     .        Y          Y            .         .          Y
"""


def pinned_pairs() -> dict[tuple[SagaStatus | None, SagaStatus], bool]:
    header, *rows = PINNED_TABLE.strip().splitlines()
    columns = [SagaStatus(name) for name in header.split()]
    pairs: dict[tuple[SagaStatus | None, SagaStatus], bool] = {}
    for row in rows:
        name, *marks = row.split()
        assert len(marks) == len(columns), row
        from_status = None if name == "-" else SagaStatus(name)
        for to_status, mark in zip(columns, marks, strict=True):
            assert mark in ("Y", "."), row
            pairs[(from_status, to_status)] = mark == "Y"
    return pairs


def test_the_whole_transition_table_is_pinned_pair_by_pair() -> None:
    pinned = pinned_pairs()
    # the pinned table names every status, as a source and as a target
    assert {to for _, to in pinned} == set(SagaStatus)
    assert {from_ for from_, _ in pinned} == {None, *SagaStatus}
    assert len(pinned) == 7 * 6
    assert sum(pinned.values()) == 13
    for (from_status, to_status), allowed in pinned.items():
        assert is_transition_valid(from_status, to_status) is allowed, (from_status, to_status)
        if allowed:
            check_transition(from_status, to_status)
        else:
            with pytest.raises(InvalidTransitionError, match=f"from {from_status} to {to_status}"):
                check_transition(from_status, to_status)
    assert set(TRANSITIONS) == {None, *SagaStatus}  # nothing in the table beyond these


def test_times_round_trip_exactly_in_milliseconds() -> None:
    at = datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    assert from_ms(to_ms(at)) == at
    assert to_ms(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=1)) == 1
    with pytest.raises(StateError, match=r"^saga times must be timezone-aware$"):
        to_ms(datetime(2025, 1, 1))


def test_times_are_whole_milliseconds_rounded_down() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert to_ms(epoch + timedelta(microseconds=1_999)) == 1
    assert type(to_ms(epoch + timedelta(microseconds=1_500))) is int
    assert to_ms(epoch - timedelta(microseconds=1)) == -1


def finished(scripts: dict[str, StepScript]) -> SagaState:
    base = {name: StepScript(then=Succeed(RESULTS[name])) for name in RESULTS}
    base.update(scripts)
    harness = SagaHarness(ORDER_FULFILLMENT, base)
    return harness.run_saga("5f0c6c1e-8d7a-4e55-9f7c-6a1d2b3c4d5e", ORDER_DATA)


@pytest.mark.parametrize(
    ("scripts", "status"),
    [
        ({}, SagaStatus.COMPLETED),
        ({"create_shipment": StepScript(attempts=(Fail("no carrier"),))}, SagaStatus.FAILED),
        (
            {"create_shipment": StepScript(then=Fail("carrier down", retryable=True))},
            SagaStatus.FAILED,
        ),
    ],
)
def test_state_round_trips_and_stays_small(
    scripts: dict[str, StepScript], status: SagaStatus
) -> None:
    state = finished(scripts)
    assert state.status is status
    blob = orjson.dumps(state.to_dict())
    assert len(blob) < MAX_FINISHED_BYTES, len(blob)
    again = SagaState.from_dict(orjson.loads(blob))
    assert again == state


def test_step_defaults_are_left_out() -> None:
    assert StepState().to_dict() == {"s": "not_started"}
    assert StepState.from_dict({"s": "not_started"}) == StepState()
    pending = StepState(StepStatus.PENDING)
    assert StepState.from_dict(pending.to_dict()) == pending
    full = StepState(StepStatus.COMPENSATED, 2, {"x": 1}, "e", True, True, 1, 3, 2)
    assert StepState.from_dict(full.to_dict()) == full


def test_history_rows_drop_trailing_nones() -> None:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    row = Transition(at, "StartSaga", None, SagaStatus.STARTED).to_list()
    assert row == [to_ms(at), "StartSaga", None, "started"]
    assert Transition.from_list(row) == Transition(at, "StartSaga", None, SagaStatus.STARTED)


@pytest.mark.parametrize(
    "blob",
    [{}, {"id": "x"}, {"id": "x", "def": "D", "ver": 1, "status": "nope"}],
)
def test_malformed_state_is_a_state_error(blob: dict[str, object]) -> None:
    with pytest.raises(StateError, match="malformed saga state"):
        SagaState.from_dict(blob)
