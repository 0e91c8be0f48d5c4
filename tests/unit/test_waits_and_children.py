"""Wait steps and child sagas, decided by the pure engine (through the harness)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from saga_worker.engine.decide import (
    CHILD_FAILED,
    REPLY_COMPENSATED,
    REPLY_COMPLETED,
    REPLY_FAILED,
    TimerCancel,
    TimerSet,
    child_saga_id,
    command_id,
    compensation_id,
    decide,
)
from saga_worker.engine.definition import (
    DEFAULT_CHILD_TIMEOUT,
    START_REQUESTED_TOPIC,
    ChildSaga,
    SagaDefinition,
    Step,
    StepKind,
    Wait,
)
from saga_worker.engine.events import (
    EventArrived,
    OperatorRetry,
    ParentLink,
    StartSaga,
    StepSucceeded,
)
from saga_worker.engine.harness import Fail, SagaHarness, StepScript, Succeed
from saga_worker.engine.retry import RetryPolicy
from saga_worker.engine.state import SagaState, SagaStatus, StepStatus
from saga_worker.errors import DefinitionError
from saga_worker.wire import topics as wire_topics

SID = "s-1"
NOT_A_FUNCTION: Any = 1
DEADLINE = timedelta(hours=4)


def rejected(event: Mapping[str, Any]) -> bool:
    return event.get("approved") is False


def approval(**options: Any) -> Step:
    return Wait(
        "approval",
        topic="Approvals",
        correlate="order_id",
        deadline=DEADLINE,
        **{"rejects": rejected, **options},
    )


def loan(*middle: Step) -> SagaDefinition:
    return SagaDefinition(
        name="Loan",
        version=1,
        stages=(
            Step("reserve", "Reserve", "Release"),
            *middle,
            Step("disburse", "Disburse", kind=StepKind.PIVOT),
        ),
        completed_topic="LoanDone",
        failed_topic="LoanFailed",
    )


def started(definition: SagaDefinition, **scripts: StepScript) -> SagaHarness:
    harness = SagaHarness(definition, scripts)
    harness.start(SID, {"order_id": "o-1", "amount": 900})
    return harness


def commands(harness: SagaHarness, topic: str) -> list[Mapping[str, Any]]:
    return [m.payload for m in harness.messages(SID, topic)]


# -- waits ---------------------------------------------------------------------------


def test_a_wait_sends_nothing_and_its_event_becomes_the_result_later_steps_see() -> None:
    harness = started(loan(approval()))
    harness.run_until(harness.clock.now + timedelta(seconds=1))
    state = harness.state(SID)
    assert state.step("approval").status is StepStatus.PENDING
    assert not commands(harness, "Approvals")
    assert not commands(harness, "Disburse")
    harness.signal(SID, "approval", {"approved": True, "by": "ann"})
    harness.run()
    state = harness.state(SID)
    assert state.status is SagaStatus.COMPLETED
    assert commands(harness, "Disburse")[0]["results"]["approval"] == {
        "approved": True,
        "by": "ann",
    }


def test_an_event_that_arrives_early_is_kept_and_taken_when_the_saga_gets_there() -> None:
    slow = StepScript(then=Succeed({"held": 1}, delay=timedelta(seconds=5)))
    harness = started(loan(approval()), reserve=slow)
    harness.signal(SID, "approval", {"approved": True})
    harness.signal(SID, "approval", {"approved": False}, delay=timedelta(seconds=1))  # a copy
    harness.run_until(harness.clock.now + timedelta(seconds=2))
    waiting = harness.state(SID).step("approval")
    assert waiting.status is StepStatus.NOT_STARTED
    assert waiting.early == {"approved": True}
    harness.run()
    state = harness.state(SID)
    assert state.status is SagaStatus.COMPLETED
    assert state.step("approval").result == {"approved": True}
    assert state.step("approval").early is None
    assert not state.timers


def test_an_event_twice_has_one_effect() -> None:
    harness = started(loan(approval()))
    harness.run_until(harness.clock.now + timedelta(seconds=1))
    harness.signal(SID, "approval", {"approved": True})
    harness.signal(SID, "approval", {"approved": True})
    harness.run()
    applied = [a for a in harness.log if isinstance(a.event, EventArrived)]
    assert [a.decision.ignored is None for a in applied] == [True, False]
    assert len(commands(harness, "Disburse")) == 1


def test_a_rejection_compensates_what_came_before() -> None:
    harness = started(loan(approval()))
    harness.run_until(harness.clock.now + timedelta(seconds=1))
    harness.signal(SID, "approval", {"approved": False, "reason": "too risky"})
    harness.run()
    state = harness.state(SID)
    assert state.status is SagaStatus.FAILED
    assert state.step("reserve").status is StepStatus.COMPENSATED
    assert "rejected by the event on Approvals" in (state.error or "")
    assert not commands(harness, "Disburse")


def test_a_deadline_that_passes_fails_the_saga_or_continues_with_the_default() -> None:
    failing = started(loan(approval()))
    failing.run()
    state = failing.state(SID)
    assert state.status is SagaStatus.FAILED
    assert "deadline passed" in (state.error or "")
    assert state.step("reserve").status is StepStatus.COMPENSATED
    assert failing.clock.now - state.created_at >= DEADLINE

    defaulting = started(loan(approval(default={"approved": True, "by": "nobody"})))
    defaulting.run()
    state = defaulting.state(SID)
    assert state.status is SagaStatus.COMPLETED
    assert state.step("approval").result == {"approved": True, "by": "nobody"}


def test_a_wait_whose_condition_does_not_hold_is_skipped() -> None:
    harness = started(loan(approval(when=lambda data: data["amount"] > 1000)))
    harness.run()
    state = harness.state(SID)
    assert state.status is SagaStatus.COMPLETED
    assert state.step("approval").status is StepStatus.SUCCEEDED
    assert state.step("approval").result is None
    assert "approval" not in commands(harness, "Disburse")[0]["results"]
    assert harness.clock.now - state.created_at < timedelta(minutes=1)


def test_a_condition_that_raises_counts_as_true_and_the_saga_waits() -> None:
    harness = started(loan(approval(when=lambda data: data["missing"] > 1)))
    harness.run_until(harness.clock.now + timedelta(seconds=1))
    assert harness.state(SID).step("approval").status is StepStatus.PENDING


def test_a_reply_naming_a_wait_step_is_not_taken_for_its_event() -> None:
    harness = started(loan(approval()))
    harness.run_until(harness.clock.now + timedelta(seconds=1))
    reply = StepSucceeded("approval", {"approved": True})
    assert harness.apply(SID, reply).ignored == "step approval waits for an event, not a reply"


def test_a_wait_after_the_pivot_that_expires_needs_an_operator_who_reopens_it() -> None:
    definition = SagaDefinition(
        name="Ship",
        version=1,
        stages=(
            Step("ship", "Ship", kind=StepKind.PIVOT),
            Wait(
                "delivered",
                topic="Deliveries",
                correlate="order_id",
                deadline=timedelta(days=3),
                kind=StepKind.RETRIABLE,
            ),
        ),
        completed_topic="Done",
        failed_topic="Failed",
    )
    harness = started(definition)
    harness.run()
    state = harness.state(SID)
    assert state.status is SagaStatus.NEEDS_OPERATOR
    assert state.operator_reason is not None
    assert "deadline passed" in state.operator_reason
    assert SagaState.from_dict(state.to_dict()) == state  # the operator's reason too
    harness.apply(SID, OperatorRetry())
    assert harness.state(SID).step("delivered").status is StepStatus.PENDING
    harness.signal(SID, "delivered", {"at": "door"})
    harness.run()
    assert harness.state(SID).status is SagaStatus.COMPLETED


def test_events_for_a_finished_or_unstarted_wait_are_ignored_with_a_reason() -> None:
    harness = started(loan(approval()))
    harness.run_until(harness.clock.now + timedelta(seconds=1))
    harness.signal(SID, "approval", {"approved": False})
    harness.run()
    late = harness.apply(SID, EventArrived("approval", {"approved": True}))
    assert late.ignored == "saga is failed"
    ghost = decide(
        started(loan(approval())).state(SID), EventArrived("nope", {}), harness.clock.now, loan()
    )
    assert ghost.ignored is not None


# -- child sagas -----------------------------------------------------------------------


def trip(**options: Any) -> SagaDefinition:
    return SagaDefinition(
        name="Trip",
        version=1,
        stages=(
            ChildSaga("flights", "BookFlights", compensation_saga="CancelFlights", **options),
            Step("charge", "Charge", kind=StepKind.PIVOT),
        ),
        completed_topic="TripDone",
        failed_topic="TripFailed",
    )


def test_a_child_step_asks_for_the_child_saga_with_a_derived_id_and_a_link_back() -> None:
    harness = started(trip())
    (request,) = harness.messages(topic=START_REQUESTED_TOPIC)
    cid = command_id(SID, "flights", 1)
    assert request.key == child_saga_id(cid) == request.payload["saga_id"]
    assert len(request.key) == 36
    assert request.payload["saga_type"] == "BookFlights"
    assert request.payload["data"]["order_id"] == "o-1"
    assert request.payload["parent"] == ParentLink(SID, "flights", cid, 1).to_dict()


def test_the_childs_outcome_answers_the_parent_step() -> None:
    done = started(trip(), flights=StepScript(then=Succeed({"booked": ["AF1"]})))
    done.run()
    assert done.state(SID).status is SagaStatus.COMPLETED
    assert done.state(SID).step("flights").result == {"booked": ["AF1"]}

    failed = started(trip(), flights=StepScript(attempts=(Fail("no seats"),)))
    failed.run()
    state = failed.state(SID)
    assert state.status is SagaStatus.FAILED
    assert not failed.messages(topic=START_REQUESTED_TOPIC)[1:], "a failed child is not undone"


def test_compensating_a_child_step_starts_its_compensation_saga() -> None:
    harness = started(
        trip(),
        flights=StepScript(then=Succeed({"booked": ["AF1"]})),
        charge=StepScript(attempts=(Fail("declined"),)),
    )
    harness.run()
    state = harness.state(SID)
    assert state.status is SagaStatus.FAILED
    assert state.step("flights").status is StepStatus.COMPENSATED
    undo = harness.messages(topic=START_REQUESTED_TOPIC)[1].payload
    assert undo["saga_type"] == "CancelFlights"
    assert undo["saga_id"] == child_saga_id(compensation_id(SID, "flights", 1))
    assert undo["data"]["original_result"] == {"booked": ["AF1"]}
    assert undo["parent"]["compensation"] is True


def test_a_child_saga_sends_its_outcome_to_its_parent_as_the_reply() -> None:
    child = SagaDefinition(
        name="BookFlights",
        version=1,
        stages=(Step("book", "Book", "Unbook"),),
        completed_topic="FlightsDone",
        failed_topic="FlightsFailed",
    )
    link = ParentLink(SID, "flights", command_id(SID, "flights", 1), 1)
    ok = SagaHarness(child, {"book": StepScript(then=Succeed({"seat": "1A"}))})
    ok.apply("c-1", StartSaga("c-1", {}, "m", link))
    ok.run()
    (reply,) = ok.messages(topic=REPLY_COMPLETED)
    assert reply.key == SID
    assert reply.payload["command_id"] == link.command_id
    assert reply.payload["result"] == {"book": {"seat": "1A"}}

    ko = SagaHarness(child, {"book": StepScript(attempts=(Fail("full"),))})
    ko.apply("c-1", StartSaga("c-1", {}, "m", link))
    ko.run()
    (reply,) = ko.messages(topic=REPLY_FAILED)
    assert reply.payload["error_code"] == CHILD_FAILED
    assert reply.payload["retryable"] is False

    undo = ParentLink(SID, "flights", compensation_id(SID, "flights", 1), 1, compensation=True)
    comp = SagaHarness(child)
    comp.apply("c-2", StartSaga("c-2", {}, "m", undo))
    comp.run()
    (reply,) = comp.messages(topic=REPLY_COMPENSATED)
    assert "result" not in reply.payload


def test_the_engine_and_the_wire_name_the_same_library_topics() -> None:
    assert START_REQUESTED_TOPIC == wire_topics.START_REQUESTED
    assert (REPLY_COMPLETED, REPLY_FAILED, REPLY_COMPENSATED) == wire_topics.REPLY_TOPICS


def test_a_parent_link_and_an_early_event_survive_the_state_codec() -> None:
    harness = SagaHarness(loan(approval()))
    harness.apply(SID, StartSaga(SID, {"order_id": "o-1"}, "m", ParentLink("p", "s", "p:s:a1", 1)))
    harness.signal(SID, "approval", {"approved": True})
    harness.step_once()
    state = harness.state(SID)
    assert state.parent is not None
    assert state.step("approval").early == {"approved": True}
    assert SagaState.from_dict(state.to_dict()) == state


# -- definitions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ChildSaga("c", "Other"), "needs a compensation_saga"),
        (lambda: ChildSaga("c", "not a name", kind=StepKind.PIVOT), "must be a Python-style"),
        (lambda: approval(default=["no"]), "default must be a mapping"),
        (lambda: Wait("w", topic="T", correlate="a b", deadline=DEADLINE), "correlate"),
        (
            lambda: Wait("w", topic="T", correlate="k", deadline=DEADLINE, rejects=NOT_A_FUNCTION),
            "function",
        ),
        (lambda: Wait("w", topic="T", correlate="k", deadline=timedelta(0)), "timeout"),
    ],
)
def test_bad_waits_and_children_are_refused_in_their_own_words(build: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()


def test_a_definition_lists_its_waits_and_the_saga_types_it_starts() -> None:
    assert [s.name for s in loan(approval()).waits] == ["approval"]
    assert trip().child_types == ("BookFlights", "CancelFlights")


# -- exactly what is recorded and sent -------------------------------------------------


def history(state: SagaState) -> list[tuple[str, str | None, str | None]]:
    return [(h.event, h.step, h.detail) for h in state.history]


def test_each_way_a_wait_ends_is_written_in_the_history() -> None:
    skipped = started(loan(approval(when=lambda data: False)))
    skipped.run()
    assert (
        "StepSucceeded",
        "approval",
        "wait skipped: its condition does not hold",
    ) in history(skipped.state(SID))

    early = started(loan(approval()), reserve=StepScript(then=Succeed(delay=timedelta(seconds=5))))
    early.signal(SID, "approval", {"approved": True})
    early.step_once()
    assert history(early.state(SID))[-1] == (
        "EventArrived",
        "approval",
        "event kept until the saga gets to this wait",
    )

    arrived = started(loan(approval()))
    arrived.run_until(arrived.clock.now + timedelta(seconds=1))
    arrived.signal(SID, "approval", {"approved": True})
    arrived.step_once()
    assert ("EventArrived", "approval", "event arrived") in history(arrived.state(SID))

    defaulted = started(loan(approval(default={"approved": True})))
    defaulted.run()
    assert ("TimerFired", "approval", "deadline passed: the default is the result") in history(
        defaulted.state(SID)
    )


def test_a_last_stage_of_skipped_waits_completes_the_saga_in_its_name() -> None:
    definition = SagaDefinition(
        name="Tail",
        version=1,
        stages=(
            Step("pay", "Pay", kind=StepKind.PIVOT),
            approval(when=lambda data: False, kind=StepKind.RETRIABLE),
        ),
        completed_topic="Done",
        failed_topic="Failed",
    )
    harness = started(definition)
    harness.run()
    state = harness.state(SID)
    assert state.status is SagaStatus.COMPLETED
    assert (state.history[-1].step, state.history[-1].detail) == ("approval", None)


def test_taking_an_event_stops_the_deadline() -> None:
    harness = started(loan(approval()))
    harness.run_until(harness.clock.now + timedelta(seconds=1))
    deadline = "t:approval:1"
    assert deadline in harness.state(SID).timers
    decision = harness.apply(SID, EventArrived("approval", {"approved": True}))
    assert TimerCancel(deadline) in decision.timers
    assert deadline not in harness.state(SID).timers


def test_a_rejected_wait_keeps_the_event_and_why_and_is_never_retried() -> None:
    retrying = Step(
        "approval",
        "Approvals",
        timeout=DEADLINE,
        retry=RetryPolicy(max_attempts=3),
        wait=approval().wait,
    )
    for definition in (loan(approval()), loan(retrying)):
        harness = started(definition)
        harness.run_until(harness.clock.now + timedelta(seconds=1))
        harness.signal(SID, "approval", {"approved": False})
        harness.step_once()
        step = harness.state(SID).step("approval")
        assert step == replace(
            step,
            status=StepStatus.FAILED,
            result={"approved": False},
            error="rejected by the event on Approvals",
            early=None,
            attempt=1,
        )
        assert harness.state(SID).status is SagaStatus.COMPENSATING

        expiring = started(definition)
        expiring.run_until(expiring.clock.now + DEADLINE + timedelta(seconds=1))
        step = expiring.state(SID).step("approval")
        assert (step.status, step.attempt) == (StepStatus.FAILED, 1)
        assert step.error == "deadline passed: no event on Approvals within 4:00:00"


def test_a_rejects_that_raises_inside_decide_fails_the_wait_saying_so() -> None:
    def broken(event: Mapping[str, Any]) -> bool:
        raise KeyError("approved")

    harness = started(loan(approval(rejects=broken)))
    harness.run_until(harness.clock.now + timedelta(seconds=1))
    harness.signal(SID, "approval", {})
    harness.step_once()
    step = harness.state(SID).step("approval")
    assert step.status is StepStatus.FAILED
    assert step.error == "wait approval: rejects() raised KeyError('approved')"


def test_the_dsl_defaults_of_waits_and_children() -> None:
    wait = Wait("w", topic="T", correlate="k", deadline=DEADLINE).wait
    assert wait is not None
    assert (wait.many, wait.ignore_unmatched, wait.data_field) == (False, False, "k")
    assert approval().policy.max_attempts == 1
    pivot = ChildSaga("c", "Other", kind=StepKind.PIVOT)
    assert pivot.compensation_topic is None
    assert pivot.policy.max_attempts == 1
    assert ChildSaga("c", "Other", compensation_saga="Undo").compensation_topic == (
        START_REQUESTED_TOPIC
    )
    assert child_saga_id("p:s:a1") == "b81af2a4-1f46-bf64-8b7e-bff2d68ad70d"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: Step("x", "T", wait=approval().wait, child=trip().steps["flights"].child),
            "step 'x' cannot both wait and run a child saga",
        ),
        (
            lambda: Wait("w", topic="T", correlate="k", data_field="a b", deadline=DEADLINE),
            "wait 'w' data_field must be",
        ),
        (lambda: ChildSaga("c", "a b", kind=StepKind.PIVOT), "child step 'c' saga must be"),
        (
            lambda: ChildSaga("c", "X", compensation_saga="a b"),
            "child step 'c' compensation_saga must be",
        ),
        (
            lambda: ChildSaga("c", "X"),
            r"^compensatable child step 'c' needs a compensation_saga \(or make it the pivot "
            r"or a retriable step\)$",
        ),
    ],
)
def test_refusals_name_the_step_and_what_to_do(build: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()


def test_what_a_child_is_asked_and_what_it_answers_exactly() -> None:
    harness = started(
        trip(),
        flights=StepScript(then=Succeed({"booked": ["AF1"]})),
        charge=StepScript(attempts=(Fail("declined"),)),
    )
    harness.run()
    start, undo = (m.payload for m in harness.messages(topic=START_REQUESTED_TOPIC))
    cid, comp = command_id(SID, "flights", 1), compensation_id(SID, "flights", 1)
    data = {"order_id": "o-1", "amount": 900}
    assert start == {
        "saga_id": child_saga_id(cid),
        "saga_type": "BookFlights",
        "step_name": "flights",
        "data": {**data, "parent_results": {}},
        "parent": {"saga_id": SID, "step": "flights", "command_id": cid, "attempt": 1,
                   "compensation": False},
        "message_id": cid,
        "schema_version": 1,
    }  # fmt: skip
    assert undo == {
        "saga_id": child_saga_id(comp),
        "saga_type": "CancelFlights",
        "step_name": "flights",
        "data": {**data, "parent_results": {"flights": {"booked": ["AF1"]}},
                 "original_result": {"booked": ["AF1"]}},
        "parent": {"saga_id": SID, "step": "flights", "command_id": comp, "attempt": 1,
                   "compensation": True},
        "message_id": comp,
        "schema_version": 1,
    }  # fmt: skip
    assert [t for t in harness.log if TimerSet("c:flights:1", t.at + DEFAULT_CHILD_TIMEOUT)
            in t.decision.timers]  # fmt: skip

    link = ParentLink(SID, "flights", cid, 1)
    child = SagaHarness(trip(), {"flights": StepScript(attempts=(Fail("full"),))})
    child.apply("kid", StartSaga("kid", {}, "m", link))
    child.run()
    (reply,) = child.messages(topic=REPLY_FAILED)
    assert (reply.key, reply.message_id) == (SID, "kid:reply")
    assert reply.payload == {
        "saga_id": SID,
        "step_name": "flights",
        "command_id": cid,
        "attempt": 1,
        "message_id": "kid:reply",
        "schema_version": 1,
        "error": child.state("kid").error,
        "retryable": False,
        "error_code": CHILD_FAILED,
    }
    assert "step flights" in reply.payload["error"]
