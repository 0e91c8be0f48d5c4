"""Which sagas an event on a wait step's topic names: the correlation index.

A saga whose definition has wait steps is indexed when it is created: for each wait,
the set `<ns>wait:<saga type>:<step>:<value>` (keys.py) gets the saga's id, where
value is the saga data's `data_field`. The script that saves the saga's creation
adds it, and the one that saves its end removes it, so the index changes with the
state, atomically, and survives restarts and rebalances as the state does.

An event is looked up, for every wait listening on its topic, by the value of the
wait's `correlate` field in the event: all of a batch's lookups in one round trip.
What it finds becomes one EventArrived per saga; an event naming no saga is a dead
letter (`no_waiting_saga`) unless every wait on the topic declares such events
normal, and one naming several sagas for a wait without `many` is a dead letter
(`ambiguous_correlation`). An event that arrives before its saga was created names
no saga: replay it from the dead-letter topic once the saga runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from saga_worker.app import App
from saga_worker.engine.definition import SagaDefinition, Step
from saga_worker.engine.events import EventArrived
from saga_worker.errors import StoreUnavailableError
from saga_worker.runtime.consumer_loop import Record
from saga_worker.runtime.dead_letters import DeadLetter
from saga_worker.runtime.keys import KeySpace
from saga_worker.runtime.processor import Inbound
from saga_worker.runtime.redis_client import RedisClient
from saga_worker.runtime.wait_index import value_token

log = logging.getLogger(__name__)

NO_WAITING_SAGA = "no_waiting_saga"
AMBIGUOUS = "ambiguous_correlation"


@dataclass(frozen=True, slots=True)
class Correlated:
    """An event on a wait step's topic, decoded, before it is matched to sagas."""

    record: Record
    topic: str  # logical
    body: Mapping[str, Any]
    message_id: str


@dataclass(slots=True)
class Resolved:
    inbound: list[Inbound] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    ignored: int = 0  # events naming no saga, on topics whose waits declare that normal


class Correlator:
    def __init__(self, app: App, keys: KeySpace, redis: RedisClient) -> None:
        self._keys = keys
        self._redis = redis
        self._listeners: dict[str, tuple[tuple[SagaDefinition, Step], ...]] = {}
        for topic in app.orchestrator_inbound():
            if waits := app.waits_on(topic):
                self._listeners[topic] = waits

    async def resolve(self, events: Sequence[Correlated]) -> Resolved:
        # (event index, index key) -> the wait step; versions of one saga type share keys
        lookups: dict[tuple[int, str], Step] = {}
        for n, event in enumerate(events):
            for definition, step in self._listeners.get(event.topic, ()):
                assert step.wait is not None
                token = value_token(event.body.get(step.wait.correlate))
                if token is not None:
                    key = self._keys.wait_index(definition.name, step.name, token)
                    lookups.setdefault((n, key), step)
        members = await self._members([key for _, key in lookups])
        found: dict[int, list[tuple[Step, list[str]]]] = {}
        for ((n, _), step), sagas in zip(lookups.items(), members, strict=True):
            if sagas:
                found.setdefault(n, []).append((step, sagas))
        resolved = Resolved()
        for n, event in enumerate(events):
            self._route(event, found.get(n, []), resolved)
        return resolved

    def _route(
        self, event: Correlated, matches: list[tuple[Step, list[str]]], out: Resolved
    ) -> None:
        listeners = self._listeners.get(event.topic, ())
        if not matches:
            normal = [s.wait is not None and s.wait.ignore_unmatched for _, s in listeners]
            if listeners and all(normal):
                out.ignored += 1
                log.debug("event names no saga; ignored", extra={"topic": event.topic})
                return
            fields = ", ".join(sorted({s.wait.correlate for _, s in listeners if s.wait}))
            reason = f"no saga waits for this event on {event.topic} (by {fields})"
            out.dead.append(DeadLetter(event.record, NO_WAITING_SAGA, reason))
            return
        for step, sagas in matches:
            assert step.wait is not None
            if len(sagas) > 1 and not step.wait.many:
                reason = (
                    f"{len(sagas)} sagas wait at {step.name} for this event's "
                    f"{step.wait.correlate}, and the wait does not allow many"
                )
                out.dead.append(DeadLetter(event.record, AMBIGUOUS, reason))
                return
        for step, sagas in matches:
            for saga_id in sagas:
                arrived = EventArrived(step.name, event.body, event.message_id)
                out.inbound.append(Inbound(saga_id, arrived, event.message_id, event.record))

    async def _members(self, keys: list[str]) -> list[list[str]]:
        if not keys:
            return []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.smembers(key)
                rows = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc
        return [sorted(_text(m) for m in row) for row in rows]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
