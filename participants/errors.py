"""Exceptions the participant runtime raises on purpose.

    ParticipantError              base of everything below
    +-- InvalidKnobError          a knob's environment variable holds a bad value
    |                             (names the variable); not retriable
    +-- UnknownParticipantError   no participant is registered under the name given
    +-- EffectStoreUnavailableError
                                  Redis did not answer; the batch is tried again
                                  (retriable), never committed half-done

Business failures are not exceptions: they are data (`protocol.Refuse`), recorded
and answered like any other outcome.
"""

from __future__ import annotations

from typing import ClassVar


class ParticipantError(Exception):
    retriable: ClassVar[bool] = False


class InvalidKnobError(ParticipantError, ValueError):
    pass


class UnknownParticipantError(ParticipantError, LookupError):
    pass


class EffectStoreUnavailableError(ParticipantError):
    retriable: ClassVar[bool] = True
