"""The app: which saga types an orchestrator runs, how each one starts, and the participants.

    app = App()
    app.saga(TRIP_BOOKING, start_topic="TripRequested", start_model=TripRequested,
             business_key="trip_id")
    app.participant(HOTELS)            # a Participant, a HandlerParticipant,
    app.participant(make_payments)     # or a function that builds one when it runs

One orchestrator process runs every saga type of its app in one consumer group,
each started from its own topic, or only as a child of another (declared without
a start topic). A start message's business key (a field of it, such as
`order_id`) gives its saga id, so a repeated start finds the saga it already
started. Every saga type can also be started by name on SagaStartRequested,
which is how child steps start theirs. The app also knows every topic its workers read or write, so
they create exactly those, and the CLI works for every saga type it declares.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from saga_worker.engine.definition import DefinitionRegistry, SagaDefinition, Step
from saga_worker.engine.state import SagaState
from saga_worker.errors import DefinitionError, UnknownParticipantError, UnknownSagaTypeError
from saga_worker.participant.definition import Participant
from saga_worker.participant.handlers import HandlerParticipant
from saga_worker.wire import topics as t
from saga_worker.wire.messages import WireMessage

# Fixed, so every instance derives the same saga id from the same business key.
SAGA_ID_NAMESPACE = uuid.UUID("6f1c3f52-1d0e-4b8e-9a57-4b1f7f0c2a10")

AnyParticipant = Participant | HandlerParticipant
ParticipantFactory = Callable[[], AnyParticipant]


@dataclass(frozen=True)
class SagaType:
    """One saga type of an app: its definition (and older versions still running),
    the topic and model of the message that starts it, and its business key (all
    three None for a type started only as a child)."""

    definition: SagaDefinition
    start_topic: str | None
    start_model: type[WireMessage] | None
    business_key: str | None  # the start message's field the saga id is derived from
    older_versions: tuple[SagaDefinition, ...] = ()
    _namespace: uuid.UUID = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        starts = (self.start_topic, self.start_model, self.business_key)
        if any(x is None for x in starts) and any(x is not None for x in starts):
            raise DefinitionError(
                f"saga {self.name!r}: give start_topic, start_model and business_key "
                "together, or none of them for a saga started only as a child"
            )
        if self.start_model is not None and self.business_key not in self.start_model.model_fields:
            raise DefinitionError(
                f"saga {self.name!r}: business_key {self.business_key!r} is not a field of "
                f"{self.start_model.__name__}"
            )
        for old in self.older_versions:
            if old.name != self.name or old.version >= self.definition.version:
                raise DefinitionError(
                    f"saga {self.name!r}: older_versions must be earlier versions of it"
                )
        object.__setattr__(self, "_namespace", uuid.uuid5(SAGA_ID_NAMESPACE, self.name))

    @property
    def name(self) -> str:
        return self.definition.name

    def saga_id(self, key: str) -> str:
        """One business key, one saga: the id is derived, never random."""
        return str(uuid.uuid5(self._namespace, key))

    def key_of(self, message: WireMessage) -> str:
        assert self.business_key is not None  # only start messages have one
        return str(getattr(message, self.business_key))

    def topics(self) -> tuple[str, ...]:
        """Every topic a saga of this type is started from, sends to or waits on
        (logical names)."""
        names: list[str] = [self.start_topic] if self.start_topic else []
        for definition in (*self.older_versions, self.definition):
            for step in definition.steps.values():
                names += [step.command_topic, *filter(None, [step.compensation_topic])]
            names += [topic for _, topic in definition.failure_notices]
            names += [definition.completed_topic, definition.failed_topic]
        return tuple(dict.fromkeys(names))


class App:
    """Saga types and participants; see the module docstring."""

    def __init__(self, name: str = "saga-worker") -> None:
        self.name = name
        self._sagas: dict[str, SagaType] = {}
        self._participants: dict[str, AnyParticipant | ParticipantFactory] = {}
        self._registry: DefinitionRegistry | None = None  # built on first use

    # -- declaring -----------------------------------------------------------------------

    def saga(
        self,
        definition: SagaDefinition,
        *,
        start_topic: str | None = None,
        start_model: type[WireMessage] | None = None,
        business_key: str | None = None,
        older_versions: Iterable[SagaDefinition] = (),
    ) -> SagaType:
        """Run `definition` for every message on `start_topic` (and as a child, if
        another saga type starts it); returns the saga type."""
        saga = SagaType(definition, start_topic, start_model, business_key, tuple(older_versions))
        if saga.name in self._sagas:
            raise DefinitionError(f"app {self.name!r} already runs a saga {saga.name!r}")
        for other in self._sagas.values():
            if start_topic is not None and other.start_topic == start_topic:
                raise DefinitionError(
                    f"sagas {other.name!r} and {saga.name!r} both start from {start_topic!r}"
                )
        self._sagas[saga.name] = saga
        self._registry = None
        return saga

    def participant(
        self, participant: AnyParticipant | ParticipantFactory, *, name: str | None = None
    ) -> None:
        """Declare a participant, or a function that builds it when its worker starts
        (for settings read from the environment); a factory needs `name`."""
        key = name or getattr(participant, "name", None)
        if not isinstance(key, str):
            raise DefinitionError("a participant factory needs name=")
        if key in self._participants:
            raise DefinitionError(f"app {self.name!r} already has a participant {key!r}")
        self._participants[key] = participant

    def include(self, other: App) -> None:
        """Run `other`'s saga types and participants here too (one orchestrator, one group)."""
        for saga in other.sagas:
            self.saga(
                saga.definition,
                start_topic=saga.start_topic,
                start_model=saga.start_model,
                business_key=saga.business_key,
                older_versions=saga.older_versions,
            )
        for name, participant in other._participants.items():
            self.participant(participant, name=name)

    # -- reading ---------------------------------------------------------------------------

    @property
    def sagas(self) -> tuple[SagaType, ...]:
        return tuple(self._sagas.values())

    def saga_type(self, name: str) -> SagaType:
        try:
            return self._sagas[name]
        except KeyError:
            raise UnknownSagaTypeError(
                f"app {self.name!r} runs no saga {name!r} (it runs: {self._saga_names()})"
            ) from None

    def saga_type_of(self, state: SagaState) -> SagaType:
        """The type of a stored saga, refusing one whose type or version the app lacks."""
        saga = self.saga_type(state.definition_name)
        if (state.definition_name, state.definition_version) not in self.registry:
            known = ", ".join(str(v) for v in self.registry.versions(saga.name))
            raise UnknownSagaTypeError(
                f"saga {state.saga_id} runs {saga.name} v{state.definition_version}, which app "
                f"{self.name!r} does not have (versions: {known})"
            )
        return saga

    def starting_from(self, logical_topic: str) -> SagaType | None:
        return next((s for s in self._sagas.values() if s.start_topic == logical_topic), None)

    def waits_on(self, logical_topic: str) -> tuple[tuple[SagaDefinition, Step], ...]:
        """The wait steps listening on a topic, of every definition version still run."""
        return tuple(
            (d, step)
            for d in self.registry
            for step in d.waits
            if step.command_topic == logical_topic
        )

    def check_children(self) -> None:
        """Refuses an app whose child steps start saga types it does not run."""
        for d in self.registry:
            missing = [name for name in d.child_types if name not in self._sagas]
            if missing:
                raise DefinitionError(
                    f"saga {d.name!r} starts child sagas {', '.join(missing)}, which app "
                    f"{self.name!r} does not run (it runs: {self._saga_names()})"
                )

    @property
    def registry(self) -> DefinitionRegistry:
        if self._registry is None:
            self._registry = DefinitionRegistry(
                d for s in self._sagas.values() for d in (*s.older_versions, s.definition)
            )
        return self._registry

    def candidate_ids(self, saga_or_key: str) -> list[str]:
        """A saga id as given, then the id each saga type derives from it as a business key."""
        return list(dict.fromkeys([saga_or_key, *(s.saga_id(saga_or_key) for s in self.sagas)]))

    def business_key(self, state: SagaState) -> str | None:
        saga = self._sagas.get(state.definition_name)
        field_name = saga.business_key if saga is not None else None
        value = state.data.get(field_name) if field_name is not None else None
        return None if value is None else str(value)

    @property
    def participant_names(self) -> tuple[str, ...]:
        return tuple(self._participants)

    def build_participant(self, name: str) -> AnyParticipant:
        try:
            declared = self._participants[name]
        except KeyError:
            have = ", ".join(self._participants) or "none"
            raise UnknownParticipantError(
                f"app {self.name!r} has no participant {name!r} (it has: {have})"
            ) from None
        if isinstance(declared, Participant | HandlerParticipant):
            return declared
        return declared()

    # -- topics ------------------------------------------------------------------------------

    def orchestrator_topics(self) -> tuple[str, ...]:
        """Every topic the orchestrator reads or writes, logical names."""
        names = [name for s in self.sagas for name in s.topics()]
        library = [*t.REPLY_TOPICS, t.START_REQUESTED, t.DEAD_LETTER]
        return tuple(dict.fromkeys([*names, *library]))

    def orchestrator_inbound(self) -> tuple[str, ...]:
        """What the orchestrator consumes: every start topic, every topic a wait step
        listens on, start requests and the reply topics."""
        starts = [s.start_topic for s in self.sagas if s.start_topic is not None]
        waits = [step.command_topic for d in self.registry for step in d.waits]
        return tuple(dict.fromkeys([*starts, *waits, t.START_REQUESTED, *t.REPLY_TOPICS]))

    def _saga_names(self) -> str:
        return ", ".join(self._sagas) or "none"
