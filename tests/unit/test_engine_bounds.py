"""What grows with a saga's age stays bounded (issue 12, unbounded growth): retries
"forever" end with an operator well before the wire's attempt limit, and the history
keeps its head and tail with one marker for what was dropped between."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from participants.order_fulfillment import ORDER_FULFILLMENT
from saga_worker.engine import decide as engine
from saga_worker.engine.decide import (
    HISTORY_HEAD,
    HISTORY_TAIL,
    HISTORY_TRIMMED,
    UNLIMITED_ATTEMPTS,
    decide,
)
from saga_worker.engine.definition import WIRE_MAX_ATTEMPT, SagaDefinition, Step
from saga_worker.engine.events import OperatorRetry, TimerFired
from saga_worker.engine.harness import Action, Fail, NoReply, SagaHarness, StepScript, Succeed
from saga_worker.engine.retry import RetryPolicy
from saga_worker.engine.state import SagaStatus, StepStatus, Transition, is_transition_valid

from .support import ORDER_DATA, RESULTS

SID = "saga-1"
FOREVER = "send_confirmation"  # retriable, max_attempts=None
FAST_FOREVER = RetryPolicy(
    max_attempts=None, initial_backoff=timedelta(seconds=1), max_backoff=timedelta(seconds=1)
)
FAILING: dict[str, Action] = {
    "silent": NoReply(),
    "retryable": Fail("smtp down", retryable=True),
    "unsure": Fail("smtp down", retryable=None),
}


def _harness(definition: SagaDefinition, **scripts: StepScript) -> SagaHarness:
    merged = {name: StepScript(then=Succeed(RESULTS[name])) for name in RESULTS}
    merged.update(scripts)
    return SagaHarness(definition, merged)


@pytest.mark.parametrize("failing", FAILING.values(), ids=FAILING.keys())
def test_retrying_forever_needs_an_operator_well_before_the_wire_limit(failing: Action) -> None:
    assert ORDER_FULFILLMENT.steps[FOREVER].policy.max_attempts is None
    assert UNLIMITED_ATTEMPTS * 5 <= WIRE_MAX_ATTEMPT
    h = _harness(ORDER_FULFILLMENT, **{FOREVER: StepScript(then=failing)})
    h.run_saga(SID, ORDER_DATA)
    state = h.state(SID)
    assert state.status is SagaStatus.NEEDS_OPERATOR
    assert state.step(FOREVER).attempt == UNLIMITED_ATTEMPTS
    assert state.step(FOREVER).stuck
    assert not state.timers
    assert state.operator_reason is not None
    assert state.operator_reason.startswith(
        f"step {FOREVER} gave up after {UNLIMITED_ATTEMPTS} attempts "
        f"(unlimited retries stop after {UNLIMITED_ATTEMPTS} attempts)"
    )
    # an operator gives it a fresh budget, as any stuck step
    h.scripts[FOREVER] = StepScript(then=Succeed({}))
    resumed = h.apply(SID, OperatorRetry())
    assert [m.message_id for m in resumed.outgoing] == [
        f"{SID}:{FOREVER}:a{UNLIMITED_ATTEMPTS + 1}"
    ]
    h.run()
    assert h.state(SID).status is SagaStatus.COMPLETED


@pytest.mark.parametrize("compensation", FAILING.values(), ids=FAILING.keys())
def test_compensating_forever_needs_an_operator_too(compensation: Action) -> None:
    definition = replace(ORDER_FULFILLMENT, compensation_retry=FAST_FOREVER)
    h = _harness(
        definition,
        create_shipment=StepScript(then=Fail("no carrier")),
        process_payment=StepScript(
            then=Succeed(RESULTS["process_payment"]), compensations_then=compensation
        ),
    )
    h.run_saga(SID, ORDER_DATA)
    state = h.state(SID)
    assert state.status is SagaStatus.NEEDS_OPERATOR
    assert state.step("process_payment").comp_attempt == UNLIMITED_ATTEMPTS
    assert state.step("process_payment").status is StepStatus.COMPENSATION_FAILED
    assert state.operator_reason is not None
    assert f"(unlimited retries stop after {UNLIMITED_ATTEMPTS} attempts)" in state.operator_reason


@pytest.mark.parametrize("max_attempts", [None, 20_000])
def test_no_attempt_past_the_wire_limit_is_sent_not_even_by_an_operator(
    max_attempts: int | None,
) -> None:
    confirmation = ORDER_FULFILLMENT.stages[-1]
    assert isinstance(confirmation, Step)
    retried = replace(confirmation, retry=RetryPolicy(max_attempts=max_attempts))
    definition = replace(ORDER_FULFILLMENT, stages=(*ORDER_FULFILLMENT.stages[:-1], retried))
    h = _harness(definition, **{FOREVER: StepScript(then=NoReply())})
    h.start(SID, ORDER_DATA)
    while h.state(SID).step(FOREVER).attempt == 0:
        h.step_once()
    # the step after many operator resumes: its attempt numbers near the wire's limit
    state = h.state(SID)
    last = f"t:{FOREVER}:{WIRE_MAX_ATTEMPT}"
    near = replace(state.step(FOREVER), attempt=WIRE_MAX_ATTEMPT, base=WIRE_MAX_ATTEMPT - 10)
    state = replace(
        state, steps={**state.steps, FOREVER: near}, timers={last: state.timers[f"t:{FOREVER}:1"]}
    )
    gave_up = decide(state, TimerFired(last), h.clock.now, definition)
    assert gave_up.state is not None
    assert gave_up.state.status is SagaStatus.NEEDS_OPERATOR
    assert gave_up.outgoing == ()
    assert gave_up.state.operator_reason is not None
    assert f"(attempt {WIRE_MAX_ATTEMPT} is the last the wire carries)" in (
        gave_up.state.operator_reason
    )
    refused = decide(gave_up.state, OperatorRetry(), h.clock.now, definition)
    assert refused.ignored == (
        f"step {FOREVER} made every attempt the wire carries ({WIRE_MAX_ATTEMPT})"
    )
    assert refused.outgoing == ()


@pytest.mark.parametrize("failing", FAILING.values(), ids=FAILING.keys())
def test_the_history_keeps_its_head_and_tail_and_counts_what_it_dropped(
    failing: Action, monkeypatch: pytest.MonkeyPatch
) -> None:
    def history_of_a_long_saga() -> tuple[Transition, ...]:
        h = _harness(ORDER_FULFILLMENT, **{FOREVER: StepScript(attempts=(failing,) * 300)})
        h.run_saga(SID, ORDER_DATA)
        assert h.state(SID).status is SagaStatus.COMPLETED
        longest = max(len(a.decision.state.history) for a in h.log if a.decision.state)
        assert longest <= engine.HISTORY_HEAD + 1 + engine.HISTORY_TAIL
        return h.state(SID).history

    bounded = history_of_a_long_saga()
    with monkeypatch.context() as unbounded:
        unbounded.setattr(engine, "HISTORY_TAIL", 10**9)
        full = history_of_a_long_saga()
    assert len(full) > 2 * (HISTORY_HEAD + 1 + HISTORY_TAIL)
    assert len(bounded) == HISTORY_HEAD + 1 + HISTORY_TAIL
    assert bounded[:HISTORY_HEAD] == full[:HISTORY_HEAD]
    assert bounded[-HISTORY_TAIL:] == full[-HISTORY_TAIL:]
    marker = bounded[HISTORY_HEAD]
    dropped = full[HISTORY_HEAD:-HISTORY_TAIL]
    assert marker.event == HISTORY_TRIMMED
    assert marker.detail == f"{len(dropped)} entries dropped"
    assert marker.from_status is dropped[0].from_status
    assert marker.to_status is dropped[-1].to_status
    assert is_transition_valid(marker.from_status, marker.to_status)
