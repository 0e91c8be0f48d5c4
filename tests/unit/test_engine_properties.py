"""Property tests: random definitions driven through random participant behaviour.

Profiles: HYPOTHESIS_PROFILE=saga-ci (default, a few thousand examples in all),
saga-dev (quick), saga-thorough (long). Example:
    HYPOTHESIS_PROFILE=saga-thorough .venv/bin/pytest tests/unit/test_engine_properties.py
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saga_worker.engine.decide import Decision, TimerCancel, TimerSet, decide
from saga_worker.engine.definition import Parallel, SagaDefinition, Stage, Step, StepKind
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
from saga_worker.engine.retry import RetryPolicy
from saga_worker.engine.state import SagaState, SagaStatus, StepStatus, is_transition_valid

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("saga-ci", max_examples=3000, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("saga-dev", max_examples=100, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("saga-thorough", max_examples=20_000, **_COMMON)  # type: ignore[arg-type]
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "saga-ci"))
SMALLER = settings(PROFILE, max_examples=max(PROFILE.max_examples // 2, 50))

SID = "s-1"

# -- strategies ---------------------------------------------------------------------

policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 3),
    initial_backoff=st.sampled_from(
        [timedelta(0), timedelta(milliseconds=300), timedelta(seconds=2)]
    ),
    multiplier=st.sampled_from([1.0, 2.0]),
    max_backoff=st.just(timedelta(seconds=5)),
    jitter=st.sampled_from([0.0, 0.5]),
)


@st.composite
def definitions(draw: st.DrawFn) -> SagaDefinition:
    counter = iter(range(100))

    def step(kind: StepKind, comp: bool) -> Step:
        n = next(counter)
        timeout = timedelta(seconds=draw(st.sampled_from([1, 5, 10])))
        if kind is StepKind.RETRIABLE:
            retry = RetryPolicy(
                max_attempts=draw(st.sampled_from([None, None, 2])),
                initial_backoff=timedelta(milliseconds=500),
                max_backoff=timedelta(seconds=3),
            )
        else:
            retry = draw(policies)
        return Step(f"s{n}", f"cmd.s{n}", f"undo.s{n}" if comp else None, timeout, retry, kind)

    def stage(kind: StepKind) -> Stage:
        width = draw(st.integers(1, 3))
        comp = kind is StepKind.COMPENSATABLE
        if width == 1 and draw(st.booleans()):
            return step(kind, comp)
        return Parallel(*(step(kind, comp) for _ in range(width)))

    stages: list[Stage] = [stage(StepKind.COMPENSATABLE) for _ in range(draw(st.integers(0, 3)))]
    if draw(st.booleans()) or not stages:
        stages.append(step(StepKind.PIVOT, draw(st.booleans())))
        stages += [stage(StepKind.RETRIABLE) for _ in range(draw(st.integers(0, 2)))]
    return SagaDefinition(
        name="Random",
        version=1,
        stages=tuple(stages),
        completed_topic="Done",
        failed_topic="Failed",
        compensation_retry=RetryPolicy(
            max_attempts=draw(st.integers(1, 4)),
            initial_backoff=timedelta(milliseconds=200),
            max_backoff=timedelta(seconds=2),
            jitter=0.3,
        ),
        compensation_timeout=timedelta(seconds=draw(st.sampled_from([1, 3]))),
        failure_notices=(("notify", "notice.Failed"),),
    )


delays = st.integers(0, 12_000).map(lambda ms: timedelta(milliseconds=ms))
# the eventual answers arrive within every timeout, so retried-forever steps end
prompt = st.integers(0, 900).map(lambda ms: timedelta(milliseconds=ms))
forward_actions: st.SearchStrategy[Action] = st.one_of(
    st.builds(Succeed, st.fixed_dictionaries({"v": st.integers(0, 9)}), delays, st.integers(0, 2)),
    st.builds(
        Fail,
        st.just("boom"),
        st.sampled_from([True, False, None]),
        st.none(),
        delays,
        st.integers(0, 2),
    ),
    st.builds(NoReply, st.booleans()),
)
comp_actions: st.SearchStrategy[Action] = st.one_of(
    st.builds(Succeed, st.just({}), delays, st.integers(0, 2)),
    st.builds(Fail, st.just("stuck"), st.sampled_from([True, None]), st.none(), delays),
    st.just(NoReply()),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[SagaDefinition, dict[str, StepScript], bool, int | None]:
    definition = draw(definitions())
    scripts = {
        name: StepScript(
            attempts=tuple(draw(st.lists(forward_actions, max_size=4))),
            then=Succeed({"v": 1}, draw(prompt)),
            compensations=tuple(draw(st.lists(comp_actions, max_size=5))),
            compensations_then=Succeed({}, draw(prompt)),
        )
        for name in definition.steps
    }
    minimal = draw(st.booleans())
    abort_ms = draw(st.one_of(st.none(), st.integers(0, 20_000)))
    return definition, scripts, minimal, abort_ms


# -- the checks ----------------------------------------------------------------------


def drive(
    definition: SagaDefinition,
    scripts: dict[str, StepScript],
    minimal: bool,
    abort_ms: int | None,
    harness: SagaHarness | None = None,
) -> SagaHarness:
    harness = harness or SagaHarness(definition, scripts, minimal_replies=minimal)
    harness.start(SID, {"order_id": "o-1"})
    if abort_ms is not None:
        harness.deliver(SID, OperatorAbort("test"), timedelta(milliseconds=abort_ms))
    harness.run(max_events=5_000)
    for _ in range(10):  # an operator steps in until the saga ends
        if harness.state(SID).status is not SagaStatus.NEEDS_OPERATOR:
            break
        harness.scripts = {}  # the participants are fixed: everything succeeds now
        harness.apply(SID, OperatorRetry())
        harness.run(max_events=5_000)
    return harness


def check_invariants(harness: SagaHarness, definition: SagaDefinition) -> None:
    state = harness.state(SID)
    # quiescence ends in exactly one terminal state, with no timers left
    assert state.status in (SagaStatus.COMPLETED, SagaStatus.FAILED)
    assert not state.timers
    assert not harness.timers
    outcomes = [m for m in harness.published if m.topic in ("Done", "Failed")]
    assert len(outcomes) == 1
    assert outcomes[0].topic == ("Done" if state.status is SagaStatus.COMPLETED else "Failed")
    # nothing is applied, nothing emitted after the terminal state
    terminal_at = next(
        i
        for i, a in enumerate(harness.log)
        if a.decision.state is not None and a.decision.state.finished
    )
    for later in harness.log[terminal_at + 1 :]:
        assert later.decision.ignored is not None
        assert later.decision.outgoing == ()
        assert later.decision.timers == ()
    # every transition is in the table, and history is append-only
    for entry in state.history:
        assert is_transition_valid(entry.from_status, entry.to_status)
    # compensation accounting
    effective = {step for (_, step, _) in harness.effects}
    comp_commands = Counter(
        m.payload["step_name"] for m in harness.published if m.topic.startswith("undo.")
    )
    comp_done = Counter(
        a.event.step
        for a in harness.log
        if isinstance(a.event, CompensationSucceeded) and a.decision.ignored is None
    )
    pivot_succeeded = any(
        s.kind is StepKind.PIVOT and state.step(s.name).status is StepStatus.SUCCEEDED
        for s in definition.steps.values()
    )
    if state.status is SagaStatus.COMPLETED:
        assert not comp_commands
        assert all(state.step(n).status is StepStatus.SUCCEEDED for n in definition.steps)
    else:
        assert not pivot_succeeded
        for name, step in definition.steps.items():
            st_ = state.step(name)
            if st_.attempt == 0:
                assert comp_commands[name] == 0, f"{name} never started but was compensated"
            if step.compensation_topic is None:
                continue
            if name in effective:
                assert comp_done[name] == 1, f"{name} took effect, compensated {comp_done[name]}x"
            assert comp_done[name] == (1 if st_.status is StepStatus.COMPENSATED else 0)
            if st_.status is not StepStatus.COMPENSATED:
                # only a step known to have had no effect is left alone
                assert not st_.uncertain
                assert st_.status is not StepStatus.SUCCEEDED
    for name, step in definition.steps.items():
        if step.kind is StepKind.RETRIABLE:
            assert comp_commands[name] == 0


def replay(harness: SagaHarness, definition: SagaDefinition) -> None:
    """Same inputs, same outputs; and a state that went through the codec decides the same."""
    state: SagaState | None = None
    for applied in harness.log:
        if state is not None:
            state = SagaState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
        again = decide(state, applied.event, applied.at, definition)
        assert again == _with_state(applied.decision, again, state)
        if again.ignored is None:
            state = again.state


def _with_state(recorded: Decision, again: Decision, state: SagaState | None) -> Decision:
    # an ignored decision returns its input state: compare the rest, and the state by value
    if recorded.ignored is not None:
        assert again.state == state
        return Decision(again.state, recorded.outgoing, recorded.timers, recorded.ignored)
    return recorded


@PROFILE
@given(scenarios())
def test_random_sagas_end_well(
    scenario: tuple[SagaDefinition, dict[str, StepScript], bool, int | None],
) -> None:
    definition, scripts, minimal, abort_ms = scenario
    harness = drive(definition, scripts, minimal, abort_ms)
    check_invariants(harness, definition)
    replay(harness, definition)


# -- redelivered minimal failures ----------------------------------------------------


class Redelivering(SagaHarness):
    """Minimal participants whose every failure reply is delivered again, unchanged,
    after each of `again` (so a copy may arrive after later attempts were sent)."""

    def __init__(
        self,
        definition: SagaDefinition,
        scripts: dict[str, StepScript],
        again: tuple[timedelta, ...],
    ) -> None:
        super().__init__(definition, scripts, minimal_replies=True)
        self.again = again

    def deliver(self, saga_id: str, event: Event, delay: timedelta = timedelta(0)) -> None:
        super().deliver(saga_id, event, delay)
        if isinstance(event, StepFailed):
            for extra in self.again:
                super().deliver(saga_id, event, delay + extra)


def failures_taken(harness: SagaHarness) -> Counter[tuple[str, int]]:
    """How many failures each (step, attempt) took while it awaited its reply."""
    taken: Counter[tuple[str, int]] = Counter()
    before: SagaState | None = None
    for a in harness.log:
        if a.decision.ignored is not None:
            continue
        if isinstance(a.event, StepFailed) and before is not None:
            st_ = before.step(a.event.step)
            if st_.status is StepStatus.PENDING:
                taken[(a.event.step, st_.attempt)] += 1
        before = a.decision.state
    return taken


redeliveries = st.lists(
    st.integers(0, 15_000).map(lambda ms: timedelta(milliseconds=ms)), min_size=1, max_size=2
)


@SMALLER
@given(scenarios(), redeliveries)
def test_redelivered_minimal_failures_never_skip_a_compensation(
    scenario: tuple[SagaDefinition, dict[str, StepScript], bool, int | None],
    again: list[timedelta],
) -> None:
    definition, scripts, _, abort_ms = scenario
    harness = Redelivering(definition, scripts, tuple(again))
    drive(definition, scripts, True, abort_ms, harness)
    # a step that took effect is compensated once, whatever copies arrived
    check_invariants(harness, definition)
    # copies use up at most one retry per attempt: an attempt takes one failure
    assert all(n == 1 for n in failures_taken(harness).values())
    replay(harness, definition)


# -- arbitrary event sequences -------------------------------------------------------


@st.composite
def raw_events(draw: st.DrawFn, definition: SagaDefinition) -> list[tuple[int, Event | str]]:
    names = [*definition.steps, "ghost"]
    step = st.sampled_from(names)
    cid = st.one_of(
        st.none(),
        st.builds(
            lambda s, k, n: f"{SID}:{s}:{k}{n}", step, st.sampled_from("ac"), st.integers(0, 4)
        ),
    )
    attempt = st.one_of(st.none(), st.integers(0, 4))
    event: st.SearchStrategy[Event | str] = st.one_of(
        st.builds(StepSucceeded, step, st.just({"r": 1}), cid, attempt),
        st.builds(
            StepFailed,
            step,
            st.just("e"),
            st.none(),
            st.sampled_from([True, False, None]),
            cid,
            attempt,
        ),
        st.builds(CompensationSucceeded, step, cid, attempt),
        st.builds(TimerFired, st.sampled_from(["t:s0:1", "r:s0:1", "c:s0:1", "junk"])),
        st.just("fire-a-live-timer"),
        st.builds(OperatorRetry),
        st.builds(OperatorAbort, st.just("x")),
        st.builds(StartSaga, st.just(SID), st.just({"again": True})),
    )
    return draw(st.lists(st.tuples(st.integers(0, 5_000), event), max_size=40))


@SMALLER
@given(st.data())
def test_arbitrary_event_sequences_keep_the_invariants(data: st.DataObject) -> None:
    definition = data.draw(definitions())
    events = data.draw(raw_events(definition))
    harness = SagaHarness(definition)
    harness.start(SID, {"order_id": "o-1"})
    for gap_ms, raw in events:
        harness.clock.advance(timedelta(milliseconds=gap_ms))
        before = harness.state(SID)
        if raw == "fire-a-live-timer":
            if not before.timers:
                continue
            item: Event = TimerFired(min(before.timers))
        else:
            assert not isinstance(raw, str)
            item = raw
        decision = harness.apply(SID, item)
        after = harness.state(SID)
        if decision.ignored is not None:
            assert decision.state is before
            assert after is before
            assert decision.outgoing == ()
            assert decision.timers == ()
            continue
        assert not before.finished, "a finished saga changed"
        # the state's live timers follow exactly from the timer changes
        live = dict(before.timers)
        if isinstance(item, TimerFired):
            live.pop(item.timer_id)
        for change in decision.timers:
            if isinstance(change, TimerSet):
                live[change.timer_id] = change.due
            else:
                assert isinstance(change, TimerCancel)
                live.pop(change.timer_id)
        assert live == dict(after.timers)
        assert after.history[: len(before.history)] == before.history
        assert len(after.history) > len(before.history)
        if after.finished:
            assert not after.timers
        # determinism
        assert decide(before, item, harness.clock.now, definition) == decision
    for entry in harness.state(SID).history:
        assert is_transition_valid(entry.from_status, entry.to_status)
