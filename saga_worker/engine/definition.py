"""The saga definition DSL: steps, parallel groups, definitions, and a registry.

A definition is an ordered list of stages; a stage is one `Step` or a
`Parallel` group of steps run at the same time. Step kinds follow
Garcia-Molina and Salem's sagas:

- COMPENSATABLE steps come first; each names the compensation that undoes it.
- at most one PIVOT: the go/no-go step. Once it succeeded the saga only moves
  forward. A pivot may name a compensation topic: it is used only when the
  pivot's own outcome is unknown (it timed out, or the saga was aborted while it
  was in flight) and the saga fails, never after the pivot succeeded.
- RETRIABLE steps come after the pivot: they are retried until they succeed and
  never compensated. Their retry policy defaults to unlimited attempts; a
  finite `max_attempts`, or a non-retryable failure, hands the saga to an
  operator instead of compensating it.

Everything is validated at construction and raises `DefinitionError` with a
message naming the offending step. A `DefinitionRegistry` keeps every version
of every definition, so a running saga stays on the version it started with.

Names are bounded so that every id derived from them fits the wire. The ids
decide.py derives embed a step or notice name and travel in `Identifier`
fields (WIRE_ID_CHARS, saga_worker.wire.fields): commands and compensations
`<saga_id>:<step>:a<attempt>` / `:c<attempt>` (command_id and message_id),
failure notices `<saga_id>:<notice>:n1`, and the name itself as `step_name`
and as a key of `results`. The longest is a command id at the largest attempt
the wire carries (`Attempt`, WIRE_MAX_ATTEMPT: five digits), len(saga_id) +
len(name) + 8; `<saga_id>:completed` / `:failed` embed no name, and timer ids
(`cr:<step>:<n>`) stay in Redis and are shorter. The bound is enforced for
the saga ids the runtime creates, `App.saga_id(key)`: uuid5 strings of
SAGA_ID_CHARS (36) characters, so a name has at most 128 - 36 - 8 = 84
(MAX_NAME_CHARS). It cannot be enforced for any `SagaId` (up to 128
characters): such an id fills an Identifier by itself, so no name would fit.
A reply may carry any SagaId, but one naming no saga derives no id; a caller
that starts sagas with ids of its own (the harness, a custom runtime) keeps
them to 36 characters. The saga's own name enters no derived id (its saga ids are 36
characters whatever it is), but gets the same bound: one rule for every name.
Topics are bounded by Kafka's 249 characters less room for the deployment
prefix (`SAGA_TOPIC_PREFIX`), TOPIC_PREFIX_ROOM.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from saga_worker.engine.retry import RetryPolicy
from saga_worker.errors import DefinitionError, UnknownDefinitionError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]+$")  # Kafka's legal topic characters

# The wire's limits (saga_worker.wire.fields: Identifier, Attempt), repeated here
# because the engine imports no wire code; tests/unit/test_definition.py checks
# they agree and that the bound is tight for decide.py's real id formats.
WIRE_ID_CHARS = 128
WIRE_MAX_ATTEMPT = 10_000
SAGA_ID_CHARS = 36  # len(str(uuid.uuid5(...))): every saga id App derives
# the command id `<saga_id>:<name>:a<attempt>` is the longest id around a name
_COMMAND_ID_CHARS_BESIDES = SAGA_ID_CHARS + len("::a") + len(str(WIRE_MAX_ATTEMPT))
MAX_NAME_CHARS = WIRE_ID_CHARS - _COMMAND_ID_CHARS_BESIDES  # 84

KAFKA_TOPIC_CHARS = 249
TOPIC_PREFIX_ROOM = 49  # kept for the deployment prefix prepended to every topic
MAX_TOPIC_CHARS = KAFKA_TOPIC_CHARS - TOPIC_PREFIX_ROOM  # 200

DEFAULT_STEP_TIMEOUT = timedelta(seconds=10)
DEFAULT_RETRY = RetryPolicy(max_attempts=3)
RETRY_FOREVER = RetryPolicy(
    max_attempts=None,
    initial_backoff=timedelta(seconds=1),
    max_backoff=timedelta(seconds=60),
)
DEFAULT_COMPENSATION_RETRY = RetryPolicy(
    max_attempts=10,
    initial_backoff=timedelta(seconds=1),
    max_backoff=timedelta(seconds=60),
)


# The library topic a child step's start request goes to (saga_worker.wire.topics
# repeats it; tests/unit/test_waits_and_children.py checks they agree).
START_REQUESTED_TOPIC = "SagaStartRequested"
DEFAULT_CHILD_TIMEOUT = timedelta(hours=1)
# A wait is opened once; a child saga has its own retries: neither is re-sent.
ONCE = RetryPolicy(max_attempts=1)


class StepKind(StrEnum):
    COMPENSATABLE = "compensatable"
    PIVOT = "pivot"
    RETRIABLE = "retriable"


def _check_identifier(what: str, name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
        raise DefinitionError(f"{what} must be a Python-style identifier, got {name!r}")
    if len(name) > MAX_NAME_CHARS:
        raise DefinitionError(
            f"{what} {name!r} is {len(name)} characters, more than {MAX_NAME_CHARS}: "
            f"the ids derived from it would not fit the wire's {WIRE_ID_CHARS}-character ids"
        )


def _check_topic(what: str, topic: object) -> None:
    if not isinstance(topic, str) or not _TOPIC.match(topic) or topic in (".", ".."):
        raise DefinitionError(f"{what} must be a valid Kafka topic name, got {topic!r}")
    if len(topic) > MAX_TOPIC_CHARS:
        raise DefinitionError(
            f"{what} {topic!r} is {len(topic)} characters, more than {MAX_TOPIC_CHARS}: "
            f"Kafka allows {KAFKA_TOPIC_CHARS}, less {TOPIC_PREFIX_ROOM} kept for the "
            "deployment prefix"
        )


@dataclass(frozen=True, slots=True)
class WaitSpec:
    """What a wait step waits for: an event whose `correlate` field equals the saga
    data's `data_field`, on the step's topic. See `Wait`."""

    correlate: str
    data_field: str
    default: Mapping[str, Any] | None = None  # the result when the deadline passes
    rejects: Callable[[Mapping[str, Any]], bool] | None = None  # on the event: fail
    when: Callable[[Mapping[str, Any]], bool] | None = None  # on the saga data: wait at all
    many: bool = False  # one event may complete the waits of several sagas
    ignore_unmatched: bool = False  # an event naming no saga is normal, not a dead letter


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """The saga type a child step starts, and the one that undoes it. See `ChildSaga`."""

    saga: str
    compensation_saga: str | None = None


def Wait(
    name: str,
    *,
    topic: str,
    correlate: str,
    deadline: timedelta,
    data_field: str | None = None,
    default: Mapping[str, Any] | None = None,
    rejects: Callable[[Mapping[str, Any]], bool] | None = None,
    when: Callable[[Mapping[str, Any]], bool] | None = None,
    many: bool = False,
    ignore_unmatched: bool = False,
    kind: StepKind = StepKind.COMPENSATABLE,
) -> Step:
    """A step that sends nothing and waits for an event from the outside world.

    The event arrives on `topic`; its field `correlate` names the saga by the value
    of the saga data's `data_field` (default: the same name), or an operator sends it
    with `saga-worker signal`. The event's body becomes the step's result, as a
    participant's reply would. One that arrives before the saga reaches the wait is
    kept and taken when it does; later copies change nothing. `rejects(event)` true
    fails the step (the saga compensates); the `deadline` passing fails it too,
    unless `default` is given, which then becomes the result. `when(data)` false
    skips the wait. With `many`, one event may complete the waits of several sagas;
    without it such an event is dead-lettered. An event naming no saga is
    dead-lettered, or dropped with `ignore_unmatched`.
    """
    spec = WaitSpec(correlate, data_field or correlate, default, rejects, when, many,
                    ignore_unmatched)  # fmt: skip
    return Step(name, topic, timeout=deadline, retry=ONCE, kind=kind, wait=spec)


def ChildSaga(
    name: str,
    saga: str,
    *,
    compensation_saga: str | None = None,
    timeout: timedelta = DEFAULT_CHILD_TIMEOUT,
    kind: StepKind = StepKind.COMPENSATABLE,
) -> Step:
    """A step that starts a saga of type `saga` (of the same app) and takes its outcome
    as its reply: completed, its results are the step's result; failed (after it
    compensated itself), the step fails. Compensating the step runs a saga of type
    `compensation_saga`, given the child's results as `original_result`. A child is
    started once; its own steps have their retries."""
    comp = START_REQUESTED_TOPIC if compensation_saga is not None else None
    spec = ChildSpec(saga, compensation_saga)
    return Step(name, START_REQUESTED_TOPIC, comp, timeout, ONCE, kind, child=spec)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a saga: a command, its optional compensation, timeout and retries.

    `retry=None` takes the kind's default: `DEFAULT_RETRY` (3 attempts) for
    compensatable steps and the pivot, `RETRY_FOREVER` for retriable steps.
    """

    name: str
    command_topic: str
    compensation_topic: str | None = None
    timeout: timedelta = DEFAULT_STEP_TIMEOUT
    retry: RetryPolicy | None = None
    kind: StepKind = StepKind.COMPENSATABLE
    wait: WaitSpec | None = None  # set by `Wait(...)`: the step waits for an event
    child: ChildSpec | None = None  # set by `ChildSaga(...)`: the step runs a saga
    policy: RetryPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_identifier("step name", self.name)
        if self.wait is not None and self.child is not None:
            raise DefinitionError(f"step {self.name!r} cannot both wait and run a child saga")
        _check_topic(f"step {self.name!r} command_topic", self.command_topic)
        if not isinstance(self.kind, StepKind):
            raise DefinitionError(f"step {self.name!r}: kind must be a StepKind")
        if self.compensation_topic is not None:
            _check_topic(f"step {self.name!r} compensation_topic", self.compensation_topic)
        if not isinstance(self.timeout, timedelta) or self.timeout <= timedelta(0):
            raise DefinitionError(f"step {self.name!r}: timeout must be a positive timedelta")
        if (
            self.kind is StepKind.COMPENSATABLE
            and self.compensation_topic is None
            and self.wait is None  # a wait does nothing that needs undoing
            and self.child is None  # checked below, in its own words
        ):
            raise DefinitionError(
                f"compensatable step {self.name!r} needs a compensation_topic "
                "(or make it the pivot or a retriable step)"
            )
        if self.kind is StepKind.RETRIABLE and self.compensation_topic is not None:
            raise DefinitionError(
                f"retriable step {self.name!r} is never compensated: drop its compensation_topic"
            )
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise DefinitionError(f"step {self.name!r}: retry must be a RetryPolicy")
        if self.wait is not None:
            _check_wait(self.name, self.wait)
        if self.child is not None:
            _check_child(self.name, self.kind, self.child)
        default = RETRY_FOREVER if self.kind is StepKind.RETRIABLE else DEFAULT_RETRY
        object.__setattr__(self, "policy", self.retry or default)


def _check_wait(step: str, spec: WaitSpec) -> None:
    _check_identifier(f"wait {step!r} correlate", spec.correlate)
    _check_identifier(f"wait {step!r} data_field", spec.data_field)
    if spec.default is not None and not isinstance(spec.default, Mapping):
        raise DefinitionError(f"wait {step!r}: default must be a mapping (the step's result)")
    for what in ("rejects", "when"):
        if getattr(spec, what) is not None and not callable(getattr(spec, what)):
            raise DefinitionError(f"wait {step!r}: {what} must be a function")


def _check_child(step: str, kind: StepKind, spec: ChildSpec) -> None:
    _check_identifier(f"child step {step!r} saga", spec.saga)
    if spec.compensation_saga is not None:
        _check_identifier(f"child step {step!r} compensation_saga", spec.compensation_saga)
    elif kind is StepKind.COMPENSATABLE:
        raise DefinitionError(
            f"compensatable child step {step!r} needs a compensation_saga "
            "(or make it the pivot or a retriable step)"
        )


@dataclass(frozen=True, slots=True, init=False)
class Parallel:
    """A group of steps started together; the group is done when all succeeded."""

    steps: tuple[Step, ...]

    def __init__(self, *steps: Step) -> None:
        if not steps:
            raise DefinitionError("a Parallel group needs at least one step")
        for step in steps:
            if not isinstance(step, Step):
                raise DefinitionError(f"a Parallel group holds Steps only, got {step!r}")
            if step.kind is StepKind.PIVOT:
                raise DefinitionError(f"pivot step {step.name!r} cannot be inside a Parallel group")
        object.__setattr__(self, "steps", tuple(steps))

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)


Stage = Step | Parallel


@dataclass(frozen=True, slots=True)
class SagaDefinition:
    """A named, versioned saga: its stages, outcome topics and compensation policy.

    `failure_notices` maps a notice name to a topic: when the saga ends FAILED,
    each gets one fire-and-forget command (same shape as step commands, plus
    `error`) next to the failed outcome. Replies to it are not awaited.
    """

    name: str
    version: int
    stages: tuple[Stage, ...]
    completed_topic: str
    failed_topic: str
    compensation_retry: RetryPolicy = DEFAULT_COMPENSATION_RETRY
    compensation_timeout: timedelta = DEFAULT_STEP_TIMEOUT
    failure_notices: tuple[tuple[str, str], ...] = ()
    # derived, for the engine's lookups
    groups: tuple[tuple[Step, ...], ...] = field(init=False, repr=False, compare=False)
    steps: dict[str, Step] = field(init=False, repr=False, compare=False)
    stage_of: dict[str, int] = field(init=False, repr=False, compare=False)
    pivot_stage: int | None = field(init=False, repr=False, compare=False)
    waits: tuple[Step, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_identifier("saga name", self.name)
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise DefinitionError(f"saga {self.name!r}: version must be an int >= 1")
        _check_topic(f"saga {self.name!r} completed_topic", self.completed_topic)
        _check_topic(f"saga {self.name!r} failed_topic", self.failed_topic)
        if not isinstance(self.compensation_retry, RetryPolicy):
            raise DefinitionError(f"saga {self.name!r}: compensation_retry must be a RetryPolicy")
        if self.compensation_timeout <= timedelta(0):
            raise DefinitionError(f"saga {self.name!r}: compensation_timeout must be positive")
        stages = tuple(self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages:
            raise DefinitionError(f"saga {self.name!r} needs at least one step")
        groups = tuple(_group(self.name, stage) for stage in stages)
        steps: dict[str, Step] = {}
        stage_of: dict[str, int] = {}
        pivot_stage: int | None = None
        for index, group in enumerate(groups):
            for step in group:
                if step.name in steps:
                    raise DefinitionError(f"saga {self.name!r}: duplicate step name {step.name!r}")
                steps[step.name] = step
                stage_of[step.name] = index
                if step.kind is StepKind.PIVOT:
                    if pivot_stage is not None:
                        raise DefinitionError(
                            f"saga {self.name!r}: at most one pivot step, found "
                            f"{groups[pivot_stage][0].name!r} and {step.name!r}"
                        )
                    pivot_stage = index
                elif step.kind is StepKind.COMPENSATABLE and pivot_stage is not None:
                    raise DefinitionError(
                        f"saga {self.name!r}: compensatable step {step.name!r} comes after "
                        "the pivot; only retriable steps may follow it"
                    )
                elif step.kind is StepKind.RETRIABLE and pivot_stage is None:
                    raise DefinitionError(
                        f"saga {self.name!r}: retriable step {step.name!r} must come after "
                        "a pivot step"
                    )
        notices = tuple(tuple(n) for n in self.failure_notices)
        seen: set[str] = set()
        for notice in notices:
            if len(notice) != 2:
                raise DefinitionError(f"saga {self.name!r}: a failure notice is (name, topic)")
            notice_name, topic = notice
            _check_identifier("failure notice name", notice_name)
            _check_topic(f"failure notice {notice_name!r} topic", topic)
            if notice_name in steps or notice_name in seen:
                raise DefinitionError(
                    f"saga {self.name!r}: failure notice name {notice_name!r} is already used"
                )
            seen.add(notice_name)
        object.__setattr__(self, "failure_notices", notices)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "stage_of", stage_of)
        object.__setattr__(self, "pivot_stage", pivot_stage)
        waits = tuple(step for step in steps.values() if step.wait is not None)
        object.__setattr__(self, "waits", waits)

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    @property
    def child_types(self) -> tuple[str, ...]:
        """Every saga type this one starts as a child or a child's compensation."""
        names = [n for s in self.steps.values() if s.child for n in (s.child.saga,
                 s.child.compensation_saga) if n]  # fmt: skip
        return tuple(dict.fromkeys(names))

    def __hash__(self) -> int:
        return hash(self.key)


def _group(saga: str, stage: object) -> tuple[Step, ...]:
    if isinstance(stage, Step):
        return (stage,)
    if isinstance(stage, Parallel):
        return stage.steps
    raise DefinitionError(f"saga {saga!r}: a stage is a Step or a Parallel group, got {stage!r}")


class DefinitionRegistry:
    """Every registered version of every saga definition, keyed by (name, version)."""

    def __init__(self, definitions: Iterable[SagaDefinition] = ()) -> None:
        self._by_key: dict[tuple[str, int], SagaDefinition] = {}
        for definition in definitions:
            self.register(definition)

    def register(self, definition: SagaDefinition) -> None:
        existing = self._by_key.get(definition.key)
        if existing is not None and existing != definition:
            raise DefinitionError(
                f"saga {definition.name!r} version {definition.version} is already registered "
                "with different content; bump the version"
            )
        self._by_key[definition.key] = definition

    def get(self, name: str, version: int) -> SagaDefinition:
        try:
            return self._by_key[(name, version)]
        except KeyError:
            raise UnknownDefinitionError(name, version, self.versions(name)) from None

    def latest(self, name: str) -> SagaDefinition:
        versions = self.versions(name)
        if not versions:
            raise UnknownDefinitionError(name, None)
        return self._by_key[(name, versions[-1])]

    def versions(self, name: str) -> tuple[int, ...]:
        return tuple(sorted(v for (n, v) in self._by_key if n == name))

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __iter__(self) -> Iterator[SagaDefinition]:
        return iter(self._by_key.values())
