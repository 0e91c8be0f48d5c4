"""What an operator does to sagas: find, list, resume, abort, signal, and count.

Operator commands are engine events like any other: they go through the same
processor (compare-and-set, outbox) and their messages are published here, so
`retry` and `abort` behave exactly as if the orchestrator had decided them.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from saga_worker.app import App
from saga_worker.engine.decide import child_saga_id, command_id, compensation_id, decide
from saga_worker.engine.events import Event, EventArrived, OperatorAbort, OperatorRetry
from saga_worker.engine.state import SagaState, SagaStatus, to_ms
from saga_worker.runtime.clock import utcnow
from saga_worker.runtime.kafka_clients import make_producer
from saga_worker.runtime.processor import Inbound, SagaProcessor
from saga_worker.runtime.publisher import Publisher
from saga_worker.runtime.redis_client import RedisClient
from saga_worker.runtime.store import RedisSagaStore
from saga_worker.settings import Settings
from saga_worker.wire import topics as t

WORKER = "cli"


@dataclass(frozen=True)
class Outcome:
    """What an operator command did: the saga afterwards, or why nothing changed."""

    state: SagaState | None
    changed: bool
    reason: str | None = None


@dataclass(frozen=True)
class Child:
    """A child saga a step started (or its compensation did), and its own children."""

    step: str
    saga_id: str
    compensation: bool
    state: SagaState | None  # None: not started yet, or expired
    children: list[Child] = field(default_factory=list)


MAX_TREE_DEPTH = 5  # child sagas shown below a saga; deeper ones are left out
SCAN_WINDOWS = 10  # windows of the status index one page reads, at most, to fill itself


@dataclass(frozen=True)
class Page:
    sagas: list[SagaState]
    next_offset: int | None


class Operations:
    def __init__(
        self,
        settings: Settings,
        redis: RedisClient,
        app: App,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._app = app
        self._store = RedisSagaStore(
            redis,
            settings.keys,
            retention=settings.retention,
            start_retention=settings.start_retention,
        )
        self._registry = app.registry
        self.now = clock

    async def find(self, saga_or_key: str) -> SagaState | None:
        """A saga by its id, or by the business key that started it (an order id, ...)."""
        candidates = self._app.candidate_ids(saga_or_key)
        loaded = await self._store.load({c: [] for c in candidates})
        for candidate in candidates:
            if loaded[candidate].state is not None:
                return loaded[candidate].state
        return None

    async def list(
        self,
        statuses: list[SagaStatus],
        *,
        older_than: timedelta | None = None,
        newer_than: timedelta | None = None,
        offset: int = 0,
        limit: int = 50,
        saga_type: str | None = None,
    ) -> Page:
        """Sagas in the given statuses (and of one type), most recently updated first.

        The status index spans every saga type and holds hints: a page drops the sagas
        of other types (and stale hints) and reads on to fill itself, at most
        SCAN_WINDOWS windows of `limit` entries, so a page may still come back short.
        Offsets count index entries read, so `next_offset` continues where it stopped."""
        now_ms = to_ms(self.now())
        newest = now_ms - int(older_than.total_seconds() * 1000) if older_than else "+inf"
        oldest = now_ms - int(newer_than.total_seconds() * 1000) if newer_than else "-inf"
        sagas: list[SagaState] = []
        cursor = offset
        for _ in range(SCAN_WINDOWS):
            wanted = limit - len(sagas)
            window = await self._index_window(statuses, newest, oldest, cursor, wanted + 1)
            loaded = await self._store.load({saga_id: [] for saga_id in window[:wanted]})
            # The index is a hint: keep only sagas whose own state agrees with it.
            sagas += [
                row.state
                for row in loaded.values()
                if row.state is not None
                and row.state.status in statuses
                and saga_type in (None, row.state.definition_name)
            ]
            cursor += min(len(window), wanted)
            if len(window) <= wanted:
                return Page(_newest_first(sagas), None)
            if len(sagas) == limit:
                break
        return Page(_newest_first(sagas), cursor)

    async def _index_window(
        self,
        statuses: builtins.list[SagaStatus],
        newest: float | str,
        oldest: float | str,
        start: int,
        count: int,
    ) -> builtins.list[str]:
        """Saga ids at positions [start, start + count) of the status indexes merged,
        most recently updated first."""
        ids: list[tuple[float, str]] = []
        keys = self._store.keys
        async with self._redis.pipeline(transaction=False) as pipe:
            for status in statuses:
                for shard in keys.all_shards:  # the first start + count of every shard
                    pipe.zrevrangebyscore(
                        keys.by_status(status.value, shard),
                        newest,
                        oldest,
                        start=0,
                        num=start + count,
                        withscores=True,
                    )
            pages: list[list[tuple[bytes, float]]] = await pipe.execute()
        for rows in pages:
            ids += [(float(score), _text(member)) for member, score in rows]
        ids.sort(reverse=True)
        return [saga_id for _, saga_id in ids[start : start + count]]

    async def retry(self, saga_or_key: str) -> Outcome:
        return await self._command(saga_or_key, OperatorRetry())

    async def abort(self, saga_or_key: str, reason: str) -> Outcome:
        return await self._command(saga_or_key, OperatorAbort(reason))

    async def signal(self, saga_or_key: str, step: str, data: Mapping[str, Any]) -> Outcome:
        """Delivers `data` to the saga's wait step `step`, as if its event had arrived."""
        message_id = f"signal:{uuid.uuid4()}"  # each signal is one event
        return await self._command(saga_or_key, EventArrived(step, dict(data), message_id))

    async def parent_of(self, state: SagaState) -> SagaState | None:
        if state.parent is None:
            return None
        return (await self._store.load({state.parent.saga_id: []}))[state.parent.saga_id].state

    async def children_of(
        self, state: SagaState, depth: int = MAX_TREE_DEPTH
    ) -> builtins.list[Child]:
        """The child sagas of a saga, every attempt and compensation, as a tree."""
        definition = self._registry.get(state.definition_name, state.definition_version)
        wanted: list[tuple[str, str, bool]] = []
        for name, step in definition.steps.items():
            if step.child is None:
                continue
            st = state.step(name)
            for n in range(1, st.attempt + 1):
                wanted.append((name, child_saga_id(command_id(state.saga_id, name, n)), False))
            for n in range(1, st.comp_attempt + 1):
                cid = compensation_id(state.saga_id, name, n)
                wanted.append((name, child_saga_id(cid), True))
        if not wanted or depth <= 0:
            return []
        loaded = await self._store.load({saga_id: [] for _, saga_id, _ in wanted})
        return [
            Child(name, saga_id, compensation, child, await self._below(child, depth - 1))
            for name, saga_id, compensation in wanted
            for child in [loaded[saga_id].state]
        ]

    async def _below(self, child: SagaState | None, depth: int) -> builtins.list[Child]:
        return [] if child is None else await self.children_of(child, depth)

    async def _command(self, saga_or_key: str, event: Event) -> Outcome:
        state = await self.find(saga_or_key)
        if state is None:
            return Outcome(None, changed=False, reason="no such saga")
        self._app.saga_type_of(state)  # UnknownSagaTypeError: one line, not a traceback
        limit = self._settings.saga_max_message_bytes
        processor = SagaProcessor(self._store, self._registry, self.now, limit)
        applied = await processor.apply([Inbound(state.saga_id, event)])
        if not applied.writes:
            after = await self.find(state.saga_id)
            return Outcome(after, changed=False, reason=self._refusal(event, after))
        producer = make_producer(self._settings.kafka, max_request_size=limit)
        await producer.start()
        try:
            publisher = Publisher(producer, self._settings.topics, WORKER, limit)
            await publisher.send_entries(e for w in applied.writes for e in w.outbox)
        finally:
            await producer.stop()
        await self._store.acknowledged(applied.writes)
        return Outcome(applied.writes[-1].state, changed=True)

    def _refusal(self, event: Event, state: SagaState | None) -> str:
        """The engine's own words for why it ignored the command."""
        if state is None:
            return "the saga expired meanwhile"
        definition = self._registry.get(state.definition_name, state.definition_version)
        ignored = decide(state, event, self.now(), definition).ignored
        return ignored or f"saga is {state.status.value}; nothing to do"

    async def counts(self) -> dict[str, int]:
        """Sagas per status, from the status index (hints; finished ones age out)."""
        keys = self._store.keys
        async with self._redis.pipeline(transaction=False) as pipe:
            for status in SagaStatus:
                for shard in keys.all_shards:
                    pipe.zcard(keys.by_status(status.value, shard))
            sizes = await pipe.execute()
        n = keys.shards
        return {
            s.value: sum(int(x) for x in sizes[i * n : (i + 1) * n])
            for i, s in enumerate(SagaStatus)
        }

    async def backlog(self) -> dict[str, int]:
        keys = self._store.keys
        now_ms = to_ms(self.now())
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in keys.all_shards:
                pipe.zcard(keys.pending_outboxes(shard))
                pipe.zcard(keys.timers(shard))
                pipe.zcount(keys.timers(shard), "-inf", now_ms)
                completed_key = keys.by_status(SagaStatus.COMPLETED.value, shard)
                pipe.zcount(completed_key, now_ms - 60_000, now_ms)
                pipe.zcount(keys.by_status(SagaStatus.FAILED.value, shard), now_ms - 60_000, now_ms)
            sizes = [int(x) for x in await pipe.execute()]
        outbox, timers, due, completed, failed = (sum(sizes[i::5]) for i in range(5))
        return {
            "outbox_pending_sagas": int(outbox),
            "timers": int(timers),
            "timers_due": int(due),
            "completed_last_60s": int(completed),
            "failed_last_60s": int(failed),
        }


def consumer_groups(settings: Settings, the_app: App) -> Mapping[str, list[str]]:
    """The consumer group of every worker of the app, and the physical topics it reads."""
    physical = settings.topics.physical
    groups: dict[str, list[str]] = {}
    if the_app.sagas:
        inbound = the_app.orchestrator_inbound()
        groups[settings.group_id("orchestrator")] = [physical(n) for n in inbound]
    for name in the_app.participant_names:
        topics = the_app.build_participant(name).topics
        groups[settings.group_id(f"participant.{name}")] = [physical(n) for n in topics]
    return groups


def replayable_topics(settings: Settings, the_app: App) -> set[str]:
    """Where a dead letter may go back to: any topic a worker of the app reads."""
    return {topic for topics in consumer_groups(settings, the_app).values() for topic in topics}


def dead_letter_topic(settings: Settings) -> str:
    return settings.topics.physical(t.DEAD_LETTER)


def _newest_first(sagas: builtins.list[SagaState]) -> builtins.list[SagaState]:
    return sorted(sagas, key=lambda s: s.updated_at, reverse=True)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
