"""Every path of the engine, on OrderFulfillment and on a definition with parallel groups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from participants.order_fulfillment import COMPENSATION_RETRY, ORDER_FULFILLMENT, STEP_RETRY
from saga_worker.engine.decide import (
    HISTORY_HEAD,
    HISTORY_TAIL,
    HISTORY_TRIMMED,
    Decision,
    TimerCancel,
    TimerSet,
    command_belongs_to,
    command_id,
    compensation_id,
    decide,
    parse_timer_id,
)
from saga_worker.engine.definition import WIRE_MAX_ATTEMPT, Parallel, SagaDefinition, Step
from saga_worker.engine.events import (
    CompensationSucceeded,
    Event,
    OperatorAbort,
    OperatorRetry,
    StartSaga,
    StepFailed,
    StepSucceeded,
    TimerFired,
)
from saga_worker.engine.harness import Action, Fail, NoReply, SagaHarness, StepScript, Succeed
from saga_worker.engine.retry import RetryPolicy, compute_backoff
from saga_worker.engine.state import SagaState, SagaStatus, StepStatus, Transition
from saga_worker.errors import DefinitionMismatchError
from schemas import topics

from .support import ORDER_DATA, RESULTS, parallel_definition

D = ORDER_FULFILLMENT
T0 = datetime(2025, 1, 1, tzinfo=UTC)
SID = "saga-1"
STEPS = list(D.steps)
COMPENSATABLE = ["reserve_inventory", "process_payment", "create_shipment"]
COMP_TOPIC = {
    "reserve_inventory": topics.RELEASE_RESERVATION,
    "process_payment": topics.REFUND_PAYMENT,
    "create_shipment": topics.CANCEL_SHIPMENT,
}


def ok_scripts() -> dict[str, StepScript]:
    return {name: StepScript(then=Succeed(RESULTS[name])) for name in STEPS}


def run(scripts: dict[str, StepScript] | None = None, minimal_replies: bool = False) -> SagaHarness:
    merged = ok_scripts()
    merged.update(scripts or {})
    harness = SagaHarness(D, merged, minimal_replies=minimal_replies)
    harness.run_saga(SID, ORDER_DATA)
    return harness


def topics_sent(h: SagaHarness) -> list[str]:
    return [m.topic for m in h.published]


def assert_quiet(h: SagaHarness) -> None:
    state = h.state(SID)
    assert state.finished or state.status is SagaStatus.NEEDS_OPERATOR
    if state.finished:
        assert not state.timers
        assert not h.timers


# -- the happy path ------------------------------------------------------------------


@pytest.mark.parametrize("minimal", [False, True])
def test_happy_path_runs_every_step_in_order_and_completes(minimal: bool) -> None:
    h = run(minimal_replies=minimal)
    state = h.state(SID)
    assert state.status is SagaStatus.COMPLETED
    assert topics_sent(h) == [
        topics.RESERVE_ITEMS,
        topics.PROCESS_PAYMENT,
        topics.CREATE_SHIPMENT,
        topics.SEND_ORDER_CONFIRMATION,
        topics.FULFILLMENT_COMPLETED,
    ]
    assert {n: s.status for n, s in state.steps.items()} == dict.fromkeys(
        STEPS, StepStatus.SUCCEEDED
    )
    assert_quiet(h)
    assert [(t.from_status, t.to_status) for t in state.history] == [
        (None, SagaStatus.STARTED),
        (SagaStatus.STARTED, SagaStatus.PENDING),
        (SagaStatus.PENDING, SagaStatus.PENDING),
        (SagaStatus.PENDING, SagaStatus.PENDING),
        (SagaStatus.PENDING, SagaStatus.PENDING),
        (SagaStatus.PENDING, SagaStatus.COMPLETED),
    ]


def test_command_and_outcome_payloads() -> None:
    h = run()
    first, second = h.published[0], h.published[1]
    assert first.key == SID
    assert (
        first.message_id == command_id(SID, "reserve_inventory", 1) == "saga-1:reserve_inventory:a1"
    )
    assert first.payload == {
        **ORDER_DATA,
        "saga_id": SID,
        "step_name": "reserve_inventory",
        "command_id": "saga-1:reserve_inventory:a1",
        "attempt": 1,
        "message_id": "saga-1:reserve_inventory:a1",
        "schema_version": 1,
        "results": {},
    }
    assert second.payload["results"] == {"reserve_inventory": RESULTS["reserve_inventory"]}
    outcome = h.published[-1]
    assert outcome.topic == topics.FULFILLMENT_COMPLETED
    assert outcome.payload == {
        **ORDER_DATA,
        "saga_id": SID,
        "results": RESULTS,
        "message_id": "saga-1:completed",
        "schema_version": 1,
    }


def test_start_sets_the_first_timeout_timer() -> None:
    decision = decide(None, StartSaga(SID, ORDER_DATA), T0, D)
    assert decision.timers == (TimerSet("t:reserve_inventory:1", T0 + timedelta(seconds=10)),)
    assert decision.state is not None
    assert decision.state.timers == {"t:reserve_inventory:1": T0 + timedelta(seconds=10)}
    assert decision.ignored is None


def test_success_cancels_the_timeout() -> None:
    state = started()
    decision = decide(state, StepSucceeded("reserve_inventory", {}), T0, D)
    assert decision.timers == (
        TimerCancel("t:reserve_inventory:1"),
        TimerSet("t:process_payment:1", T0 + timedelta(seconds=10)),
    )


# -- business failures and compensation ---------------------------------------------


@pytest.mark.parametrize("failing", COMPENSATABLE)
def test_a_business_failure_compensates_earlier_steps_in_reverse(failing: str) -> None:
    h = run({failing: StepScript(attempts=(Fail("no", retryable=False),))})
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    done = COMPENSATABLE[: COMPENSATABLE.index(failing)]
    comps = [m.topic for m in h.published if m.topic in COMP_TOPIC.values()]
    assert comps == [COMP_TOPIC[s] for s in reversed(done)]
    assert state.step(failing).status is StepStatus.FAILED
    assert state.step(failing).attempt == 1  # business failures are not retried
    for name in done:
        assert state.step(name).status is StepStatus.COMPENSATED
    assert topics_sent(h)[-2:] == [topics.SEND_CANCELLATION_NOTICE, topics.FULFILLMENT_FAILED]
    failed = h.published[-1].payload
    assert failed["error"] == f"step {failing}: attempt 1 failed: no"
    assert failed["saga_id"] == SID
    assert failed["order_id"] == ORDER_DATA["order_id"]
    assert state.error == failed["error"]
    assert_quiet(h)


def test_compensation_payload_carries_the_original_result() -> None:
    h = run({"process_payment": StepScript(attempts=(Fail("declined"),))})
    release = h.messages(topic=topics.RELEASE_RESERVATION)[0]
    assert release.payload["original_result"] == RESULTS["reserve_inventory"]
    assert release.payload["original_command_id"] == "saga-1:reserve_inventory:a1"
    assert release.payload["command_id"] == compensation_id(SID, "reserve_inventory", 1)
    assert release.message_id == "saga-1:reserve_inventory:c1"
    notice = h.messages(topic=topics.SEND_CANCELLATION_NOTICE)[0]
    assert notice.payload["step_name"] == "send_cancellation_notice"
    assert notice.payload["error"].startswith("step process_payment")


@pytest.mark.parametrize("retryable", [True, None])
@pytest.mark.parametrize("failing", COMPENSATABLE)
def test_retryable_failures_are_retried_until_attempts_run_out(
    failing: str, retryable: bool | None
) -> None:
    h = run({failing: StepScript(then=Fail("flaky", retryable=retryable))})
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    assert STEP_RETRY.max_attempts is not None
    assert state.step(failing).attempt == STEP_RETRY.max_attempts
    sent = h.messages(topic=D.steps[failing].command_topic)
    assert [m.payload["attempt"] for m in sent] == [1, 2, 3]


@pytest.mark.parametrize("failing", COMPENSATABLE)
def test_a_retry_that_succeeds_moves_on(failing: str) -> None:
    h = run({failing: StepScript(attempts=(Fail("flaky", retryable=True), NoReply()))})
    state = h.state(SID)
    assert state.status is SagaStatus.COMPLETED
    assert state.step(failing).attempt == 3
    assert state.step(failing).uncertain  # attempt 2 timed out: unknown outcome on record


def test_retry_waits_for_the_computed_backoff() -> None:
    state = started()
    decision = decide(state, StepFailed("reserve_inventory", "busy", retryable=True), T0, D)
    delay = compute_backoff(STEP_RETRY, 1, command_id(SID, "reserve_inventory", 1))
    assert decision.timers == (
        TimerCancel("t:reserve_inventory:1"),
        TimerSet("r:reserve_inventory:1", T0 + delay),
    )
    assert decision.outgoing == ()
    assert decision.state is not None
    fired = decide(decision.state, TimerFired("r:reserve_inventory:1"), T0 + delay, D)
    assert [m.message_id for m in fired.outgoing] == ["saga-1:reserve_inventory:a2"]


# -- timeouts ------------------------------------------------------------------------


@pytest.mark.parametrize("silent", COMPENSATABLE)
def test_a_step_that_never_answers_is_compensated_too(silent: str) -> None:
    h = run({silent: StepScript(then=NoReply())})
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    assert state.step(silent).attempt == 3
    assert state.step(silent).status is StepStatus.COMPENSATED
    done = COMPENSATABLE[: COMPENSATABLE.index(silent) + 1]  # including its own
    comps = [m.topic for m in h.published if m.topic in COMP_TOPIC.values()]
    assert comps == [COMP_TOPIC[s] for s in reversed(done)]
    assert "timed out" in (state.error or "")
    assert_quiet(h)


def test_the_confirmation_is_retried_until_it_succeeds() -> None:
    silent = (NoReply(),) * 6 + (Fail("smtp down", retryable=True),) * 4
    h = run({"send_confirmation": StepScript(attempts=silent, then=Succeed({}))})
    state = h.state(SID)
    assert state.status is SagaStatus.COMPLETED
    assert state.step("send_confirmation").attempt == 11
    assert not h.messages(topic=topics.CANCEL_SHIPMENT)


def test_a_business_failure_after_the_pivot_needs_an_operator_then_resumes() -> None:
    h = run({"send_confirmation": StepScript(attempts=(Fail("bad address", retryable=False),))})
    state = h.state(SID)
    assert state.status is SagaStatus.NEEDS_OPERATOR
    assert state.operator_reason == (
        "step send_confirmation gave up after 1 attempts: attempt 1 failed: bad address"
    )
    assert state.history[-1].step == "send_confirmation"
    assert state.history[-1].detail == "attempt 1 failed: bad address"
    assert state.step("send_confirmation").stuck
    assert not state.timers
    assert not [m for m in h.published if m.topic in COMP_TOPIC.values()]
    # an abort is refused after the pivot
    refused = h.apply(SID, OperatorAbort("customer asked"))
    assert refused.ignored == "abort refused: the pivot step already succeeded"
    resumed = h.apply(SID, OperatorRetry())
    assert resumed.outgoing[0].message_id == "saga-1:send_confirmation:a2"
    h.run()
    state = h.state(SID)
    assert state.status is SagaStatus.COMPLETED
    assert state.operator_reason is None


# -- compensation trouble ------------------------------------------------------------


def test_compensation_times_out_and_is_retried() -> None:
    h = run(
        {
            "process_payment": StepScript(attempts=(Fail("declined"),)),
            "reserve_inventory": StepScript(
                then=Succeed(RESULTS["reserve_inventory"]),
                compensations=(NoReply(), Fail("locked", retryable=True)),
            ),
        }
    )
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    assert state.step("reserve_inventory").comp_attempt == 3
    releases = h.messages(topic=topics.RELEASE_RESERVATION)
    assert [m.message_id for m in releases] == [f"saga-1:reserve_inventory:c{n}" for n in (1, 2, 3)]


def test_exhausted_compensation_needs_an_operator_who_can_resume_it() -> None:
    h = run(
        {
            "create_shipment": StepScript(attempts=(Fail("no carrier"),)),
            "reserve_inventory": StepScript(
                then=Succeed(RESULTS["reserve_inventory"]), compensations_then=NoReply()
            ),
        }
    )
    state = h.state(SID)
    assert state.status is SagaStatus.NEEDS_OPERATOR
    assert COMPENSATION_RETRY.max_attempts is not None
    assert state.step("reserve_inventory").comp_attempt == COMPENSATION_RETRY.max_attempts
    assert state.step("reserve_inventory").status is StepStatus.COMPENSATION_FAILED
    assert state.step("process_payment").status is StepStatus.COMPENSATED
    assert state.operator_reason is not None
    assert "compensation of reserve_inventory gave up after 20 attempts" in state.operator_reason
    assert not state.timers
    assert not h.messages(topic=topics.FULFILLMENT_FAILED)
    # nothing to abort: it is compensating already
    assert h.apply(SID, OperatorAbort()).ignored == "saga is already compensating"
    # the participant is fixed; the operator resumes with a fresh budget
    h.scripts["reserve_inventory"] = StepScript()
    decision = h.apply(SID, OperatorRetry())
    assert [m.message_id for m in decision.outgoing] == ["saga-1:reserve_inventory:c21"]
    h.run()
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    assert state.error == "step create_shipment: attempt 1 failed: no carrier"
    statuses = [t.to_status for t in state.history]
    resumed = statuses.index(SagaStatus.NEEDS_OPERATOR)
    assert statuses[resumed + 1 :] == [SagaStatus.COMPENSATING, SagaStatus.FAILED]
    assert state.history[resumed + 1].event == "OperatorRetry"


def test_a_non_retryable_compensation_failure_goes_straight_to_an_operator() -> None:
    h = run(
        {
            "process_payment": StepScript(
                then=Succeed(RESULTS["process_payment"]),
                compensations=(Fail("refund refused", retryable=False),),
            ),
            "create_shipment": StepScript(attempts=(Fail("no carrier"),)),
        }
    )
    state = h.state(SID)
    assert state.status is SagaStatus.NEEDS_OPERATOR
    assert state.step("process_payment").comp_attempt == 1
    assert state.step("reserve_inventory").status is StepStatus.SUCCEEDED  # not yet reached


def test_operator_retry_on_a_saga_that_does_not_need_one_is_ignored() -> None:
    state = started()
    assert (
        decide(state, OperatorRetry(), T0, D).ignored
        == "saga is pending, not waiting for an operator"
    )


# -- abort ---------------------------------------------------------------------------


def test_abort_before_the_pivot_compensates_on_purpose() -> None:
    h = SagaHarness(D, ok_scripts())
    h.start(SID, ORDER_DATA)
    h.run_until(T0 + timedelta(milliseconds=150))  # reserve_inventory done, payment in flight
    assert h.state(SID).step("process_payment").status is StepStatus.PENDING
    h.apply(SID, OperatorAbort("fraud suspected"))
    state = h.state(SID)
    assert state.status is SagaStatus.COMPENSATING
    assert state.step("process_payment").status is StepStatus.COMPENSATING
    h.run()
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    assert state.error == "aborted: fraud suspected"
    comps = [m.topic for m in h.published if m.topic in COMP_TOPIC.values()]
    # the payment was in flight: its outcome is unknown, so it is refunded too
    assert comps == [topics.REFUND_PAYMENT, topics.RELEASE_RESERVATION]


def test_abort_after_the_pivot_is_refused() -> None:
    h = SagaHarness(D, {**ok_scripts(), "send_confirmation": StepScript(then=NoReply())})
    h.start(SID, ORDER_DATA)
    h.run_until(T0 + timedelta(seconds=1))
    assert h.state(SID).stage == 3
    decision = h.apply(SID, OperatorAbort())
    assert decision.ignored == "abort refused: the pivot step already succeeded"
    assert decision.state is h.state(SID)


def test_abort_on_a_finished_saga_is_ignored() -> None:
    h = run()
    assert h.apply(SID, OperatorAbort()).ignored == "saga is completed"


# -- what is ignored -----------------------------------------------------------------


def started() -> SagaState:
    decision = decide(None, StartSaga(SID, ORDER_DATA, "m-1"), T0, D)
    assert decision.state is not None
    return decision.state


def assert_ignored(decision: Decision, state: SagaState | None, reason: str) -> None:
    assert decision.ignored == reason
    assert decision.state is state
    assert decision.outgoing == ()
    assert decision.timers == ()


def test_a_duplicate_start_is_ignored() -> None:
    state = started()
    decision = decide(state, StartSaga(SID, {"other": 1}, "m-2"), T0, D)
    assert_ignored(decision, state, "duplicate start: the saga exists")


@pytest.mark.parametrize(
    "event",
    [
        StepSucceeded("reserve_inventory", {}),
        StepFailed("reserve_inventory", "x"),
        CompensationSucceeded("reserve_inventory"),
        TimerFired("t:reserve_inventory:1"),
        OperatorRetry(),
        OperatorAbort(),
    ],
)
def test_events_for_an_unknown_saga_are_ignored(event: object) -> None:
    assert_ignored(decide(None, event, T0, D), None, "unknown saga")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (StepSucceeded("nope", {}), "unknown step 'nope'"),
        (StepFailed("nope", "x"), "unknown step 'nope'"),
        (CompensationSucceeded("nope"), "unknown step 'nope'"),
        (
            StepSucceeded("process_payment", {}),
            "step process_payment is not_started, not awaiting a reply",
        ),
        (
            StepSucceeded("reserve_inventory", {}, command_id="saga-1:reserve_inventory:a0"),
            "reply does not answer saga-1:reserve_inventory:a1",
        ),
        (
            StepSucceeded("reserve_inventory", {}, attempt=2),
            "reply does not answer saga-1:reserve_inventory:a1",
        ),
        (
            StepFailed("reserve_inventory", "x", command_id="saga-1:reserve_inventory:c1"),
            "reply does not answer saga-1:reserve_inventory:a1",
        ),
        (
            CompensationSucceeded("reserve_inventory"),
            "step reserve_inventory is pending, not compensating",
        ),
        (TimerFired("t:reserve_inventory:2"), "stale timer t:reserve_inventory:2"),
        (TimerFired("r:reserve_inventory:1"), "stale timer r:reserve_inventory:1"),
        (TimerFired("garbage"), "stale timer garbage"),
        (TimerFired("x:reserve_inventory:1"), "stale timer x:reserve_inventory:1"),
        (TimerFired("t:reserve_inventory:one"), "stale timer t:reserve_inventory:one"),
        (OperatorRetry(), "saga is pending, not waiting for an operator"),
    ],
)
def test_replies_and_timers_that_answer_nothing_are_ignored(event: object, reason: str) -> None:
    state = started()
    assert_ignored(decide(state, event, T0, D), state, reason)  # type: ignore[arg-type]


def test_a_duplicate_reply_is_ignored() -> None:
    state = started()
    reply = StepSucceeded("reserve_inventory", {"r": 1}, "saga-1:reserve_inventory:a1", 1)
    after = decide(state, reply, T0, D).state
    assert after is not None
    assert_ignored(
        decide(after, reply, T0, D),
        after,
        "step reserve_inventory is succeeded, not awaiting a reply",
    )


def test_a_late_reply_after_the_timeout_is_ignored_and_the_retry_decides() -> None:
    h = run(
        {
            "reserve_inventory": StepScript(
                attempts=(Succeed({"late": True}, delay=timedelta(seconds=11)),),
                then=Succeed({"late": False}, delay=timedelta(seconds=1)),
            )
        }
    )
    state = h.state(SID)
    assert state.status is SagaStatus.COMPLETED
    assert state.step("reserve_inventory").result == {"late": False}
    ignored = [a for a in h.log if a.decision.ignored]
    assert len(ignored) == 1
    assert ignored[0].decision.ignored == "reply does not answer saga-1:reserve_inventory:a2"


def test_duplicated_replies_change_nothing() -> None:
    doubles = {
        name: StepScript(then=Succeed(RESULTS.get(name, {}), duplicates=2)) for name in STEPS
    }
    h = run(doubles)
    assert h.state(SID).status is SagaStatus.COMPLETED
    assert sum(1 for a in h.log if a.decision.ignored) == 2 * len(STEPS)
    assert topics_sent(h)[-1] == topics.FULFILLMENT_COMPLETED
    assert len(h.published) == 5


def test_nothing_is_applied_after_a_terminal_state() -> None:
    h = run()
    state = h.state(SID)
    for event in (
        StepSucceeded("send_confirmation", {}),
        StepFailed("reserve_inventory", "late"),
        CompensationSucceeded("reserve_inventory"),
        TimerFired("t:send_confirmation:1"),
        OperatorRetry(),
    ):
        assert_ignored(decide(state, event, T0, D), state, "saga is completed")


def test_a_minimal_failure_while_compensating_is_a_compensation_failure() -> None:
    state = started()
    for event in (
        StepSucceeded("reserve_inventory", {}),
        StepFailed("process_payment", "declined", retryable=False),
    ):
        decision = decide(state, event, T0, D)
        assert decision.state is not None
        state = decision.state
    assert state.step("reserve_inventory").status is StepStatus.COMPENSATING
    decision = decide(state, StepFailed("reserve_inventory", "db down"), T0, D)
    assert decision.state is not None
    assert decision.state.step("reserve_inventory").status is StepStatus.COMPENSATION_FAILED
    assert decision.state.step("reserve_inventory").error == "compensation 1 failed: db down"
    assert decision.state.history[-1].detail == "compensation 1 failed: db down"
    assert [type(t) for t in decision.timers] == [TimerCancel, TimerSet]


def test_a_state_of_another_definition_is_a_wiring_bug() -> None:
    state = started()
    message = "saga saga-1 runs OrderFulfillment v1, decide got ParallelSaga v1"
    with pytest.raises(DefinitionMismatchError, match=f"^{message}$"):
        decide(state, OperatorRetry(), T0, parallel_definition())
    with pytest.raises(TypeError, match=r"^not an engine event: 'ping'$"):
        decide(state, "ping", T0, D)  # type: ignore[arg-type]


def test_a_reply_belongs_to_a_saga_by_the_prefix_of_its_command_id() -> None:
    assert command_belongs_to(SID, None)  # a minimal reply names no command
    assert command_belongs_to(SID, "saga-1:reserve_inventory:a1")
    assert not command_belongs_to(SID, "saga-10:reserve_inventory:a1")
    assert not command_belongs_to(SID, "saga-1")


def test_decide_does_not_touch_its_input() -> None:
    state = started()
    before = state.to_dict()
    decide(state, StepFailed("reserve_inventory", "x", retryable=False), T0, D)
    decide(state, StepSucceeded("reserve_inventory", {"a": 1}), T0, D)
    assert state.to_dict() == before


def test_timer_ids_parse() -> None:
    assert parse_timer_id("cr:step_a:12") == ("cr", "step_a", 12)
    assert parse_timer_id("t:a") is None


# -- parallel groups -----------------------------------------------------------------

P = parallel_definition()


def run_parallel(scripts: dict[str, StepScript]) -> SagaHarness:
    h = SagaHarness(P, scripts)
    h.run_saga(SID, {"k": "v"})
    return h


def test_a_parallel_group_runs_together_and_waits_for_all() -> None:
    h = run_parallel({"b": StepScript(then=Succeed(delay=timedelta(seconds=2)))})
    assert h.state(SID).status is SagaStatus.COMPLETED
    order = [m.topic for m in h.published]
    assert order == ["svc.A", "svc.B", "svc.C", "svc.D", "svc.E", "svc.F", "Done"]
    # d was sent only after b (the slower one) answered
    d_at = next(a.at for a in h.log if any(m.topic == "svc.D" for m in a.decision.outgoing))
    assert d_at == datetime(2025, 1, 1, tzinfo=UTC) + timedelta(milliseconds=2100)


def test_a_failure_in_a_group_abandons_and_compensates_its_siblings() -> None:
    h = run_parallel(
        {
            "b": StepScript(attempts=(Fail("nope"),)),
            "c": StepScript(then=Succeed(delay=timedelta(milliseconds=150))),
        }
    )
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    assert state.step("b").status is StepStatus.FAILED
    assert state.step("c").status is StepStatus.COMPENSATED
    assert state.step("c").uncertain
    comps = [m.topic for m in h.published if m.topic.startswith("svc.Undo")]
    assert comps == ["svc.UndoC", "svc.UndoA"]
    assert [m.topic for m in h.published][-1] == "Failed"
    # c's late success arrived while it was compensating: ignored
    assert any(a.decision.ignored == "step c is compensating, not awaiting a reply" for a in h.log)


def test_compensations_of_a_group_run_together() -> None:
    h = run_parallel({"d": StepScript(then=Fail("no", retryable=False))})
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    comps = [m.topic for m in h.published if m.topic.startswith("svc.Undo")]
    assert comps[:2] in (["svc.UndoB", "svc.UndoC"], ["svc.UndoC", "svc.UndoB"])
    assert comps[2] == "svc.UndoA"
    first = next(a for a in h.log if any(m.topic == "svc.UndoB" for m in a.decision.outgoing))
    assert {m.topic for m in first.decision.outgoing} == {"svc.UndoB", "svc.UndoC"}


def test_a_stuck_sibling_compensation_does_not_stop_the_others() -> None:
    h = run_parallel(
        {
            "d": StepScript(then=Fail("no", retryable=False)),
            "b": StepScript(compensations_then=NoReply()),
            "c": StepScript(compensations=(NoReply(),)),
        }
    )
    state = h.state(SID)
    assert state.status is SagaStatus.NEEDS_OPERATOR
    assert state.step("b").stuck
    assert state.step("c").status is StepStatus.COMPENSATED
    assert state.step("a").status is StepStatus.SUCCEEDED
    h.scripts["b"] = StepScript()
    h.apply(SID, OperatorRetry())
    h.run()
    assert h.state(SID).status is SagaStatus.FAILED
    assert h.state(SID).step("a").status is StepStatus.COMPENSATED


def test_retriable_group_after_the_pivot_keeps_going() -> None:
    h = run_parallel(
        {
            "e": StepScript(attempts=(Fail("x", retryable=True),) * 5),
            "f": StepScript(attempts=(NoReply(),) * 3),
        }
    )
    state = h.state(SID)
    assert state.status is SagaStatus.COMPLETED
    assert (state.step("e").attempt, state.step("f").attempt) == (6, 4)


# -- minimal failures that may be copies of an earlier attempt's ----------------------


def applied(state: SagaState, event: Event) -> SagaState:
    decision = decide(state, event, T0, D)
    assert decision.ignored is None, decision.ignored
    assert decision.state is not None
    return decision.state


def waiting_for(step: str) -> SagaState:
    """A saga whose steps before `step` succeeded: attempt 1 of `step` is in flight."""
    state = started()
    for name in COMPENSATABLE[: COMPENSATABLE.index(step)]:
        state = applied(state, StepSucceeded(name, RESULTS[name], command_id(SID, name, 1), 1))
    return state


@pytest.mark.parametrize("retryable", [True, None])
@pytest.mark.parametrize("failing", COMPENSATABLE)
def test_a_redelivered_minimal_failure_cannot_skip_the_compensation(
    failing: str, retryable: bool | None
) -> None:
    # attempt 1 fails; its reply (no command_id, no attempt) arrives again after attempts 2, 3
    copy = StepFailed(failing, "gateway busy", retryable=retryable)
    state = applied(waiting_for(failing), copy)
    assert not state.step(failing).uncertain  # attempt 1 was the only one sent
    again = f"step {failing} is failed, not awaiting a reply"
    assert_ignored(decide(state, copy, T0, D), state, again)  # one failure per attempt
    assert STEP_RETRY.max_attempts == 3
    for attempt in (2, 3):
        state = applied(state, TimerFired(f"r:{failing}:{attempt - 1}"))
        state = applied(state, copy)
        assert state.step(failing).uncertain  # attempt 2 or 3 may have charged, unheard
    assert state.status is SagaStatus.COMPENSATING
    assert state.step(failing).status is StepStatus.COMPENSATING
    assert state.error == (
        f"step {failing}: attempt 3 failed (minimal reply: may be an earlier attempt's): "
        "gateway busy"
    )
    done = COMPENSATABLE[: COMPENSATABLE.index(failing) + 1]  # including its own
    for name in reversed(done):
        assert state.step(name).status is StepStatus.COMPENSATING
        state = applied(state, CompensationSucceeded(name, compensation_id(SID, name, 1), 1))
    assert state.status is SagaStatus.FAILED
    assert {name: state.step(name).status for name in done} == dict.fromkeys(
        done, StepStatus.COMPENSATED
    )


@pytest.mark.parametrize(
    ("retried", "reply", "uncertain"),
    [
        pytest.param(
            False,
            StepFailed("reserve_inventory", "busy", retryable=True),
            False,
            id="minimal-at-attempt-1",
        ),
        pytest.param(
            True,
            StepFailed("reserve_inventory", "busy", retryable=True),
            True,
            id="minimal-retryable-at-attempt-2",
        ),
        pytest.param(
            True,
            StepFailed("reserve_inventory", "busy"),
            True,
            id="minimal-unspecified-at-attempt-2",
        ),
        pytest.param(
            True,
            StepFailed("reserve_inventory", "no stock", retryable=False),
            False,
            id="minimal-business-failure-at-attempt-2",
        ),
        pytest.param(
            True,
            StepFailed("reserve_inventory", "busy", retryable=True, attempt=2),
            False,
            id="with-attempt",
        ),
        pytest.param(
            True,
            StepFailed(
                "reserve_inventory",
                "busy",
                retryable=True,
                command_id="saga-1:reserve_inventory:a2",
            ),
            False,
            id="with-command-id",
        ),
    ],
)
def test_only_a_failure_that_may_be_an_earlier_attempts_leaves_the_step_uncertain(
    retried: bool, reply: StepFailed, uncertain: bool
) -> None:
    state = started()
    if retried:
        first = StepFailed("reserve_inventory", "busy", retryable=True, attempt=1)
        state = applied(applied(state, first), TimerFired("r:reserve_inventory:1"))
    after = applied(state, reply)
    assert after.step("reserve_inventory").attempt == (2 if retried else 1)
    assert after.step("reserve_inventory").status is StepStatus.FAILED
    assert after.step("reserve_inventory").uncertain is uncertain


@pytest.mark.parametrize("failing", COMPENSATABLE)
def test_a_minimal_participant_failing_every_attempt_is_compensated_too(failing: str) -> None:
    # Its failures of attempts 2 and 3 cannot be told from copies of attempt 1's.
    h = run({failing: StepScript(then=Fail("busy", retryable=True))}, minimal_replies=True)
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    assert state.step(failing).attempt == 3
    assert state.step(failing).status is StepStatus.COMPENSATED
    done = COMPENSATABLE[: COMPENSATABLE.index(failing) + 1]
    comps = [m.topic for m in h.published if m.topic in COMP_TOPIC.values()]
    assert comps == [COMP_TOPIC[s] for s in reversed(done)]
    assert_quiet(h)


# -- an operator's retry gives a fresh budget ------------------------------------------

BUDGET = RetryPolicy(
    max_attempts=2,
    initial_backoff=timedelta(seconds=1),
    multiplier=4.0,
    max_backoff=timedelta(seconds=60),
    jitter=0.0,
)
FAILING_AGAIN: dict[str, Action] = {
    "retryable": Fail("still down", retryable=True),
    "unsure": Fail("still down", retryable=None),
    "silent": NoReply(),
}


def confirmation_with_budget() -> SagaDefinition:
    """OrderFulfillment whose retriable confirmation gives up after BUDGET's 2 attempts."""
    confirmation = D.stages[-1]
    assert isinstance(confirmation, Step)
    return replace(D, stages=(*D.stages[:-1], replace(confirmation, retry=BUDGET)))


def sent_attempts(h: SagaHarness, topic: str) -> list[int]:
    return [m.payload["attempt"] for m in h.messages(topic=topic)]


def gave_up_at(h: SagaHarness) -> list[int]:
    """The confirmation's attempt each time the saga stopped for an operator."""
    return [
        a.decision.state.step("send_confirmation").attempt
        for a in h.log
        if a.decision.ignored is None
        and a.decision.state is not None
        and a.decision.state.status is SagaStatus.NEEDS_OPERATOR
        and a.decision.state.history[-1].from_status is not SagaStatus.NEEDS_OPERATOR
    ]


@pytest.mark.parametrize("failing", FAILING_AGAIN.values(), ids=FAILING_AGAIN.keys())
def test_a_resumed_step_that_fails_again_gets_its_whole_budget_each_time(failing: Action) -> None:
    definition = confirmation_with_budget()
    scripts = {**ok_scripts(), "send_confirmation": StepScript(then=failing)}
    h = SagaHarness(definition, scripts)
    h.run_saga(SID, ORDER_DATA)
    for resumed in (1, 2):
        state = h.state(SID)
        assert state.status is SagaStatus.NEEDS_OPERATOR
        st = state.step("send_confirmation")
        assert (st.attempt, st.base, st.stuck) == (2 * resumed, 2 * (resumed - 1), True)
        how = "timed out" if isinstance(failing, NoReply) else "failed: still down"
        assert state.operator_reason == (
            f"step send_confirmation gave up after 2 attempts: attempt {2 * resumed} {how}"
        )
        decision = h.apply(SID, OperatorRetry())
        assert [m.message_id for m in decision.outgoing] == [
            f"{SID}:send_confirmation:a{2 * resumed + 1}"
        ]
        st = h.state(SID).step("send_confirmation")
        assert (st.attempt, st.base, st.stuck) == (2 * resumed + 1, 2 * resumed, False)
        h.run()
    # each budget was two attempts, and the retry in it waited the first backoff
    assert sent_attempts(h, topics.SEND_ORDER_CONFIRMATION) == [1, 2, 3, 4, 5, 6]
    assert gave_up_at(h) == [2, 4, 6]
    retries = [
        a.at for a in h.log if isinstance(a.event, TimerFired) and a.event.timer_id[0] == "r"
    ]
    failed_at = [
        a.at
        for a in h.log
        if a.decision.ignored is None
        and a.decision.state is not None
        and a.decision.state.step("send_confirmation").status
        in (StepStatus.FAILED, StepStatus.TIMED_OUT)
        and any(isinstance(t, TimerSet) and t.timer_id.startswith("r:") for t in a.decision.timers)
    ]
    assert [r - f for r, f in zip(retries, failed_at, strict=True)] == [BUDGET.initial_backoff] * 3
    # fixed at last: the third resume completes the saga
    h.scripts["send_confirmation"] = StepScript()
    h.apply(SID, OperatorRetry())
    h.run()
    assert h.state(SID).status is SagaStatus.COMPLETED
    assert sent_attempts(h, topics.SEND_ORDER_CONFIRMATION) == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("failing", FAILING_AGAIN.values(), ids=FAILING_AGAIN.keys())
def test_a_resumed_compensation_that_fails_again_gets_its_whole_budget_each_time(
    failing: Action,
) -> None:
    definition = replace(D, compensation_retry=BUDGET)
    scripts = {
        **ok_scripts(),
        "create_shipment": StepScript(attempts=(Fail("no carrier"),)),
        "reserve_inventory": StepScript(
            then=Succeed(RESULTS["reserve_inventory"]), compensations_then=failing
        ),
    }
    h = SagaHarness(definition, scripts)
    h.run_saga(SID, ORDER_DATA)
    for resumed in (1, 2):
        state = h.state(SID)
        assert state.status is SagaStatus.NEEDS_OPERATOR
        st = state.step("reserve_inventory")
        assert st.status is StepStatus.COMPENSATION_FAILED
        assert (st.comp_attempt, st.comp_base, st.stuck) == (2 * resumed, 2 * (resumed - 1), True)
        how = "timed out" if isinstance(failing, NoReply) else "failed: still down"
        assert state.operator_reason == (
            "compensation of reserve_inventory gave up after 2 attempts: "
            f"compensation {2 * resumed} {how}"
        )
        decision = h.apply(SID, OperatorRetry())
        assert [m.message_id for m in decision.outgoing] == [
            f"{SID}:reserve_inventory:c{2 * resumed + 1}"
        ]
        st = h.state(SID).step("reserve_inventory")
        assert (st.comp_attempt, st.comp_base, st.stuck) == (2 * resumed + 1, 2 * resumed, False)
        h.run()
    assert sent_attempts(h, topics.RELEASE_RESERVATION) == [1, 2, 3, 4, 5, 6]
    retries = [
        a.at for a in h.log if isinstance(a.event, TimerFired) and a.event.timer_id[:3] == "cr:"
    ]
    assert len(retries) == 3  # one backoff in each budget of two attempts
    h.scripts["reserve_inventory"] = StepScript()
    h.apply(SID, OperatorRetry())
    h.run()
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    assert state.step("reserve_inventory").status is StepStatus.COMPENSATED
    assert sent_attempts(h, topics.RELEASE_RESERVATION) == [1, 2, 3, 4, 5, 6, 7]
    assert not h.messages(topic=topics.CANCEL_SHIPMENT)  # the pivot failed: nothing to undo


# -- abort at each point around the pivot ----------------------------------------------


def pivot_failed_retryably(state: SagaState) -> bool:
    return state.step("create_shipment").status is StepStatus.FAILED


ABORT_POINTS: dict[str, tuple[dict[str, StepScript], Callable[[SagaState], bool], list[str]]] = {
    # a step before the pivot is in flight: everything that may have run is undone
    "first-step-in-flight": (
        {},
        lambda s: s.step("reserve_inventory").status is StepStatus.PENDING,
        [topics.RELEASE_RESERVATION],
    ),
    "pivot-not-sent-yet": (
        {},
        lambda s: s.step("process_payment").status is StepStatus.PENDING,
        [topics.REFUND_PAYMENT, topics.RELEASE_RESERVATION],
    ),
    # the pivot is in flight: it may take effect, so the saga can still be aborted
    "pivot-in-flight": (
        {},
        lambda s: s.step("create_shipment").status is StepStatus.PENDING,
        [topics.CANCEL_SHIPMENT, topics.REFUND_PAYMENT, topics.RELEASE_RESERVATION],
    ),
    "pivot-failed-awaiting-its-retry": (
        {"create_shipment": StepScript(attempts=(Fail("busy", retryable=True),))},
        pivot_failed_retryably,
        [topics.REFUND_PAYMENT, topics.RELEASE_RESERVATION],
    ),
    "pivot-timed-out-awaiting-its-retry": (
        {"create_shipment": StepScript(attempts=(NoReply(),))},
        lambda s: s.step("create_shipment").status is StepStatus.TIMED_OUT,
        [topics.CANCEL_SHIPMENT, topics.REFUND_PAYMENT, topics.RELEASE_RESERVATION],
    ),
}


def advance_until(h: SagaHarness, reached: Callable[[SagaState], bool]) -> None:
    while not reached(h.state(SID)):
        assert h.step_once(), "the saga went quiet before the point was reached"


@pytest.mark.parametrize(
    ("scripts", "reached", "compensations"), ABORT_POINTS.values(), ids=ABORT_POINTS.keys()
)
def test_an_abort_before_the_pivot_succeeded_compensates_what_may_have_run(
    scripts: dict[str, StepScript],
    reached: Callable[[SagaState], bool],
    compensations: list[str],
) -> None:
    h = SagaHarness(D, {**ok_scripts(), **scripts})
    h.start(SID, ORDER_DATA)
    advance_until(h, reached)
    assert h.state(SID).stage <= D.pivot_stage  # type: ignore[operator]
    decision = h.apply(SID, OperatorAbort("customer cancelled"))
    assert decision.ignored is None
    assert decision.state is not None
    assert decision.state.status is SagaStatus.COMPENSATING
    assert decision.state.error == "aborted: customer cancelled"
    h.run()
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    assert state.error == "aborted: customer cancelled"
    assert [m.topic for m in h.published if m.topic in COMP_TOPIC.values()] == compensations
    assert topics_sent(h)[-1] == topics.FULFILLMENT_FAILED
    assert not h.messages(topic=topics.SEND_ORDER_CONFIRMATION)
    assert not h.messages(topic=topics.FULFILLMENT_COMPLETED)
    assert_quiet(h)


@pytest.mark.parametrize("confirmation", [StepScript(), StepScript(then=NoReply())])
def test_an_abort_is_refused_once_the_pivot_succeeded(confirmation: StepScript) -> None:
    h = SagaHarness(D, {**ok_scripts(), "send_confirmation": confirmation})
    h.start(SID, ORDER_DATA)
    advance_until(h, lambda s: s.step("create_shipment").status is StepStatus.SUCCEEDED)
    before = h.state(SID)
    assert before.stage == D.pivot_stage + 1  # type: ignore[operator]
    assert before.step("send_confirmation").status is StepStatus.PENDING
    decision = h.apply(SID, OperatorAbort("too late"))
    assert decision.ignored == "abort refused: the pivot step already succeeded"
    assert decision.state is before
    assert (decision.outgoing, decision.timers) == ((), ())
    h.run_until(h.clock.now + timedelta(seconds=30))
    assert not [m for m in h.published if m.topic in COMP_TOPIC.values()]
    assert not h.messages(topic=topics.FULFILLMENT_FAILED)


# -- what a decision records: errors, reasons and the history's entries --------------------


@pytest.mark.parametrize(
    ("error", "kept", "detail"),
    [
        ("", "failed", ""),
        ("x" * 200, "x" * 200, "x" * 200),
        ("x" * 201, "x" * 199 + "…", "x" * 199 + "…"),
    ],
    ids=["empty", "200-characters", "201-characters"],
)
def test_a_failure_reason_is_recorded_clipped_to_200_characters(
    error: str, kept: str, detail: str
) -> None:
    state = applied(started(), StepFailed("reserve_inventory", error, retryable=True))
    assert state.step("reserve_inventory").error == kept
    assert state.history[-1].detail == f"attempt 1 failed: {detail}"
    assert state.history[-1].step == "reserve_inventory"


def test_a_saga_that_fails_with_nothing_to_compensate_records_why() -> None:
    h = run({"reserve_inventory": StepScript(attempts=(Fail("no stock"),))})
    last = h.state(SID).history[-1]
    assert (last.event, last.from_status, last.to_status) == (
        "StepFailed",
        SagaStatus.PENDING,
        SagaStatus.FAILED,
    )
    assert (last.step, last.detail) == (
        "reserve_inventory",
        "step reserve_inventory: attempt 1 failed: no stock",
    )


def test_each_answer_in_a_group_is_recorded_under_its_step() -> None:
    h = run_parallel(
        {
            "c": StepScript(then=Succeed(delay=timedelta(milliseconds=200))),
            "d": StepScript(then=Fail("no", retryable=False)),
        }
    )
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    rows = [(t.event, t.to_status, t.step, t.detail) for t in state.history]
    assert rows == [
        ("StartSaga", SagaStatus.STARTED, None, None),
        ("StartSaga", SagaStatus.PENDING, "a", None),
        ("StepSucceeded", SagaStatus.PENDING, "a", None),
        ("StepSucceeded", SagaStatus.PENDING, "b", None),  # c still running
        ("StepSucceeded", SagaStatus.PENDING, "c", None),
        ("StepFailed", SagaStatus.COMPENSATING, "d", "step d: attempt 1 failed: no"),
        ("CompensationSucceeded", SagaStatus.COMPENSATING, "b", None),  # c still compensating
        ("CompensationSucceeded", SagaStatus.COMPENSATING, "c", None),
        ("CompensationSucceeded", SagaStatus.FAILED, "a", None),
    ]


def test_the_operators_reason_stays_while_other_steps_move_on() -> None:
    h = run_parallel(
        {
            "d": StepScript(then=Fail("no", retryable=False)),
            "b": StepScript(compensations=(Fail("refund refused", retryable=False),)),
            "c": StepScript(compensations=(Succeed(delay=timedelta(seconds=1)),)),
        }
    )
    state = h.state(SID)
    assert state.status is SagaStatus.NEEDS_OPERATOR
    assert state.step("c").status is StepStatus.COMPENSATED  # answered after b gave up
    assert state.history[-1].step == "c"
    assert state.operator_reason == (
        "compensation of b gave up after 1 attempts: compensation 1 failed: refund refused"
    )


def test_a_pivot_without_compensation_in_flight_at_an_abort_is_abandoned() -> None:
    h = SagaHarness(P, {"d": StepScript(then=Succeed(delay=timedelta(milliseconds=150)))})
    h.start(SID, {"k": "v"})
    advance_until(h, lambda s: s.step("d").status is StepStatus.PENDING)
    state = applied_to(h, OperatorAbort("stop"))
    assert state.step("d").status is StepStatus.ABANDONED
    assert state.step("d").uncertain
    assert state.status is SagaStatus.COMPENSATING
    h.run()
    state = h.state(SID)
    assert state.status is SagaStatus.FAILED
    assert state.step("d").status is StepStatus.ABANDONED  # it has nothing to undo it with
    late = [a for a in h.log if isinstance(a.event, StepSucceeded) and a.event.step == "d"]
    assert [a.decision.ignored for a in late] == ["step d is abandoned, not awaiting a reply"]


def applied_to(h: SagaHarness, event: Event) -> SagaState:
    decision = h.apply(SID, event)
    assert decision.ignored is None, decision.ignored
    return h.state(SID)


def test_a_terminal_saga_holds_no_timer_not_even_a_stray_one() -> None:
    state = waiting_for("create_shipment")
    state = applied(state, StepSucceeded("create_shipment", {}, attempt=1))
    stray = T0 + timedelta(hours=1)
    state = replace(state, timers={**state.timers, "r:reserve_inventory:7": stray})
    decision = decide(state, StepSucceeded("send_confirmation", {}, attempt=1), T0, D)
    assert decision.state is not None
    assert decision.state.status is SagaStatus.COMPLETED
    assert decision.state.timers == {}
    assert TimerCancel("r:reserve_inventory:7") in decision.timers


def test_an_operator_retry_with_no_stuck_step_is_ignored() -> None:
    state = replace(started(), status=SagaStatus.NEEDS_OPERATOR)
    assert_ignored(decide(state, OperatorRetry(), T0, D), state, "no stuck step to retry")


def test_a_compensation_that_made_every_attempt_the_wire_carries_is_not_resumed() -> None:
    h = run(
        {
            "create_shipment": StepScript(attempts=(Fail("no carrier"),)),
            "reserve_inventory": StepScript(
                then=Succeed(RESULTS["reserve_inventory"]),
                compensations=(Fail("locked", retryable=False),),
            ),
        }
    )
    state = h.state(SID)
    assert state.status is SagaStatus.NEEDS_OPERATOR
    worn = replace(state.step("reserve_inventory"), comp_attempt=WIRE_MAX_ATTEMPT)
    state = replace(state, steps={**state.steps, "reserve_inventory": worn})
    assert_ignored(
        decide(state, OperatorRetry(), T0, D),
        state,
        f"step reserve_inventory made every attempt the wire carries ({WIRE_MAX_ATTEMPT})",
    )
    fresh = replace(worn, comp_attempt=WIRE_MAX_ATTEMPT - 1)
    again = replace(state, steps={**state.steps, "reserve_inventory": fresh})
    resumed = decide(again, OperatorRetry(), T0, D)
    assert [m.message_id for m in resumed.outgoing] == [
        f"{SID}:reserve_inventory:c{WIRE_MAX_ATTEMPT}"
    ]


# -- the history's bound, entry by entry ------------------------------------------------------

CYCLE = (
    (SagaStatus.PENDING, SagaStatus.COMPENSATING),
    (SagaStatus.COMPENSATING, SagaStatus.NEEDS_OPERATOR),
    (SagaStatus.NEEDS_OPERATOR, SagaStatus.PENDING),
)


def entry(k: int) -> Transition:
    """Entry k of a made-up history: each differs from its neighbours in time and statuses."""
    from_status, to_status = CYCLE[k % 3]
    return Transition(T0 + timedelta(milliseconds=k), f"E{k}", from_status, to_status)


def with_history(history: list[Transition]) -> SagaState:
    return replace(started(), history=tuple(history))


def one_more(state: SagaState) -> tuple[Transition, ...]:
    """The history after one event that adds one entry (the first step's success)."""
    later = T0 + timedelta(seconds=1)
    decision = decide(state, StepSucceeded("reserve_inventory", {}, attempt=1), later, D)
    assert decision.state is not None
    return decision.state.history


def test_a_history_at_its_bound_is_kept_whole() -> None:
    assert (HISTORY_HEAD, HISTORY_TAIL) == (20, 200)
    history = one_more(with_history([entry(k) for k in range(220)]))
    assert len(history) == 221
    assert history[:220] == tuple(entry(k) for k in range(220))


def test_a_history_past_its_bound_keeps_head_and_tail_around_one_marker() -> None:
    history = one_more(with_history([entry(k) for k in range(222)]))
    assert len(history) == 221
    assert history[:20] == tuple(entry(k) for k in range(20))
    assert history[21:220] == tuple(entry(k) for k in range(23, 222))
    # the marker stands for entries 20, 21 and 22
    assert history[20] == Transition(
        entry(22).at,
        HISTORY_TRIMMED,
        entry(20).from_status,
        entry(22).to_status,
        None,
        "3 entries dropped",
    )


def test_a_second_trim_counts_what_the_first_marker_stood_for() -> None:
    marker = Transition(
        entry(20).at,
        HISTORY_TRIMMED,
        SagaStatus.STARTED,
        SagaStatus.PENDING,
        None,
        "5 entries dropped",
    )
    history = one_more(with_history([*map(entry, range(20)), marker, *map(entry, range(21, 221))]))
    assert len(history) == 221
    assert history[20] == Transition(
        entry(21).at,
        HISTORY_TRIMMED,
        SagaStatus.STARTED,
        entry(21).to_status,
        None,
        "6 entries dropped",
    )


def test_failing_a_stage_stops_the_retry_its_other_step_was_waiting_for() -> None:
    slow_retry = RetryPolicy(max_attempts=3, initial_backoff=timedelta(seconds=5), jitter=0.0)
    definition = SagaDefinition(
        name="Pair",
        version=1,
        stages=(
            Step("first", "First", "UndoFirst"),
            Parallel(
                Step("a", "A", "UndoA", retry=slow_retry),
                Step("b", "B", "UndoB"),
            ),
        ),
        completed_topic="Done",
        failed_topic="Failed",
    )
    harness = SagaHarness(
        definition,
        {
            "a": StepScript(attempts=(Fail("busy", retryable=True),)),
            "b": StepScript(attempts=(Fail("no", retryable=False, delay=timedelta(seconds=1)),)),
        },
    )
    harness.run_saga("s-1", {})
    (failing,) = [
        entry
        for entry in harness.log
        if isinstance(entry.event, StepFailed) and entry.event.step == "b"
    ]
    assert TimerCancel("r:a:1") in failing.decision.timers
    assert failing.decision.state is not None
    assert "r:a:1" not in failing.decision.state.timers
    assert harness.state("s-1").status is SagaStatus.FAILED
