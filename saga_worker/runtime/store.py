"""Where sagas live: the `SagaStore` seam, and its Redis implementation.

Every method works on a whole batch in one Redis round trip. A saga's write is
one Lua script (see `lua/save_saga.lua`) guarded by the version it was read at;
a lost compare-and-set is a normal outcome the caller re-decides, not an error.

A saga's start marker (keys.py) is read by the same load call, for the sagas a
batch starts, and set by the same save call that creates the saga: whether a start
was seen before is answered for as long as the marker is kept, not only while the
saga is.

Timers run on one clock, the Redis server's (`TIME`, read inside the scripts):
a write stores each timer as its delay from the decision's `now` (the state's
`updated_at`) and the script adds that to the server's time; claiming compares
due times with the server's time too. An instance whose own clock is off
therefore fires no timer early or late; only the engine's timestamps follow it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from saga_worker.engine.state import TERMINAL, SagaState, to_ms
from saga_worker.errors import StoreUnavailableError
from saga_worker.runtime.keys import (
    OUTBOX_PREFIX,
    TIMER_SEPARATOR,
    KeySpace,
)
from saga_worker.runtime.wait_index import IndexEntry


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A message decided and persisted but perhaps not yet acknowledged by Kafka."""

    message_id: str
    topic: str  # logical
    key: str
    payload: Mapping[str, Any]
    headers: tuple[tuple[str, str], ...] = ()

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.topic, self.key, self.payload, self.headers])

    @classmethod
    def from_bytes(cls, message_id: str, raw: bytes) -> OutboxEntry:
        topic, key, payload, headers = orjson.loads(raw)
        return cls(message_id, topic, key, payload, tuple((k, v) for k, v in headers))


@dataclass(frozen=True, slots=True)
class Loaded:
    """A saga as read: its state (None if it does not exist) and the version to expect."""

    state: SagaState | None
    version: int
    seen: frozenset[str] = frozenset()  # of the message ids asked about, those consumed
    # The digest of the start that created the saga, if asked for and still kept (a saga
    # created before start markers existed has none).
    start_marker: str | None = None


@dataclass(slots=True)
class SagaWrite:
    saga_id: str
    expected_version: int
    state: SagaState
    consumed: list[str] = field(default_factory=list)
    outbox: list[OutboxEntry] = field(default_factory=list)
    timers_set: dict[str, datetime] = field(default_factory=dict)  # due from state.updated_at
    timers_cancelled: set[str] = field(default_factory=set)
    previous_status: str | None = None
    # The digest of the start message that creates the saga (expected_version 0): the
    # save sets the saga's start marker to it, in the same atomic call.
    start_digest: str | None = None
    # Correlation index entries (wait_index.py) the save adds (the saga is created) or
    # removes (it finished), in the same atomic call.
    index_add: list[IndexEntry] = field(default_factory=list)
    index_remove: list[IndexEntry] = field(default_factory=list)


@dataclass(slots=True)
class StaleOutboxes:
    """What the sweeper found: entries by saga id, and sagas whose outbox cannot be read
    (an entry in a format this version does not know), with why."""

    entries: dict[str, list[OutboxEntry]] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entries) + len(self.unreadable)


class SagaStore(Protocol):
    async def load(
        self, wanted: Mapping[str, Sequence[str]], starts: Collection[str] = ()
    ) -> dict[str, Loaded]:
        """Loads each saga id with which of the given message ids it has consumed, and,
        for the saga ids in `starts`, its start marker."""

    async def save(self, writes: Sequence[SagaWrite]) -> set[str]:
        """Persists each write atomically; returns the saga ids that lost the race."""

    async def acknowledged(self, writes: Sequence[SagaWrite]) -> None:
        """Kafka acknowledged every outbox entry of these (saved) writes: clear them."""

    async def claim_due_timers(self, limit: int) -> list[tuple[str, str]]:
        """Leases timers due by the store's own clock as (saga_id, timer_id) pairs."""

    async def release_timers(
        self,
        done: Iterable[tuple[str, str]],
        deferred: Iterable[tuple[str, str]] = (),
        *,
        retry_after: timedelta = timedelta(0),
    ) -> None:
        """Forgets claimed timers that are done with (fired and persisted, or dropped) and
        puts the deferred ones back, due again `retry_after` from now, unless cancelled."""

    async def stale_outboxes(self, older_than: datetime, limit: int) -> StaleOutboxes:
        """Outbox entries of sagas whose pending hint is older than `older_than`; drops
        the hints of sagas that no longer exist or hold no entry."""

    async def defer_outboxes(self, saga_ids: Iterable[str], until: datetime) -> None:
        """Moves the pending hints of these sagas to `until` (where they still exist), so
        the sweeper comes back to them one threshold later instead of at once."""

    async def clear_outboxes(self, republished: Mapping[str, Sequence[str]]) -> None:
        """Drops republished entries (message ids by saga id), in one round trip."""

    async def forget_expired(self, updated_before: datetime) -> None:
        """Drops index entries of finished sagas whose retention has run out."""


def _script(name: str) -> str:
    return resources.files("saga_worker.runtime").joinpath(f"lua/{name}.lua").read_text()


class RedisSagaStore:
    def __init__(
        self,
        redis: Redis,
        keys: KeySpace | None = None,
        *,
        retention: timedelta = timedelta(days=7),
        start_retention: timedelta = timedelta(days=90),
        timer_lease: timedelta = timedelta(seconds=30),
    ) -> None:
        self._redis = redis
        self._keys = keys or KeySpace()
        self._retention_ms = int(retention.total_seconds() * 1000)
        self._start_retention_ms = int(start_retention.total_seconds() * 1000)
        self._lease_ms = int(timer_lease.total_seconds() * 1000)
        self._load = redis.register_script(_script("load_sagas"))
        self._save = redis.register_script(_script("save_sagas"))
        self._ack = redis.register_script(_script("ack_sagas"))
        self._claim = redis.register_script(_script("claim_timers"))
        self._release = redis.register_script(_script("release_timers"))
        self._stale = redis.register_script(_script("stale_outboxes"))

    @property
    def keys(self) -> KeySpace:
        return self._keys

    # One script call per batch for each of load, save and acknowledge: per-command
    # costs in the client (packing, parsing, timeouts) would otherwise dominate.

    async def load(
        self, wanted: Mapping[str, Sequence[str]], starts: Collection[str] = ()
    ) -> dict[str, Loaded]:
        ids = list(wanted)
        if not ids:
            return {}
        keys: list[str] = []
        args: list[Any] = []
        for saga_id in ids:
            marked = saga_id in starts
            keys.append(self._keys.saga(saga_id))
            if marked:
                keys.append(self._keys.start_marker(saga_id))
            args += [len(wanted[saga_id]), "1" if marked else "0", *wanted[saga_id]]
        rows = await self._call(self._load, keys, args)
        loaded: dict[str, Loaded] = {}
        for saga_id, row in zip(ids, rows, strict=True):
            version, raw, marker, *seen_flags = row
            state = SagaState.from_dict(orjson.loads(raw)) if raw is not None else None
            seen = frozenset(
                m for m, flag in zip(wanted[saga_id], seen_flags, strict=True) if flag is not None
            )
            start_marker = _text(marker) if marker is not None else None
            loaded[saga_id] = Loaded(state, int(version or 0), seen, start_marker)
        return loaded

    async def save(self, writes: Sequence[SagaWrite]) -> set[str]:
        if not writes:
            return set()
        keys = self._keys
        args: list[Any] = [keys.by_status(""), self._retention_ms, self._start_retention_ms]
        for w in writes:
            state = w.state
            args += [
                w.saga_id,
                w.expected_version,
                orjson.dumps(state.to_dict()),
                "1" if state.finished else "0",
                to_ms(state.updated_at),
                state.status.value,
                w.previous_status or "",
                w.start_digest or "",
                len(w.consumed),
                len(w.outbox),
                len(w.timers_set),
                len(w.index_add),
                len(w.index_remove),
                *w.consumed,
            ]
            for entry in w.outbox:
                args += [entry.message_id, entry.to_bytes()]
            now_ms = to_ms(state.updated_at)  # the `now` the engine computed due times from
            for timer, due in w.timers_set.items():
                args += [_timer_member(w.saga_id, timer), max(to_ms(due) - now_ms, 0)]
            args += [keys.wait_index(*e) for e in (*w.index_add, *w.index_remove)]
        saga_keys = [
            k for w in writes for k in (keys.saga(w.saga_id), keys.start_marker(w.saga_id))
        ]
        versions = await self._call(
            self._save, [keys.timers, keys.pending_outboxes, *saga_keys], args
        )
        return {w.saga_id for w, v in zip(writes, versions, strict=True) if int(v) < 0}

    async def acknowledged(self, writes: Sequence[SagaWrite]) -> None:
        done = [w for w in writes if w.outbox or w.timers_cancelled]
        if done:
            await self._acknowledge(
                [
                    (w.saga_id, [e.message_id for e in w.outbox], sorted(w.timers_cancelled))
                    for w in done
                ]
            )

    async def _acknowledge(self, sagas: Sequence[tuple[str, Sequence[str], Sequence[str]]]) -> None:
        args: list[Any] = []
        for saga_id, message_ids, cancelled in sagas:
            args += [saga_id, len(message_ids), len(cancelled), *message_ids]
            args += [_timer_member(saga_id, t) for t in cancelled]
        saga_keys = [self._keys.saga(saga_id) for saga_id, _, _ in sagas]
        await self._call(
            self._ack, [self._keys.pending_outboxes, self._keys.timers, *saga_keys], args
        )

    async def _call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc

    async def claim_due_timers(self, limit: int) -> list[tuple[str, str]]:
        members = await self._call(self._claim, [self._keys.timers], [self._lease_ms, limit])
        return [_split_timer(m) for m in members]

    async def release_timers(
        self,
        done: Iterable[tuple[str, str]],
        deferred: Iterable[tuple[str, str]] = (),
        *,
        retry_after: timedelta = timedelta(0),
    ) -> None:
        later = [_timer_member(s, t) for s, t in deferred]
        members = [_timer_member(s, t) for s, t in done]
        if later or members:
            retry_ms = int(retry_after.total_seconds() * 1000)
            args = [retry_ms, len(later), *later, *members]
            await self._call(self._release, [self._keys.timers], args)

    async def stale_outboxes(self, older_than: datetime, limit: int) -> StaleOutboxes:
        # one script: it also drops hints of sagas gone or without entries
        prefix, suffix = self._keys.saga_affixes
        found_rows = await self._call(
            self._stale,
            [self._keys.pending_outboxes],
            [to_ms(older_than), limit, prefix, suffix],
        )
        saga_ids = [_text(saga_id) for saga_id, _ in found_rows]
        rows = [dict(zip(flat[::2], flat[1::2], strict=True)) for _, flat in found_rows]
        found = StaleOutboxes()
        for saga_id, row in zip(saga_ids, rows, strict=True):
            try:
                found.entries[saga_id] = [
                    OutboxEntry.from_bytes(f.decode()[len(OUTBOX_PREFIX) :], raw)
                    for f, raw in row.items()
                    if f.startswith(OUTBOX_PREFIX.encode())
                ]
            except (ValueError, TypeError) as exc:  # orjson's errors are ValueErrors
                found.unreadable[saga_id] = f"unreadable outbox entry: {exc!r}"[:300]
        return found

    async def defer_outboxes(self, saga_ids: Iterable[str], until: datetime) -> None:
        ids = list(saga_ids)
        if ids:
            try:
                # XX: a hint dropped meanwhile (its outbox cleared) must not come back.
                await self._redis.zadd(
                    self._keys.pending_outboxes, dict.fromkeys(ids, to_ms(until)), xx=True
                )
            except RedisError as exc:
                raise StoreUnavailableError(f"redis: {exc}") from exc

    async def clear_outboxes(self, republished: Mapping[str, Sequence[str]]) -> None:
        if republished:
            await self._acknowledge([(s, ids, []) for s, ids in republished.items()])

    async def forget_expired(self, updated_before: datetime) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for status in TERMINAL:
                pipe.zremrangebyscore(
                    self._keys.by_status(status.value), "-inf", to_ms(updated_before)
                )
            await _run(pipe)


async def _run(pipe: Any) -> list[Any]:
    try:
        return list(await pipe.execute())
    except RedisError as exc:
        raise StoreUnavailableError(f"redis: {exc}") from exc


def _timer_member(saga_id: str, timer_id: str) -> str:
    return f"{saga_id}{TIMER_SEPARATOR}{timer_id}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _split_timer(member: bytes | str) -> tuple[str, str]:
    saga_id, _, timer_id = _text(member).partition(TIMER_SEPARATOR)
    return saga_id, timer_id
