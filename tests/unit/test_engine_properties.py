"""Property tests: random definitions driven through random participant behaviour.

Definitions may hold wait steps (with or without a default, a rejecting predicate,
a condition) and child steps; each wait gets events that arrive early, late, twice,
or never.

Profiles: HYPOTHESIS_PROFILE=saga-ci (default, a few thousand examples in all),
saga-dev (quick), saga-thorough (long), saga-mutation (quick, no shrinking and no
example database, so a mutant's fate is the same in every run: make mutation). Example:
    HYPOTHESIS_PROFILE=saga-thorough .venv/bin/pytest tests/unit/test_engine_properties.py
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from saga_worker.engine.decide import (
    UNLIMITED_ATTEMPTS,
    Decision,
    TimerCancel,
    TimerSet,
    decide,
)
from saga_worker.engine.definition import (
    START_REQUESTED_TOPIC,
    ChildSaga,
    Parallel,
    SagaDefinition,
    Stage,
    Step,
    StepKind,
    Wait,
)
from saga_worker.engine.events import (
    CompensationSucceeded,
    Event,
    EventArrived,
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
settings.register_profile(
    "saga-mutation",
    max_examples=100,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    **_COMMON,  # type: ignore[arg-type]
)
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


def refuses(event: object) -> bool:
    return isinstance(event, dict) and event.get("ok") is False


def never(data: object) -> bool:
    return False


WAIT_TOPIC = "evt.w"


@st.composite
def definitions(draw: st.DrawFn) -> SagaDefinition:
    counter = iter(range(100))

    def wait() -> Step:
        return Wait(
            f"w{next(counter)}",
            topic=WAIT_TOPIC,
            correlate="order_id",
            deadline=timedelta(seconds=draw(st.sampled_from([2, 15]))),
            default=draw(st.sampled_from([None, {"d": 1}])),
            rejects=draw(st.sampled_from([None, refuses])),
            when=draw(st.sampled_from([None, None, never])),
        )

    def step(kind: StepKind, comp: bool) -> Step:
        n = next(counter)
        timeout = timedelta(seconds=draw(st.sampled_from([1, 5, 10])))
        if comp and draw(st.integers(0, 4)) == 0:  # its script is the child's outcome
            return ChildSaga(
                f"s{n}", "Kid", compensation_saga="UndoKid", timeout=timeout, kind=kind
            )
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
    for _ in range(draw(st.integers(0, 2))):
        stages.insert(draw(st.integers(0, len(stages))), wait())
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


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What a participant does after an operator's retry: its answers to the attempts
    (and compensation attempts) sent from then on, in order; after them it succeeds."""

    attempts: tuple[Action, ...] = ()
    compensations: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    definition: SagaDefinition
    scripts: dict[str, StepScript]
    minimal: bool
    abort_ms: int | None
    # events for the wait steps: (step, delay ms, ok) each, early, late, twice or never
    events: tuple[tuple[str, int, bool], ...] = ()
    # per operator retry (the first, the second, ...), per step; then all succeed
    resumes: tuple[dict[str, Behaviour], ...] = field(default=())


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
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
    behaviour = st.builds(
        Behaviour,
        st.lists(forward_actions, max_size=3).map(tuple),
        st.lists(comp_actions, max_size=4).map(tuple),
    )
    resumes = draw(
        st.lists(st.dictionaries(st.sampled_from(sorted(definition.steps)), behaviour), max_size=3)
    )
    events = [
        (step.name, delay, ok)
        for step in definition.waits
        for delay, ok in draw(
            st.lists(st.tuples(st.integers(0, 20_000), st.booleans()), max_size=3)
        )
    ]
    return Scenario(definition, scripts, minimal, abort_ms, tuple(events), tuple(resumes))


# -- the checks ----------------------------------------------------------------------


def after_resume(
    state: SagaState, definition: SagaDefinition, resume: dict[str, Behaviour]
) -> dict[str, StepScript]:
    """Scripts from an operator's retry on: a step's Behaviour answers the attempts sent
    after it (numbered on from the attempts already made), then everything succeeds."""
    scripts: dict[str, StepScript] = {}
    for name in definition.steps:
        behaviour = resume.get(name, Behaviour())
        made = state.step(name)
        scripts[name] = StepScript(  # the padding answers attempts already sent: never used
            attempts=(Succeed(),) * made.attempt + behaviour.attempts,
            compensations=(Succeed(),) * made.comp_attempt + behaviour.compensations,
        )
    return scripts


def drive(scenario: Scenario, harness: SagaHarness | None = None) -> SagaHarness:
    definition = scenario.definition
    harness = harness or SagaHarness(definition, scenario.scripts, minimal_replies=scenario.minimal)
    harness.start(SID, {"order_id": "o-1"})
    for step, delay_ms, ok in scenario.events:
        harness.signal(SID, step, {"ok": ok}, timedelta(milliseconds=delay_ms))
    if scenario.abort_ms is not None:
        harness.deliver(SID, OperatorAbort("test"), timedelta(milliseconds=scenario.abort_ms))
    harness.run(max_events=5_000)
    for resumed in range(10):  # an operator steps in until the saga ends
        state = harness.state(SID)
        if state.status is not SagaStatus.NEEDS_OPERATOR:
            break
        # the participants may fail again in the first rounds; then they are fixed
        resume = scenario.resumes[resumed] if resumed < len(scenario.resumes) else {}
        harness.scripts = after_resume(state, definition, resume)
        harness.apply(SID, OperatorRetry())
        harness.run(max_events=5_000)
    return harness


def check_budgets(harness: SagaHarness, definition: SagaDefinition) -> None:
    """Every retry budget is whole: a step or a compensation that gave up after retryable
    failures or timeouts made exactly its policy's attempts since it started, or since an
    operator last resumed it (counted here from the attempts sent, not from the state)."""
    start: dict[tuple[str, bool], int] = {}
    before: SagaState | None = None
    for applied in harness.log:
        after = applied.decision.state
        if applied.decision.ignored is not None or after is None:
            continue
        if isinstance(applied.event, OperatorRetry):
            assert before is not None
            for name, st_ in before.steps.items():
                if st_.stuck:
                    compensating = st_.status is StepStatus.COMPENSATION_FAILED
                    start[(name, compensating)] = st_.comp_attempt if compensating else st_.attempt
        business = isinstance(applied.event, StepFailed) and applied.event.retryable is False
        for name, st_ in after.steps.items():
            if not st_.stuck or (before is not None and before.step(name).stuck) or business:
                continue  # a business failure ends a budget at once
            compensating = st_.status is StepStatus.COMPENSATION_FAILED
            step = definition.steps[name]
            policy = definition.compensation_retry if compensating else step.policy
            sent = st_.comp_attempt if compensating else st_.attempt
            made = sent - start.get((name, compensating), 0)
            budget = policy.max_attempts or UNLIMITED_ATTEMPTS
            what = "compensation" if compensating else "step"
            assert made == budget, f"{what} {name} gave up after {made} attempts, not {budget}"
        before = after


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
        m.payload["step_name"]
        for m in harness.published
        if m.topic.startswith("undo.")
        or (m.topic == START_REQUESTED_TOPIC and m.payload["parent"]["compensation"])
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
    check_budgets(harness, definition)
    check_waits(harness, definition)


def check_waits(harness: SagaHarness, definition: SagaDefinition) -> None:
    """An event has one effect: a wait takes at most one, and its result is that event's
    body or its default; a wait never sends anything."""
    state = harness.state(SID)
    for step in definition.waits:
        assert step.wait is not None
        taken = [
            a.event.data
            for a in harness.log
            if isinstance(a.event, EventArrived)
            and a.event.step == step.name
            and a.decision.ignored is None
        ]
        assert len(taken) <= 1, f"wait {step.name} took {len(taken)} events"
        result = state.step(step.name).result
        if result is not None:
            assert result in (*taken, step.wait.default)
        assert not harness.messages(topic=WAIT_TOPIC)


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
def test_random_sagas_end_well(scenario: Scenario) -> None:
    harness = drive(scenario)
    check_invariants(harness, scenario.definition)
    replay(harness, scenario.definition)


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
    scenario: Scenario, again: list[timedelta]
) -> None:
    definition = scenario.definition
    harness = Redelivering(definition, scenario.scripts, tuple(again))
    drive(scenario, harness)
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
        st.builds(EventArrived, step, st.sampled_from([{"ok": True}, {"ok": False}])),
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
