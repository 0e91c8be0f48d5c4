"""Applies events to sagas: load a batch, decide, save, and redo the sagas that lost a race.

Kafka records, fired timers and operator commands all come through here, so
the compare-and-set, duplicate detection and dead-lettering behave the same
whichever way an event arrived. One Redis round trip loads the batch and one
saves it; only sagas that lost a compare-and-set are loaded again. Replies to the
sagas this processor saved last are decided on the state it saved, without a load,
when the engine applies them all (state_cache.py says why that is safe).

No message too large to send is ever saved: each decision's messages are
measured before the save, against SAGA_MAX_MESSAGE_BYTES less the header room
(wire/codec.py). A command or compensation that would be larger fails its step,
as a business failure would (StepFailed, `too_large`, not retryable), and the
engine decides what follows: the saga fails and compensates, or, when a
compensation (or a step past the pivot) is what cannot be sent, it needs an
operator. An outcome that would be larger goes out without the saga's data,
saying so in `data_omitted`; a failure notice that would be, not at all.

A start message is recognised by its saga's start marker (keys.py), kept far longer
than the saga: a start that matches the marker of a saga that finished and expired is
a repeated start, ignored (and logged at INFO, once per batch); a start whose body
differs from the marker's is dead-lettered (`start_conflict`), whether or not its saga
is still kept. A saga created before markers existed has none, and its starts are
decided as before: a duplicate while the saga is kept, a new saga once it expired.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from saga_worker.engine.decide import (
    REPLY_COMPENSATED,
    REPLY_COMPLETED,
    Decision,
    Outgoing,
    TimerCancel,
    TimerSet,
    command_belongs_to,
    command_id,
    compensation_id,
    decide,
    rejection,
)
from saga_worker.engine.definition import DefinitionRegistry, SagaDefinition
from saga_worker.engine.events import (
    CompensationSucceeded,
    Event,
    EventArrived,
    StartSaga,
    StepFailed,
    StepSucceeded,
)
from saga_worker.engine.state import SagaState, StepStatus
from saga_worker.errors import SagaWorkerError
from saga_worker.runtime.state_cache import StateCache
from saga_worker.runtime.store import Loaded, OutboxEntry, SagaStore, SagaWrite
from saga_worker.runtime.wait_index import IndexEntry, index_entries
from saga_worker.wire import (
    CORRELATION_ID,
    HEADER_ROOM,
    MAX_BYTES,
    MESSAGE_TYPE,
    TRACEPARENT,
    valid_traceparent,
)

log = logging.getLogger(__name__)

MAX_ROUNDS = 8  # a saga that loses this many races in a row means something is wrong


class ContentionError(SagaWorkerError):
    """Sagas kept losing their compare-and-set; the batch is retried from Kafka."""

    retriable = True


@dataclass(frozen=True, slots=True)
class Inbound:
    """One event for one saga, and where it came from (for dead letters and dedupe)."""

    saga_id: str
    event: Event
    message_id: str | None = None
    source: Any = None  # the Kafka record it came from, for dead letters; opaque here
    start: SagaDefinition | None = None  # for a StartSaga: the definition it starts
    # For a StartSaga from a start message: the digest of the body as the saga sees it
    # (inbound.start_digest), checked against and stored as the saga's start marker, and
    # the business key the saga id was derived from, for refusals and logs.
    start_digest: str | None = None
    business_key: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event that names something that does not exist: a dead letter."""

    inbound: Inbound
    code: str
    reason: str


@dataclass(slots=True)
class Applied:
    writes: list[SagaWrite] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    ignored: int = 0  # duplicates, late and stale events: changed nothing
    # Starts of sagas that finished and expired, known by their start marker: ignored,
    # and counted in `ignored` too.
    repeated_starts: list[Inbound] = field(default_factory=list)
    conflicts: int = 0  # writes that lost a compare-and-set and were decided again
    # The state each saved write replaced (None: it started the saga), for metrics.
    before: dict[str, SagaState | None] = field(default_factory=dict)

    def merge(self, other: Applied) -> None:
        self.writes += other.writes
        self.rejected += other.rejected
        self.ignored += other.ignored
        self.repeated_starts += other.repeated_starts
        self.conflicts += other.conflicts
        self.before.update(other.before)


class SagaProcessor:
    def __init__(
        self,
        store: SagaStore,
        registry: DefinitionRegistry,
        clock: Callable[[], datetime],
        max_message_bytes: int = MAX_BYTES,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._max_body_bytes = max_message_bytes - HEADER_ROOM
        self._cache = StateCache()

    async def apply(self, inbound: Sequence[Inbound]) -> Applied:
        by_saga: dict[str, list[Inbound]] = {}
        for item in inbound:
            by_saga.setdefault(item.saga_id, []).append(item)
        result = Applied()
        pending = by_saga
        for round_ in range(MAX_ROUNDS):
            now = self._clock()
            writes: list[SagaWrite] = []
            per_saga: dict[str, Applied] = {}
            before: dict[str, SagaState | None] = {}
            # After a lost race the sagas are loaded afresh: their cached states were stale.
            to_load = pending
            if not round_:
                to_load = self._decide_cached(pending, now, writes, per_saga, before)
            if to_load:
                wanted = {
                    sid: [i.message_id for i in items if i.message_id]
                    for sid, items in to_load.items()
                }
                starts = {sid for sid, items in to_load.items() if any(map(_marked_start, items))}
                loaded = await self._store.load(wanted, starts)
                for saga_id, items in to_load.items():
                    write, decided = self._decide_saga(saga_id, loaded[saga_id], items, now)
                    if write is not None:
                        writes.append(write)
                        before[saga_id] = loaded[saga_id].state
                    per_saga[saga_id] = decided
            lost = await self._save(writes)
            result.writes += (w for w in writes if w.saga_id not in lost)
            result.before.update((sid, st) for sid, st in before.items() if sid not in lost)
            for saga_id, decided in per_saga.items():
                if saga_id not in lost:
                    result.merge(decided)
            if not lost:
                _log_repeated_starts(result.repeated_starts)
                return result
            # A lost race is normal (a rebalance, a timer on another instance); counted, not logged.
            result.conflicts += len(lost)
            log.debug("compare-and-set lost; re-deciding", extra={"sagas": len(lost)})
            pending = {sid: pending[sid] for sid in lost}
        raise ContentionError(f"{len(pending)} sagas lost {MAX_ROUNDS} compare-and-sets in a row")

    def _decide_cached(
        self,
        pending: dict[str, list[Inbound]],
        now: datetime,
        writes: list[SagaWrite],
        per_saga: dict[str, Applied],
        before: dict[str, SagaState | None],
    ) -> dict[str, list[Inbound]]:
        """Decides the sagas whose replies the engine applies, every one, on the state
        this processor saved last (state_cache.py); returns the sagas still to load."""
        to_load: dict[str, list[Inbound]] = {}
        for saga_id, items in pending.items():
            replies = all(isinstance(i.event, Reply) for i in items)
            row = self._cache.row(saga_id) if replies else None
            if row is not None:
                write, decided = self._decide_saga(saga_id, row, items, now)
                if write is not None and not (decided.ignored or decided.rejected):
                    writes.append(write)
                    per_saga[saga_id] = decided
                    before[saga_id] = row.state
                    continue
            to_load[saga_id] = items
        return to_load

    async def _save(self, writes: list[SagaWrite]) -> set[str]:
        try:
            lost = await self._store.save(writes)
        except BaseException:
            self._cache.forget([w.saga_id for w in writes])  # saved or not: unknown
            raise
        self._cache.saved(writes, lost)
        return lost

    def _decide_saga(
        self,
        saga_id: str,
        row: Loaded,
        items: Sequence[Inbound],
        now: datetime,
    ) -> tuple[SagaWrite | None, Applied]:
        """The write for one saga's events (None: nothing changed), and what was refused
        or ignored on the way (the `writes` of the Applied returned stay empty)."""
        state = original = row.state
        seen = row.seen
        marker = row.start_marker  # as it will be once this saga's write is saved
        created_by: str | None = None  # the digest of the start that creates the saga
        outgoing: list[Outgoing] = []
        timers_set: dict[str, datetime] = {}
        cancelled: set[str] = set()
        consumed: list[str] = []
        out = Applied()
        for item in items:
            # Before the message id: a start without one gets an id derived from its
            # business key, which a start with another body would share.
            if _settled_by_marker(saga_id, item, marker, state is not None, out):
                continue
            if item.message_id and (item.message_id in seen or item.message_id in consumed):
                out.ignored += 1
                continue
            if state is None and not isinstance(item.event, StartSaga):
                out.rejected.append(Rejected(item, *UNKNOWN_SAGA))
                continue
            definition = self._definition_for(state, item)
            problem = _refusal(state, item.event, definition)
            if problem is not None:
                out.rejected.append(Rejected(item, *problem))
                continue
            decision = decide(state, item.event, now, definition)
            if decision.ignored is None:
                decision = self._within_limit(decision, now, definition)
            if decision.ignored is not None:
                out.ignored += 1
                log.debug(
                    "event ignored",
                    extra={
                        "saga_id": saga_id,
                        "message_id": item.message_id,
                        "reason": decision.ignored,
                    },
                )
                continue
            if state is None and _marked_start(item):
                created_by = marker = item.start_digest
            state = decision.state
            outgoing.extend(decision.outgoing)
            for change in decision.timers:
                if isinstance(change, TimerSet):
                    timers_set[change.timer_id] = change.due
                    cancelled.discard(change.timer_id)
                elif isinstance(change, TimerCancel):
                    timers_set.pop(change.timer_id, None)
                    cancelled.add(change.timer_id)
            if item.message_id:
                consumed.append(item.message_id)
        if state is None or state is original:
            return None, out
        # The correlation index follows the saga: in when it is created, out when it ends.
        created, ended = original is None, state.finished and not (original and original.finished)
        entries = self._index_entries(state) if created != ended else []
        write = SagaWrite(
            saga_id=saga_id,
            expected_version=row.version,
            state=state,
            consumed=consumed,
            outbox=[self._entry(state, o) for o in outgoing],
            timers_set=timers_set,
            timers_cancelled=cancelled,
            previous_status=original.status.value if original is not None else None,
            start_digest=created_by,
            index_add=entries if created and not state.finished else [],
            index_remove=entries if ended and not created else [],
        )
        return write, out

    def _index_entries(self, state: SagaState) -> list[IndexEntry]:
        definition = self._registry.get(state.definition_name, state.definition_version)
        return index_entries(definition, state.data) if definition.waits else []

    def _definition_for(self, state: SagaState | None, item: Inbound) -> SagaDefinition:
        # A running saga stays on the definition version it started with.
        if state is not None:
            return self._registry.get(state.definition_name, state.definition_version)
        if item.start is None:
            raise ValueError("a StartSaga needs the definition it starts")
        return item.start

    def _within_limit(
        self, decision: Decision, now: datetime, definition: SagaDefinition
    ) -> Decision:
        """`decision` with no message over the limit (see the module docstring)."""
        limit = self._max_body_bytes
        sizes = [len(orjson.dumps(out.payload)) for out in decision.outgoing]
        if all(size <= limit for size in sizes):
            return decision
        state = decision.state
        assert state is not None  # a decision that sends something has a saga
        sent: list[Outgoing] = []
        timers = list(decision.timers)
        todo = deque(zip(decision.outgoing, sizes, strict=True))
        while todo:
            out, size = todo.popleft()
            if size <= limit:
                sent.append(out)
                continue
            reason = f"{size} bytes, more than the {limit} a message may have, for {out.topic}"
            log.warning(
                "message too large; not sent",
                extra={"saga_id": state.saga_id, "topic": out.topic, "bytes": size},
            )
            if out.topic in (REPLY_COMPLETED, REPLY_COMPENSATED):  # a child answering its parent
                sent.append(_without_result(out, reason))
                continue
            step = _step_of(state, out)
            if step is None:
                if "step_name" not in out.payload:  # an outcome: the saga is over, say why
                    sent.append(_without_data(out, reason))
                continue  # a failure notice: a participant would refuse it without the data
            if not _awaits(state, step, out.message_id):
                continue  # abandoned before it went out: its compensation follows
            failed = decide(
                state,
                StepFailed(
                    step, reason, error_code=TOO_LARGE, retryable=False, command_id=out.message_id
                ),
                now,
                definition,
            )
            if failed.state is None or failed.ignored is not None:  # pragma: no cover
                continue
            state = failed.state
            timers += failed.timers
            todo += ((o, len(orjson.dumps(o.payload))) for o in failed.outgoing)
        return Decision(state, tuple(sent), tuple(timers))

    @staticmethod
    def _entry(state: SagaState, out: Outgoing) -> OutboxEntry:
        headers = [(MESSAGE_TYPE, out.topic), (CORRELATION_ID, state.saga_id)]
        trace = state.data.get(TRACE_DATA_KEY)
        if isinstance(trace, str) and valid_traceparent(trace):
            headers.append((TRACEPARENT, trace))
        return OutboxEntry(out.message_id, out.topic, out.key, out.payload, tuple(headers))


UNKNOWN_SAGA = ("unknown_saga", "no saga with this id exists (never started, or expired)")
# A start whose body differs from the one that started its saga (same business key).
START_CONFLICT = "start_conflict"
REPEATED_STARTS_LOGGED = 10  # saga ids named in the one INFO line of a batch

# The W3C traceparent of the start message that started a saga travels in its data.
TRACE_DATA_KEY = "traceparent"

Reply = StepSucceeded | StepFailed | CompensationSucceeded

TOO_LARGE = "too_large"  # the error code of a step whose message would be too large
# What an outcome keeps when the saga's data would make it too large.
_ENVELOPE = ("saga_id", "message_id", "schema_version", "error")


def _marked_start(item: Inbound) -> bool:
    """A start that carries a digest: it is checked against, and sets, a start marker."""
    return item.start_digest is not None and isinstance(item.event, StartSaga)


def _settled_by_marker(
    saga_id: str, item: Inbound, marker: str | None, exists: bool, out: Applied
) -> bool:
    """Whether the saga's start marker settles `item`: a start with another body is
    refused, the same start of a saga that expired is ignored (noted in `out`)."""
    if marker is None or not _marked_start(item):
        return False
    if marker != item.start_digest:
        out.rejected.append(Rejected(item, START_CONFLICT, _conflict(saga_id, item, marker)))
        return True
    if not exists:
        out.ignored += 1
        out.repeated_starts.append(item)
        return True
    return False  # the same start while its saga is kept: a duplicate, as decided below


def _conflict(saga_id: str, item: Inbound, marker: str) -> str:
    name = item.start.name if item.start is not None else "saga"
    key = "" if item.business_key is None else f" for business key {item.business_key[:64]!r}"
    return (
        f"{name} {saga_id}{key} was started by a start message with another body "
        f"(digest {marker}, this one {item.start_digest}); this start is not applied"
    )


def _log_repeated_starts(repeated: Sequence[Inbound]) -> None:
    if repeated:
        shown = repeated[:REPEATED_STARTS_LOGGED]
        log.info(
            "repeated starts ignored: their sagas finished and expired",
            extra={
                "count": len(repeated),
                "saga_ids": [i.saga_id for i in shown],
                "business_keys": [i.business_key for i in shown],
            },
        )


def _step_of(state: SagaState, out: Outgoing) -> str | None:
    """The step whose command or compensation `out` is, or None (an outcome, a notice)."""
    step = out.payload.get("step_name")
    st = state.steps.get(step) if isinstance(step, str) else None
    if st is None or step is None:
        return None
    ids = (
        command_id(state.saga_id, step, st.attempt),
        compensation_id(state.saga_id, step, st.comp_attempt),
    )
    return step if out.message_id in ids else None


def _awaits(state: SagaState, step: str, message_id: str) -> bool:
    """Whether `step` still waits for the answer to `message_id`."""
    st = state.steps[step]
    if st.status is StepStatus.PENDING:
        return message_id == command_id(state.saga_id, step, st.attempt)
    if st.status is StepStatus.COMPENSATING:
        return message_id == compensation_id(state.saga_id, step, st.comp_attempt)
    return False


def _without_result(out: Outgoing, reason: str) -> Outgoing:
    """A child's reply to its parent whose results would make it too large: the reply
    goes out (the parent must hear the outcome) saying why the results are missing."""
    payload = dict(out.payload)
    if "result" in payload:
        payload["result"] = {"result_omitted": reason}
    return replace(out, payload=payload)


def _without_data(out: Outgoing, reason: str) -> Outgoing:
    payload: dict[str, Any] = {k: out.payload[k] for k in _ENVELOPE if k in out.payload}
    payload["data_omitted"] = reason
    return replace(out, payload=payload)


def _refusal(
    state: SagaState | None, event: Event, definition: SagaDefinition
) -> tuple[str, str] | None:
    """Why an event must be dead-lettered rather than decided, or None."""
    if isinstance(event, StartSaga):
        return None
    if state is None:
        return UNKNOWN_SAGA
    step = definition.steps.get(event.step) if isinstance(event, EventArrived) else None
    if isinstance(event, EventArrived) and step is not None and step.wait is not None:
        try:
            rejection(step, event.data)
        except ValueError as exc:  # the wait's `rejects` cannot judge this event
            return "event_not_judged", str(exc)[:300]
    if isinstance(event, Reply) and not _known_step(definition, event.step):
        return (
            "unknown_step",
            f"saga {definition.name} v{definition.version} has no step {event.step!r}",
        )
    if isinstance(event, Reply) and not command_belongs_to(state.saga_id, event.command_id):
        # Command ids are derived from the saga id: this reply answers another saga.
        return "foreign_command", f"command_id {event.command_id!r} is not one of this saga's"
    return None


def _known_step(definition: SagaDefinition, step: str) -> bool:
    return step in definition.steps or any(name == step for name, _ in definition.failure_notices)
