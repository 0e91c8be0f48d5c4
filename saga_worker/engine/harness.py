"""An in-memory harness that runs sagas end to end through `decide`, in one process.

For tests, yours and ours: a fake clock, a dict as the saga store, a list as
the bus, a timer table that fires when the clock reaches a due time, and
scripted participants that answer each command as told, per step and attempt:

    harness = SagaHarness(ORDER_FULFILLMENT, {
        "process_payment": StepScript(attempts=(Fail("card declined"),)),
        "reserve_inventory": StepScript(compensations=(NoReply(), Succeed())),
    })
    state = harness.run_saga("saga-1", {"order_id": "o-1"})
    assert state.status is SagaStatus.FAILED

Actions: `Succeed(result)`, `Fail(error, retryable=...)`, `NoReply()` (the
step times out), each with a `delay` before the reply arrives (so replies can
be late or overtake each other) and `duplicates` (extra copies of the reply).
Replies carry command_id and attempt unless `minimal_replies=True`, which
sends only what the minimal wire contract requires. A child step's script is its
child saga's outcome (Succeed: the child completed with that result). Wait steps
get their events from `signal`.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from saga_worker.engine.decide import Decision, Outgoing, TimerCancel, TimerSet, decide
from saga_worker.engine.definition import START_REQUESTED_TOPIC, SagaDefinition
from saga_worker.engine.events import (
    CompensationSucceeded,
    Event,
    EventArrived,
    StartSaga,
    StepFailed,
    StepSucceeded,
    TimerFired,
)
from saga_worker.engine.state import SagaState

DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
DEFAULT_DELAY = timedelta(milliseconds=100)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self.now = start

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now

    def set(self, at: datetime) -> None:
        if at < self.now:
            raise ValueError("a clock does not go back")
        self.now = at


@dataclass(frozen=True, slots=True)
class Succeed:
    result: Mapping[str, Any] = field(default_factory=dict)
    delay: timedelta = DEFAULT_DELAY
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class Fail:
    error: str = "failed"
    retryable: bool | None = False
    error_code: str | None = None
    delay: timedelta = DEFAULT_DELAY
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class NoReply:
    """Never answer: the command times out. `applied` says whether it took effect."""

    applied: bool = False


Action = Succeed | Fail | NoReply


@dataclass(frozen=True, slots=True)
class StepScript:
    """How one step's participant answers: `attempts[n-1]` for attempt n, then `then`;
    likewise `compensations` and `compensations_then` for compensation attempts."""

    attempts: tuple[Action, ...] = ()
    then: Action = Succeed()
    compensations: tuple[Action, ...] = ()
    compensations_then: Action = Succeed()

    def for_attempt(self, attempt: int) -> Action:
        return self.attempts[attempt - 1] if attempt <= len(self.attempts) else self.then

    def for_compensation(self, attempt: int) -> Action:
        if attempt <= len(self.compensations):
            return self.compensations[attempt - 1]
        return self.compensations_then


@dataclass(frozen=True, slots=True)
class Applied:
    """One decide() call the harness made: its inputs and its decision."""

    saga_id: str
    at: datetime
    event: Event
    decision: Decision


class SagaHarness:
    """Runs sagas of one definition end to end against scripted participants."""

    def __init__(
        self,
        definition: SagaDefinition,
        scripts: Mapping[str, StepScript] | None = None,
        *,
        clock: FakeClock | None = None,
        minimal_replies: bool = False,
    ) -> None:
        self.definition = definition
        self.scripts = dict(scripts or {})
        self.clock = clock or FakeClock()
        self.minimal_replies = minimal_replies
        self.store: dict[str, SagaState] = {}
        self.published: list[Outgoing] = []
        self.log: list[Applied] = []
        self.effects: list[tuple[str, str, str]] = []  # (saga_id, step, command_id) applied
        self.timers: dict[tuple[str, str], datetime] = {}
        self._inbox: list[tuple[datetime, int, str, Event]] = []
        self._seq = 0
        self._routes: dict[tuple[str, str], bool] = {}
        for step in definition.steps.values():
            if step.wait is not None or step.child is not None:
                continue  # nobody answers a wait; a child's start request says which it is
            self._routes[(step.command_topic, step.name)] = False
            if step.compensation_topic is not None:
                self._routes[(step.compensation_topic, step.name)] = True

    # -- driving ---------------------------------------------------------------------

    def start(self, saga_id: str, data: Mapping[str, Any]) -> Decision:
        return self.apply(saga_id, StartSaga(saga_id, data, f"start:{saga_id}"))

    def signal(
        self,
        saga_id: str,
        step: str,
        data: Mapping[str, Any],
        delay: timedelta = timedelta(0),
        message_id: str | None = None,
    ) -> None:
        """Queue an event for a wait step (as its topic or `saga-worker signal` would)."""
        self.deliver(saga_id, EventArrived(step, data, message_id), delay)

    def deliver(self, saga_id: str, event: Event, delay: timedelta = timedelta(0)) -> None:
        """Queue an event for the saga, to arrive after `delay`."""
        self._seq += 1
        heapq.heappush(self._inbox, (self.clock.now + delay, self._seq, saga_id, event))

    def apply(self, saga_id: str, event: Event) -> Decision:
        """Run one event through decide now, and carry out the decision."""
        decision = decide(self.store.get(saga_id), event, self.clock.now, self.definition)
        self.log.append(Applied(saga_id, self.clock.now, event, decision))
        if decision.ignored is not None:
            return decision
        assert decision.state is not None
        self.store[saga_id] = decision.state
        for change in decision.timers:
            if isinstance(change, TimerSet):
                self.timers[(saga_id, change.timer_id)] = change.due
            elif isinstance(change, TimerCancel):
                self.timers.pop((saga_id, change.timer_id), None)
        for message in decision.outgoing:
            self.published.append(message)
            self._participate(saga_id, message)
        return decision

    def step_once(self) -> bool:
        """Deliver the next queued event or fire the next timer; False when idle."""
        next_timer = min(self.timers.items(), key=lambda kv: (kv[1], kv[0]), default=None)
        if self._inbox and (next_timer is None or self._inbox[0][0] <= next_timer[1]):
            at, _, saga_id, event = heapq.heappop(self._inbox)
            self.clock.set(max(at, self.clock.now))
            self.apply(saga_id, event)
            return True
        if next_timer is not None:
            (saga_id, tid), due = next_timer
            del self.timers[(saga_id, tid)]
            self.clock.set(max(due, self.clock.now))
            self.apply(saga_id, TimerFired(tid))
            return True
        return False

    def run(self, max_events: int = 100_000) -> int:
        """Run until nothing is queued and no timer is set; returns events applied."""
        for count in range(max_events):
            if not self.step_once():
                return count
        raise RuntimeError(f"no quiescence after {max_events} events")

    def run_until(self, at: datetime) -> None:
        """Run everything due up to `at`, then set the clock to `at`."""
        while True:
            pending = [e[0] for e in self._inbox[:1]] + list(self.timers.values())
            if not pending or min(pending) > at:
                break
            self.step_once()
        self.clock.set(max(at, self.clock.now))

    def run_saga(self, saga_id: str, data: Mapping[str, Any]) -> SagaState:
        self.start(saga_id, data)
        self.run()
        return self.store[saga_id]

    # -- looking at what happened -----------------------------------------------------

    def state(self, saga_id: str) -> SagaState:
        return self.store[saga_id]

    def messages(self, saga_id: str | None = None, topic: str | None = None) -> list[Outgoing]:
        return [
            m
            for m in self.published
            if (saga_id is None or m.key == saga_id) and (topic is None or m.topic == topic)
        ]

    # -- the scripted participants ------------------------------------------------------

    def _participate(self, saga_id: str, message: Outgoing) -> None:
        step = message.payload.get("step_name")
        if not isinstance(step, str):
            return
        asked = message.payload
        if message.topic == START_REQUESTED_TOPIC:  # a child saga: the script is its outcome
            asked = message.payload["parent"]
            is_compensation: bool | None = bool(asked["compensation"])
        else:
            is_compensation = self._routes.get((message.topic, step))
        if is_compensation is None:
            return  # an outcome or a failure notice: nobody answers
        script = self.scripts.get(step, StepScript())
        attempt = int(asked["attempt"])
        cid = str(asked["command_id"])
        action = (
            script.for_compensation(attempt) if is_compensation else script.for_attempt(attempt)
        )
        if isinstance(action, NoReply):
            if action.applied and not is_compensation:
                self.effects.append((saga_id, step, cid))
            return
        reply_cid = None if self.minimal_replies else cid
        reply_attempt = None if self.minimal_replies else attempt
        reply: Event
        if isinstance(action, Succeed):
            if is_compensation:
                reply = CompensationSucceeded(step, reply_cid, reply_attempt, f"re:{cid}")
            else:
                self.effects.append((saga_id, step, cid))
                reply = StepSucceeded(step, action.result, reply_cid, reply_attempt, f"re:{cid}")
        else:
            reply = StepFailed(
                step,
                action.error,
                action.error_code,
                action.retryable,
                reply_cid,
                reply_attempt,
                f"re:{cid}",
            )
        for _ in range(1 + action.duplicates):
            self.deliver(saga_id, reply, action.delay)
