"""Exceptions raised by saga-worker.

The tree, and what each error means:

    SagaWorkerError            base of everything saga-worker raises on purpose
    +-- DefinitionError        a saga definition (or a retry policy in it) is invalid
    |   +-- UnknownDefinitionError
    |                          no definition is registered under a (name, version)
    +-- DefinitionMismatchError
    |                          decide() got a definition other than the one the saga
    |                          was started with (a wiring bug in the caller)
    +-- StateError             a stored saga state cannot be decoded, or the engine
    |   |                      was about to make a transition the status table forbids
    |   +-- InvalidTransitionError
    +-- StoreUnavailableError  Redis did not answer or refused a command (retriable)
    +-- ConfigurationError     a setting is missing or invalid (names the setting)
    |   +-- AppLoadError       `--app module:object` names nothing importable, or
    |                          not an App
    +-- UnknownSagaTypeError   a stored saga's type or version is not in the loaded app
    +-- ParticipantError       raised by the participant runtime
        +-- InvalidKnobError   a knob's environment variable holds a bad value
        +-- UnknownParticipantError
        |                      the app declares no participant under the name given
        +-- EffectStoreUnavailableError
                               Redis did not answer; the batch is tried again
                               (retriable), never committed half-done

Retriability is data: every class says with `retriable` whether trying the same
operation again may succeed. Only the two *UnavailableError classes are retriable: the
others are bugs or bad configuration, and retrying would fail the same way. Adapters for
Kafka and Redis translate their libraries' exceptions into subclasses of
`SagaWorkerError` at the boundary (raising `from exc`) and set `retriable`.
The pure engine never catches I/O errors: it does no I/O.
"""

from __future__ import annotations

from typing import ClassVar


class SagaWorkerError(Exception):
    """Base class of every error saga-worker raises on purpose."""

    retriable: ClassVar[bool] = False


class DefinitionError(SagaWorkerError, ValueError):
    """A saga definition, step or retry policy is invalid."""


class UnknownDefinitionError(DefinitionError, LookupError):
    """No saga definition is registered under the requested name and version."""

    def __init__(self, name: str, version: int | None, known: tuple[int, ...] = ()) -> None:
        self.name = name
        self.version = version
        self.known = known
        wanted = f"{name!r}" if version is None else f"{name!r} version {version}"
        have = ", ".join(str(v) for v in known) if known else "none"
        super().__init__(f"no saga definition {wanted} is registered (known versions: {have})")


class DefinitionMismatchError(SagaWorkerError):
    """decide() was called with a definition other than the saga's own."""


class StateError(SagaWorkerError):
    """A saga state is malformed or cannot be decoded."""


class InvalidTransitionError(StateError):
    """The engine attempted a status transition the transition table forbids."""


class StoreUnavailableError(SagaWorkerError):
    """Redis could not be reached or refused a command; the batch is retried."""

    retriable: ClassVar[bool] = True


class ConfigurationError(SagaWorkerError, ValueError):
    """A setting is missing or invalid; the message names it."""


class AppLoadError(ConfigurationError):
    """The app given with `--app` (or SAGA_APP) cannot be loaded; the message says why."""


class UnknownSagaTypeError(SagaWorkerError, LookupError):
    """A saga's type or version is not one the loaded app runs."""


class ParticipantError(SagaWorkerError):
    """Raised by the participant runtime. Business failures are data, not exceptions."""


class InvalidKnobError(ParticipantError, ValueError):
    """A fault-injection knob's environment variable holds a bad value (named)."""


class UnknownParticipantError(ParticipantError, LookupError):
    """The app declares no participant under the name given."""


class EffectStoreUnavailableError(ParticipantError):
    """Redis did not answer while settling a participant's batch; it is retried."""

    retriable: ClassVar[bool] = True


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same work again may succeed: our `retriable` flag, or
    aiokafka's (its errors carry the same attribute), or a dropped connection.

    The runtime asks `saga_worker.runtime.transient.worth_retrying`, which adds the
    Kafka and Redis errors their libraries leave unmarked (this module imports neither)."""
    return bool(getattr(exc, "retriable", False)) or isinstance(exc, ConnectionError | TimeoutError)
