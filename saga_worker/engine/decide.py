"""The pure saga engine: `decide(state, event, now, definition) -> Decision`.

No I/O, no clock, no randomness: ids are derived from the saga id, step and
attempt, time comes in as `now`, and backoff jitter is a hash. The same inputs
always give the same decision, so the runtime may re-run decide after losing
a compare-and-set, and recorded histories replay exactly.

How a saga runs:

- StartSaga creates the saga and sends the first stage's commands. Stages run
  in order; a parallel group's commands go out together, and the group is done
  when all of them succeeded. After the last stage the completed outcome is
  sent and the saga is COMPLETED.
- A failed attempt (reply, or no reply before the step's timeout) is retried
  after a backoff timer while the step's retry policy allows and the failure
  is not a business failure (`retryable=False`; `None` counts as retryable).
  Otherwise the saga fails: steps of the current stage still in flight are
  abandoned, and every step that succeeded, or whose outcome is unknown (an
  attempt timed out, or it was abandoned in flight), is compensated, in reverse
  stage order, a parallel group's compensations together. Then the failed
  outcome (and the definition's failure notices) are sent: FAILED.
- Retriable steps after the pivot are retried until they succeed; one that
  gives up (finite max_attempts, or retryable=False) needs an operator.
- Compensations time out and are retried with the definition's
  compensation_retry policy; one that gives up puts the saga in
  NEEDS_OPERATOR. OperatorRetry resumes the stuck steps with a fresh budget.
- "Forever" is bounded: a policy with max_attempts=None gives up (as a finite
  one would) after UNLIMITED_ATTEMPTS attempts of one budget, and no step
  or compensation is ever sent an attempt past WIRE_MAX_ATTEMPT, the largest
  the wire carries; OperatorRetry is refused for a step that reached it.
- The history keeps its first HISTORY_HEAD and last HISTORY_TAIL entries; the
  ones between are replaced by one `HistoryTrimmed` entry whose detail counts
  them and whose statuses span them.
- OperatorAbort compensates a running saga on purpose, unless its pivot
  already succeeded.
- A reply carrying `command_id` answers exactly that command; one carrying
  only `attempt` answers that attempt of its step; a minimal reply (neither)
  answers the attempt in flight. A minimal failure taken after an earlier
  attempt of the step was sent may be a redelivered copy of that earlier
  attempt's failure, so the attempt in flight may have taken effect unheard:
  the step becomes uncertain, as after a timeout, and is compensated if the
  saga fails. Only a retryable one (`retryable` True or None) can be such a
  copy: an earlier attempt was followed by another only after a retryable
  failure or a timeout (which left the step uncertain already), and a copy
  says what its original said. Only a step awaiting a reply takes a failure,
  and taking it ends the wait, so each attempt is failed at most once: copies
  of one minimal failure can end a step's retries early (each may fail one
  later attempt), but never lose its compensation. While compensating, a
  minimal failure is a compensation failure; copies of one can only use up
  compensation retries, which ends in NEEDS_OPERATOR, not in a skipped
  compensation.
- Replies that do not answer the command the step waits for, timers no longer
  live in the state, events for finished or unknown sagas: ignored, with the
  reason in `Decision.ignored`, and the input state returned unchanged.

Timer ids are unique within a saga and say what they are for:
`t:<step>:<n>` attempt n's timeout, `r:<step>:<n>` the retry after attempt n,
`c:<step>:<n>` compensation attempt n's timeout, `cr:<step>:<n>` the retry
after compensation attempt n.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from saga_worker.engine.definition import (
    START_REQUESTED_TOPIC,
    WIRE_MAX_ATTEMPT,
    SagaDefinition,
    Step,
    StepKind,
)
from saga_worker.engine.events import (
    CompensationSucceeded,
    Event,
    EventArrived,
    OperatorAbort,
    OperatorRetry,
    ParentLink,
    StartSaga,
    StepFailed,
    StepSucceeded,
    TimerFired,
)
from saga_worker.engine.retry import RetryPolicy, compute_backoff
from saga_worker.engine.state import (
    NOT_STARTED,
    TERMINAL,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
    Transition,
    check_transition,
)
from saga_worker.errors import DefinitionMismatchError

SCHEMA_VERSION = 1
_DETAIL_MAX = 200  # history details and stored errors are truncated to this
# Bounds on what grows with a saga's age (see the module docstring).
UNLIMITED_ATTEMPTS = 1_000  # per budget, for max_attempts=None: hours to days of retries
HISTORY_HEAD = 20
HISTORY_TAIL = 200
HISTORY_TRIMMED = "HistoryTrimmed"  # the event name of the marker entry
# The reply topics a child saga answers its parent on (saga_worker.wire.topics repeats
# them; tests/unit/test_waits_and_children.py checks they agree).
REPLY_COMPLETED, REPLY_FAILED = "SagaStepCompleted", "SagaStepFailed"
REPLY_COMPENSATED = "SagaCompensationCompleted"
CHILD_FAILED = "child_failed"  # the error code of a child's failure, to its parent


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish: logical topic, key (the saga id), JSON-ready payload."""

    topic: str
    key: str
    payload: Mapping[str, Any]
    message_id: str


@dataclass(frozen=True, slots=True)
class TimerSet:
    timer_id: str
    due: datetime


@dataclass(frozen=True, slots=True)
class TimerCancel:
    timer_id: str


TimerChange = TimerSet | TimerCancel


@dataclass(frozen=True, slots=True)
class Decision:
    """What decide() wants done. `ignored` is set (and nothing else changes) when the
    event was not applied; `state` is then the input state, possibly None."""

    state: SagaState | None
    outgoing: tuple[Outgoing, ...] = ()
    timers: tuple[TimerChange, ...] = ()
    ignored: str | None = None


# -- deterministic ids ---------------------------------------------------------------


def command_id(saga_id: str, step: str, attempt: int) -> str:
    return f"{saga_id}:{step}:a{attempt}"


def compensation_id(saga_id: str, step: str, attempt: int) -> str:
    return f"{saga_id}:{step}:c{attempt}"


def command_belongs_to(saga_id: str, command: str | None) -> bool:
    """Whether `command` (a reply's command_id, if any) was issued by this saga."""
    return command is None or command.startswith(f"{saga_id}:")


def notice_id(saga_id: str, notice: str) -> str:
    return f"{saga_id}:{notice}:n1"


def completed_message_id(saga_id: str) -> str:
    return f"{saga_id}:completed"


def failed_message_id(saga_id: str) -> str:
    return f"{saga_id}:failed"


def reply_message_id(saga_id: str) -> str:
    """The id of a child saga's outcome as its parent's reply."""
    return f"{saga_id}:reply"


def child_saga_id(command: str) -> str:
    """The saga a child step's command (or compensation) starts: derived, so a
    re-sent start request finds the saga it already started. Shaped like the uuids
    App derives (SAGA_ID_CHARS), from a hash: the engine draws no random number."""
    h = hashlib.blake2b(command.encode(), digest_size=16, person=b"saga-child").hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


TIMEOUT, RETRY, COMP_TIMEOUT, COMP_RETRY = "t", "r", "c", "cr"


def timer_id(kind: str, step: str, attempt: int) -> str:
    return f"{kind}:{step}:{attempt}"


def parse_timer_id(value: str) -> tuple[str, str, int] | None:
    """(kind, step, attempt) of a timer id, or None if it is not one of ours."""
    parts = value.split(":")
    if len(parts) != 3 or parts[0] not in (TIMEOUT, RETRY, COMP_TIMEOUT, COMP_RETRY):
        return None
    if not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


# -- the decision function -----------------------------------------------------------


def decide(
    state: SagaState | None, event: Event, now: datetime, definition: SagaDefinition
) -> Decision:
    """Apply one event to one saga. Pure: see the module docstring."""
    if isinstance(event, StartSaga):
        if state is not None:
            return Decision(state, ignored="duplicate start: the saga exists")
        return _start(event, now, definition)
    if state is None:
        return Decision(None, ignored="unknown saga")
    if (state.definition_name, state.definition_version) != definition.key:
        raise DefinitionMismatchError(
            f"saga {state.saga_id} runs {state.definition_name} v{state.definition_version}, "
            f"decide got {definition.name} v{definition.version}"
        )
    if state.status in TERMINAL:
        return Decision(state, ignored=f"saga is {state.status.value}")
    draft = _Draft(state, type(event).__name__, now, definition)
    if isinstance(event, StepSucceeded):
        reason = _on_step_succeeded(draft, event)
    elif isinstance(event, StepFailed):
        reason = _on_step_failed(draft, event)
    elif isinstance(event, CompensationSucceeded):
        reason = _on_compensation_succeeded(draft, event)
    elif isinstance(event, TimerFired):
        reason = _on_timer(draft, event)
    elif isinstance(event, OperatorRetry):
        reason = _on_operator_retry(draft)
    elif isinstance(event, OperatorAbort):
        reason = _on_operator_abort(draft, event)
    elif isinstance(event, EventArrived):
        reason = _on_event_arrived(draft, event)
    else:  # pragma: no cover - exhaustive over Event
        raise TypeError(f"not an engine event: {event!r}")
    if reason is not None:
        return Decision(state, ignored=reason)
    return draft.decision()


class _Draft:
    """The mutable working copy of one decision; shares all unchanged values."""

    __slots__ = (
        "created_at",
        "data",
        "defn",
        "error",
        "event",
        "history",
        "now",
        "operator_reason",
        "out",
        "parent",
        "saga_id",
        "stage",
        "status",
        "steps",
        "timer_changes",
        "timers",
    )

    def __init__(self, state: SagaState, event: str, now: datetime, defn: SagaDefinition) -> None:
        self.defn = defn
        self.event = event
        self.now = now
        self.saga_id = state.saga_id
        self.data = state.data
        self.created_at = state.created_at
        self.parent = state.parent
        self.status: SagaStatus | None = state.status
        self.stage = state.stage
        self.error = state.error
        self.operator_reason = state.operator_reason
        self.steps: dict[str, StepState] = dict(state.steps)
        self.history: list[Transition] = list(state.history)
        self.timers: dict[str, datetime] = dict(state.timers)
        self.out: list[Outgoing] = []
        self.timer_changes: list[TimerChange] = []

    @property
    def current(self) -> SagaStatus:
        assert self.status is not None
        return self.status

    def get(self, name: str) -> StepState:
        return self.steps.get(name, NOT_STARTED)

    def put(self, name: str, st: StepState) -> None:
        self.steps[name] = st

    def move(self, to: SagaStatus, step: str | None = None, detail: str | None = None) -> None:
        check_transition(self.status, to)
        self.history.append(Transition(self.now, self.event, self.status, to, step, detail))
        self.status = to

    def stay(self, step: str | None = None, detail: str | None = None) -> None:
        self.move(self.current, step, detail)

    def set_timer(self, tid: str, due: datetime) -> None:
        self.timers[tid] = due
        self.timer_changes.append(TimerSet(tid, due))

    def cancel_timer(self, tid: str) -> None:
        if self.timers.pop(tid, None) is not None:
            self.timer_changes.append(TimerCancel(tid))

    def emit(
        self, topic: str, payload: dict[str, Any], message_id: str, key: str | None = None
    ) -> None:
        self.out.append(Outgoing(topic, key or self.saga_id, payload, message_id))

    def results(self) -> dict[str, Any]:
        return {name: st.result for name, st in self.steps.items() if st.result is not None}

    def decision(self) -> Decision:
        state = SagaState(
            saga_id=self.saga_id,
            definition_name=self.defn.name,
            definition_version=self.defn.version,
            status=self.current,
            data=self.data,
            steps=self.steps,
            history=_bounded(self.history),
            created_at=self.created_at,
            updated_at=self.now,
            error=self.error,
            operator_reason=self.operator_reason,
            stage=self.stage,
            timers=self.timers,
            parent=self.parent,
        )
        return Decision(state, tuple(self.out), tuple(self.timer_changes))


def _clip(text: str) -> str:
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


def _bounded(history: list[Transition]) -> tuple[Transition, ...]:
    """The history, its middle replaced by one HISTORY_TRIMMED entry once it is longer
    than HISTORY_HEAD + 1 + HISTORY_TAIL: the marker counts every entry dropped so far
    and goes from the first dropped entry's status to the last one's."""
    if len(history) <= HISTORY_HEAD + 1 + HISTORY_TAIL:
        return tuple(history)
    dropped = history[HISTORY_HEAD:-HISTORY_TAIL]
    count = len(dropped)
    if dropped[0].event == HISTORY_TRIMMED and dropped[0].detail:
        count += int(dropped[0].detail.split()[0]) - 1  # the old marker stood for these
    marker = Transition(
        dropped[-1].at,
        HISTORY_TRIMMED,
        dropped[0].from_status,
        dropped[-1].to_status,
        None,
        f"{count} entries dropped",
    )
    return (*history[:HISTORY_HEAD], marker, *history[-HISTORY_TAIL:])


def _no_attempt_left(policy: RetryPolicy, made: int, attempt: int) -> str | None:
    """None while another attempt may follow `attempt` (the `made`-th of its budget);
    otherwise why not: "" when the policy's max_attempts ran out, else which bound."""
    if attempt >= WIRE_MAX_ATTEMPT:
        return f"attempt {attempt} is the last the wire carries"
    if policy.max_attempts is None:
        if made >= UNLIMITED_ATTEMPTS:
            return f"unlimited retries stop after {UNLIMITED_ATTEMPTS} attempts"
        return None
    return None if policy.allows_another(made) else ""


# -- starting and moving forward -----------------------------------------------------


def _start(event: StartSaga, now: datetime, defn: SagaDefinition) -> Decision:
    empty = SagaState(
        saga_id=event.saga_id,
        definition_name=defn.name,
        definition_version=defn.version,
        status=SagaStatus.STARTED,
        data=event.data,
        steps={},
        history=(),
        created_at=now,
        updated_at=now,
        parent=event.parent,
    )
    draft = _Draft(empty, "StartSaga", now, defn)
    draft.status = None
    draft.move(SagaStatus.STARTED)
    draft.move(SagaStatus.PENDING, step=defn.groups[0][0].name)
    _start_stage(draft, 0)
    return draft.decision()


def _start_stage(d: _Draft, index: int) -> None:
    d.stage = index
    group = d.defn.groups[index]
    for step in group:
        _send_command(d, step, d.get(step.name).attempt + 1)
    # Waits decided at once: one with an event that came early, or skipped.
    for step in group:
        if d.stage != index or d.status is not SagaStatus.PENDING:
            return  # taking an early event moved the saga on, or failed it
        st = d.get(step.name)
        if step.wait is not None and st.status is StepStatus.PENDING and st.early is not None:
            _take_event(d, step, st.early)
    done = all(d.get(s.name).status is StepStatus.SUCCEEDED for s in group)
    if done and d.stage == index and d.status is SagaStatus.PENDING:  # every wait skipped
        if index + 1 < len(d.defn.groups):
            _start_stage(d, index + 1)
        else:
            _complete(d, group[-1].name)


def _command_payload(
    d: _Draft, step: str, cid: str, attempt: int, results: Mapping[str, Any]
) -> dict[str, Any]:
    """The body every command carries: the saga data, who asks, and earlier results."""
    return {
        **d.data,
        "saga_id": d.saga_id,
        "step_name": step,
        "command_id": cid,
        "attempt": attempt,
        "message_id": cid,
        "schema_version": SCHEMA_VERSION,
        "results": results,
    }


def _send_command(d: _Draft, step: Step, attempt: int) -> None:
    """Runs `attempt` of a step: sends its command, starts its child, or opens its wait."""
    if step.wait is not None and step.wait.when is not None and not _holds(step.wait.when, d.data):
        d.put(step.name, replace(d.get(step.name), status=StepStatus.SUCCEEDED, attempt=attempt))
        d.stay(step.name, "wait skipped: its condition does not hold")
        return
    cid = command_id(d.saga_id, step.name, attempt)
    d.put(step.name, replace(d.get(step.name), status=StepStatus.PENDING, attempt=attempt))
    if step.child is not None:
        link = ParentLink(d.saga_id, step.name, cid, attempt)
        _start_child(d, step.child.saga, link, d.results())
    elif step.wait is None:
        d.emit(step.command_topic, _command_payload(d, step.name, cid, attempt, d.results()), cid)
    d.set_timer(timer_id(TIMEOUT, step.name, attempt), d.now + step.timeout)


def _holds(condition: Callable[[Mapping[str, Any]], bool], data: Mapping[str, Any]) -> bool:
    """A wait's `when` on the saga's data; one that raises counts as true (the saga
    waits, and the deadline decides), never as a crash of the engine."""
    try:
        return bool(condition(data))
    except Exception:  # user code: see the docstring
        return True


def rejection(step: Step, data: Mapping[str, Any]) -> str | None:
    """Why a wait's `rejects` refuses the event, or None when it accepts it. Raises
    ValueError if `rejects` itself raised: the runtime dead-letters such an event."""
    assert step.wait is not None
    if step.wait.rejects is None:
        return None
    try:
        rejected = bool(step.wait.rejects(data))
    except Exception as exc:
        raise ValueError(f"wait {step.name}: rejects() raised {exc!r}") from exc
    return f"rejected by the event on {step.command_topic}" if rejected else None


def _start_child(
    d: _Draft, saga: str, link: ParentLink, results: Mapping[str, Any], **extra: Any
) -> None:
    """Asks for a saga of type `saga` to start, answering `link`'s command when it ends."""
    child = child_saga_id(link.command_id)
    payload = {
        "saga_id": child,
        "saga_type": saga,
        "step_name": link.step,  # lets the size check find the step it belongs to
        "data": {**d.data, "parent_results": results, **extra},
        "parent": link.to_dict(),
        "message_id": link.command_id,
        "schema_version": SCHEMA_VERSION,
    }
    d.emit(START_REQUESTED_TOPIC, payload, link.command_id, key=child)


def _answers(expected_attempt: int, expected_id: str, cid: str | None, attempt: int | None) -> bool:
    if cid is not None:
        return cid == expected_id
    if attempt is not None:
        return attempt == expected_attempt
    return True  # a minimal reply answers the current attempt


def _is_minimal(event: StepSucceeded | StepFailed | CompensationSucceeded) -> bool:
    """Whether a reply says nothing of which command it answers (the minimal contract)."""
    return event.command_id is None and event.attempt is None


def _take_reply(
    d: _Draft,
    step: Step,
    st: StepState,
    event: StepSucceeded | StepFailed | CompensationSucceeded,
    *,
    compensation: bool,
) -> str | None:
    """Accepts a reply to the command in flight (stopping its timeout), or says why not."""
    attempt = st.comp_attempt if compensation else st.attempt
    make_id = compensation_id if compensation else command_id
    expected = make_id(d.saga_id, step.name, attempt)
    if not _answers(attempt, expected, event.command_id, event.attempt):
        return f"reply does not answer {expected}"
    d.cancel_timer(timer_id(COMP_TIMEOUT if compensation else TIMEOUT, step.name, attempt))
    return None


def _on_step_succeeded(d: _Draft, event: StepSucceeded) -> str | None:
    step = d.defn.steps.get(event.step)
    if step is None:
        return f"unknown step {event.step!r}"
    if step.wait is not None:
        return f"step {step.name} waits for an event, not a reply"
    st = d.get(step.name)
    if st.status is not StepStatus.PENDING:
        return f"step {step.name} is {st.status.value}, not awaiting a reply"
    if (refused := _take_reply(d, step, st, event, compensation=False)) is not None:
        return refused
    _succeeded(d, step, event.result)
    return None


def _succeeded(d: _Draft, step: Step, result: Mapping[str, Any], detail: str | None = None) -> None:
    st = replace(d.get(step.name), status=StepStatus.SUCCEEDED, result=result, error=None)
    d.put(step.name, replace(st, early=None))
    _advance(d, step.name, detail)


def _advance(d: _Draft, step: str, detail: str | None = None) -> None:
    """After a step of the current stage succeeded: wait for the others, start the
    next stage, or complete the saga."""
    group = d.defn.groups[d.stage]
    if any(d.get(s.name).status is not StepStatus.SUCCEEDED for s in group):
        d.stay(step, detail)
    elif d.stage + 1 < len(d.defn.groups):
        d.stay(step, detail)
        _start_stage(d, d.stage + 1)
    else:
        _complete(d, step, detail)


def _on_event_arrived(d: _Draft, event: EventArrived) -> str | None:
    step = d.defn.steps.get(event.step)
    if step is None or step.wait is None:
        return f"saga {d.defn.name} has no wait step {event.step!r}"
    st = d.get(step.name)
    if st.status is StepStatus.PENDING:
        _take_event(d, step, event.data)
        return None
    if st.status is StepStatus.NOT_STARTED and d.status is SagaStatus.PENDING:
        if st.early is not None:
            return f"wait {step.name} already keeps an event for when the saga gets there"
        d.put(step.name, replace(st, early=event.data))
        d.stay(step.name, "event kept until the saga gets to this wait")
        return None
    return f"wait {step.name} is {st.status.value}, not waiting"


def _take_event(d: _Draft, step: Step, data: Mapping[str, Any]) -> None:
    """The wait in flight takes its event: accepted, it is the step's result."""
    st = d.get(step.name)
    d.cancel_timer(timer_id(TIMEOUT, step.name, st.attempt))
    try:
        rejected = rejection(step, data)
    except ValueError as exc:  # the runtime dead-letters these before they get here
        rejected = str(exc)
    if rejected is None:
        _succeeded(d, step, data, "event arrived")
        return
    failed = replace(st, status=StepStatus.FAILED, result=data, error=rejected, early=None)
    d.put(step.name, failed)
    _attempt_failed(d, step, False, rejected)


def _complete(d: _Draft, step: str, detail: str | None = None) -> None:
    d.move(SagaStatus.COMPLETED, step, detail)
    d.error = None
    _cancel_all_timers(d)
    results = d.results()
    payload = {
        **d.data,
        "saga_id": d.saga_id,
        "results": results,
        "message_id": completed_message_id(d.saga_id),
        "schema_version": SCHEMA_VERSION,
    }
    d.emit(d.defn.completed_topic, payload, completed_message_id(d.saga_id))
    if d.parent is not None:
        topic = REPLY_COMPENSATED if d.parent.compensation else REPLY_COMPLETED
        extra = {} if d.parent.compensation else {"result": results}
        _answer_parent(d, topic, **extra)


def _answer_parent(d: _Draft, topic: str, **fields: Any) -> None:
    """A child saga's outcome, sent as the reply to the parent's command that started it."""
    link = d.parent
    assert link is not None
    mid = reply_message_id(d.saga_id)
    payload = {
        "saga_id": link.saga_id,
        "step_name": link.step,
        "command_id": link.command_id,
        "attempt": link.attempt,
        "message_id": mid,
        "schema_version": SCHEMA_VERSION,
        **fields,
    }
    d.emit(topic, payload, mid, key=link.saga_id)


def _cancel_all_timers(d: _Draft) -> None:
    for tid in list(d.timers):
        d.cancel_timer(tid)


def _on_step_failed(d: _Draft, event: StepFailed) -> str | None:
    step = d.defn.steps.get(event.step)
    if step is None:
        return f"unknown step {event.step!r}"
    if step.wait is not None:
        return f"step {step.name} waits for an event, not a reply"
    st = d.get(step.name)
    reason = _clip(f"{event.error_code}: {event.error}" if event.error_code else event.error)
    if st.status is StepStatus.PENDING:
        if (refused := _take_reply(d, step, st, event, compensation=False)) is not None:
            return refused
        # A retryable minimal failure after attempt 1 may be a copy of an earlier
        # attempt's: the attempt in flight may have taken effect (see the module doc).
        maybe_earlier = _is_minimal(event) and st.attempt > 1 and event.retryable is not False
        failed = replace(
            st,
            status=StepStatus.FAILED,
            error=reason or "failed",
            uncertain=st.uncertain or maybe_earlier,
        )
        d.put(step.name, failed)
        which = f"attempt {st.attempt} failed"
        if maybe_earlier:
            which += " (minimal reply: may be an earlier attempt's)"
        _attempt_failed(d, step, event.retryable, f"{which}: {reason}")
        return None
    if st.status is StepStatus.COMPENSATING:
        if (refused := _take_reply(d, step, st, event, compensation=True)) is not None:
            return refused
        _compensation_attempt_failed(
            d, step, event.retryable, f"compensation {st.comp_attempt} failed: {reason}"
        )
        return None
    return f"step {step.name} is {st.status.value}, not awaiting a reply"


def _attempt_failed(d: _Draft, step: Step, retryable: bool | None, reason: str) -> None:
    """The step's current attempt failed or timed out (its state says which)."""
    st = d.get(step.name)
    made = st.attempt - st.base
    bound = _no_attempt_left(step.policy, made, st.attempt)
    if retryable is not False and bound is None:
        delay = compute_backoff(step.policy, made, command_id(d.saga_id, step.name, st.attempt))
        d.set_timer(timer_id(RETRY, step.name, st.attempt), d.now + delay)
        d.stay(step.name, reason)
    elif step.kind is StepKind.RETRIABLE:
        d.put(step.name, replace(st, stuck=True))
        why = f" ({bound})" if retryable is not False and bound else ""
        d.operator_reason = _clip(f"step {step.name} gave up after {made} attempts{why}: {reason}")
        d.move(SagaStatus.NEEDS_OPERATOR, step.name, reason)
    else:
        _fail(d, _clip(f"step {step.name}: {reason}"), step.name)


# -- failing and compensating --------------------------------------------------------


def _fail(d: _Draft, reason: str, step: str | None) -> None:
    """Abandon the current stage and compensate everything that may have taken effect."""
    d.error = reason
    for s in d.defn.groups[d.stage]:
        st = d.get(s.name)
        if st.status is StepStatus.PENDING:
            d.cancel_timer(timer_id(TIMEOUT, s.name, st.attempt))
            d.put(s.name, replace(st, status=StepStatus.ABANDONED, uncertain=True))
        elif st.status in (StepStatus.FAILED, StepStatus.TIMED_OUT):
            d.cancel_timer(timer_id(RETRY, s.name, st.attempt))
    _compensate_from(d, d.stage, step, reason)


def _needs_compensation(step: Step, st: StepState) -> bool:
    return step.compensation_topic is not None and (
        st.status is StepStatus.SUCCEEDED
        or (st.uncertain and st.status is not StepStatus.COMPENSATED)
    )


def _compensate_from(d: _Draft, index: int, step: str | None, detail: str | None) -> None:
    """Start compensating the highest stage <= index that needs it, or finish FAILED."""
    for i in range(index, -1, -1):
        todo = [s for s in d.defn.groups[i] if _needs_compensation(s, d.get(s.name))]
        if todo:
            d.stage = i
            d.move(SagaStatus.COMPENSATING, step, detail)
            for s in todo:
                _send_compensation(d, s, d.get(s.name).comp_attempt + 1)
            return
    d.move(SagaStatus.FAILED, step, detail)
    _cancel_all_timers(d)
    results = d.results()
    for name, topic in d.defn.failure_notices:
        nid = notice_id(d.saga_id, name)
        payload = {**_command_payload(d, name, nid, 1, results), "error": d.error}
        d.emit(topic, payload, nid)
    fid = failed_message_id(d.saga_id)
    payload = {
        **d.data,
        "saga_id": d.saga_id,
        "error": d.error,
        "message_id": fid,
        "schema_version": SCHEMA_VERSION,
    }
    d.emit(d.defn.failed_topic, payload, fid)
    if d.parent is not None:
        _answer_parent(
            d, REPLY_FAILED, error=d.error or "failed", retryable=False, error_code=CHILD_FAILED
        )


def _send_compensation(d: _Draft, step: Step, attempt: int) -> None:
    assert step.compensation_topic is not None
    st = d.get(step.name)
    cid = compensation_id(d.saga_id, step.name, attempt)
    d.put(step.name, replace(st, status=StepStatus.COMPENSATING, comp_attempt=attempt))
    if step.child is not None and step.child.compensation_saga is not None:
        link = ParentLink(d.saga_id, step.name, cid, attempt, compensation=True)
        _start_child(d, step.child.compensation_saga, link, d.results(), original_result=st.result)
        d.set_timer(timer_id(COMP_TIMEOUT, step.name, attempt), d.now + step.timeout)
        return
    payload = {
        **_command_payload(d, step.name, cid, attempt, d.results()),
        "original_result": st.result,
        "original_command_id": command_id(d.saga_id, step.name, st.attempt) if st.attempt else None,
    }
    d.emit(step.compensation_topic, payload, cid)
    d.set_timer(timer_id(COMP_TIMEOUT, step.name, attempt), d.now + d.defn.compensation_timeout)


def _on_compensation_succeeded(d: _Draft, event: CompensationSucceeded) -> str | None:
    step = d.defn.steps.get(event.step)
    if step is None:
        return f"unknown step {event.step!r}"
    st = d.get(step.name)
    if st.status is not StepStatus.COMPENSATING:
        return f"step {step.name} is {st.status.value}, not compensating"
    if (refused := _take_reply(d, step, st, event, compensation=True)) is not None:
        return refused
    d.put(step.name, replace(st, status=StepStatus.COMPENSATED, error=None))
    _after_compensation(d, step.name)
    return None


_RETRY_WAIT = (StepStatus.FAILED, StepStatus.TIMED_OUT)
_COMP_OPEN = (StepStatus.COMPENSATING, StepStatus.COMPENSATION_FAILED)


def _after_compensation(d: _Draft, step: str) -> None:
    if any(d.get(s.name).status in _COMP_OPEN for s in d.defn.groups[d.stage]):
        d.stay(step)
    else:
        _compensate_from(d, d.stage - 1, step, None)


def _compensation_attempt_failed(
    d: _Draft, step: Step, retryable: bool | None, reason: str
) -> None:
    st = replace(d.get(step.name), status=StepStatus.COMPENSATION_FAILED, error=reason)
    made = st.comp_attempt - st.comp_base
    policy = d.defn.compensation_retry
    bound = _no_attempt_left(policy, made, st.comp_attempt)
    if retryable is not False and bound is None:
        d.put(step.name, st)
        seed = compensation_id(d.saga_id, step.name, st.comp_attempt)
        delay = compute_backoff(policy, made, seed)
        d.set_timer(timer_id(COMP_RETRY, step.name, st.comp_attempt), d.now + delay)
        d.stay(step.name, reason)
    else:
        d.put(step.name, replace(st, stuck=True))
        why = f" ({bound})" if retryable is not False and bound else ""
        d.operator_reason = _clip(
            f"compensation of {step.name} gave up after {made} attempts{why}: {reason}"
        )
        d.move(SagaStatus.NEEDS_OPERATOR, step.name, reason)


# -- timers and operators ------------------------------------------------------------


def _on_timer(d: _Draft, event: TimerFired) -> str | None:
    parsed = parse_timer_id(event.timer_id)
    if parsed is None or event.timer_id not in d.timers:
        return f"stale timer {event.timer_id}"
    kind, name, n = parsed
    step = d.defn.steps.get(name)
    if step is None:  # pragma: no cover - only live timers of known steps get here
        return f"unknown step {name!r}"
    st = d.get(name)
    del d.timers[event.timer_id]  # it fired: gone from the saga's live timers
    if kind == TIMEOUT and st.status is StepStatus.PENDING and st.attempt == n and step.wait:
        _deadline_passed(d, step)
    elif kind == TIMEOUT and st.status is StepStatus.PENDING and st.attempt == n:
        d.put(name, replace(st, status=StepStatus.TIMED_OUT, uncertain=True, error="timed out"))
        _attempt_failed(d, step, None, f"attempt {n} timed out")
    elif kind == RETRY and st.status in _RETRY_WAIT and st.attempt == n:
        d.stay(name, f"attempt {n + 1}")
        _send_command(d, step, n + 1)
    elif kind == COMP_TIMEOUT and st.status is StepStatus.COMPENSATING and st.comp_attempt == n:
        _compensation_attempt_failed(d, step, None, f"compensation {n} timed out")
    elif (
        kind == COMP_RETRY and st.status is StepStatus.COMPENSATION_FAILED and st.comp_attempt == n
    ):
        d.stay(name, f"compensation {n + 1}")
        _send_compensation(d, step, n + 1)
    else:  # pragma: no cover - live timers always match their step's state
        return f"stale timer {event.timer_id}"
    return None


def _deadline_passed(d: _Draft, step: Step) -> None:
    """A wait's deadline passed with no event: its default is the result, or it fails."""
    assert step.wait is not None
    if step.wait.default is not None:
        _succeeded(d, step, step.wait.default, "deadline passed: the default is the result")
        return
    reason = f"deadline passed: no event on {step.command_topic} within {step.timeout}"
    st = replace(d.get(step.name), status=StepStatus.FAILED, error=reason)
    d.put(step.name, st)
    _attempt_failed(d, step, False, reason)


def _on_operator_retry(d: _Draft) -> str | None:
    if d.status is not SagaStatus.NEEDS_OPERATOR:
        return f"saga is {d.current.value}, not waiting for an operator"
    stuck = [s for s in d.defn.groups[d.stage] if d.get(s.name).stuck]
    if not stuck:  # pragma: no cover - NEEDS_OPERATOR always has a stuck step
        return "no stuck step to retry"
    compensating = d.get(stuck[0].name).status is StepStatus.COMPENSATION_FAILED
    for s in stuck:
        st = d.get(s.name)
        if (st.comp_attempt if compensating else st.attempt) >= WIRE_MAX_ATTEMPT:
            return f"step {s.name} made every attempt the wire carries ({WIRE_MAX_ATTEMPT})"
    d.operator_reason = None
    resumed = SagaStatus.COMPENSATING if compensating else SagaStatus.PENDING
    d.move(resumed, stuck[0].name, "resumed by operator")
    for s in stuck:
        st = d.get(s.name)
        if compensating:
            d.put(s.name, replace(st, stuck=False, comp_base=st.comp_attempt))
            _send_compensation(d, s, st.comp_attempt + 1)
        else:
            d.put(s.name, replace(st, stuck=False, base=st.attempt))
            _send_command(d, s, st.attempt + 1)
    return None


def _on_operator_abort(d: _Draft, event: OperatorAbort) -> str | None:
    if d.status is SagaStatus.COMPENSATING or (
        d.status is SagaStatus.NEEDS_OPERATOR
        and any(d.get(s.name).status in _COMP_OPEN for s in d.defn.groups[d.stage])
    ):
        return "saga is already compensating"
    pivot = d.defn.pivot_stage
    if pivot is not None and d.stage > pivot:
        return "abort refused: the pivot step already succeeded"
    _fail(d, _clip(f"aborted: {event.reason}"), None)
    return None
