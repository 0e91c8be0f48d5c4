"""Where sagas live: the `SagaStore` seam, and its Redis implementation.

Every method works on a whole batch in one Redis round trip. A saga's write is
one Lua script (see `lua/save_saga.lua`) guarded by the version it was read at;
a lost compare-and-set is a normal outcome the caller re-decides, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from saga_worker.errors import StoreUnavailableError
from saga_worker.keys import (
    OUTBOX_PREFIX,
    SEEN_PREFIX,
    STATE_FIELD,
    TIMER_SEPARATOR,
    VERSION_FIELD,
    KeySpace,
)
from saga_worker.state import TERMINAL, SagaState, to_ms


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


@dataclass(slots=True)
class SagaWrite:
    saga_id: str
    expected_version: int
    state: SagaState
    consumed: list[str] = field(default_factory=list)
    outbox: list[OutboxEntry] = field(default_factory=list)
    timers_set: dict[str, datetime] = field(default_factory=dict)
    timers_cancelled: set[str] = field(default_factory=set)
    previous_status: str | None = None


class SagaStore(Protocol):
    async def load(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Loaded]:
        """Loads each saga id with which of the given message ids it has consumed."""

    async def save(self, writes: Sequence[SagaWrite]) -> set[str]:
        """Persists each write atomically; returns the saga ids that lost the race."""

    async def acknowledged(self, writes: Sequence[SagaWrite]) -> None:
        """Kafka acknowledged every outbox entry of these (saved) writes: clear them."""

    async def claim_due_timers(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """Leases due timers as (saga_id, timer_id) pairs."""

    async def release_timers(self, fired: Iterable[tuple[str, str]]) -> None:
        """Forgets timers whose firing has been persisted."""

    async def stale_outboxes(
        self, older_than: datetime, limit: int
    ) -> dict[str, list[OutboxEntry]]:
        """Outbox entries of sagas whose pending hint is older than `older_than`."""

    async def clear_outbox(self, saga_id: str, message_ids: Sequence[str]) -> None:
        """Drops republished entries of one saga."""

    async def forget_expired(self, updated_before: datetime) -> None:
        """Drops index entries of finished sagas whose retention has run out."""


def _script(name: str) -> str:
    return resources.files("saga_worker").joinpath(f"lua/{name}.lua").read_text()


class RedisSagaStore:
    def __init__(
        self,
        redis: Redis,
        keys: KeySpace | None = None,
        *,
        retention: timedelta = timedelta(days=7),
        timer_lease: timedelta = timedelta(seconds=30),
    ) -> None:
        self._redis = redis
        self._keys = keys or KeySpace()
        self._retention_ms = int(retention.total_seconds() * 1000)
        self._lease_ms = int(timer_lease.total_seconds() * 1000)
        self._save = redis.register_script(_script("save_saga"))
        self._clear = redis.register_script(_script("clear_outbox"))
        self._claim = redis.register_script(_script("claim_timers"))

    @property
    def keys(self) -> KeySpace:
        return self._keys

    async def load(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Loaded]:
        ids = list(wanted)
        async with self._redis.pipeline(transaction=False) as pipe:
            for saga_id in ids:
                seen_fields = [SEEN_PREFIX + m for m in wanted[saga_id]]
                pipe.hmget(self._keys.saga(saga_id), [VERSION_FIELD, STATE_FIELD, *seen_fields])
            rows = await _run(pipe)
        loaded: dict[str, Loaded] = {}
        for saga_id, row in zip(ids, rows, strict=True):
            version, raw, *seen_flags = row
            state = SagaState.from_dict(orjson.loads(raw)) if raw is not None else None
            seen = frozenset(
                m for m, flag in zip(wanted[saga_id], seen_flags, strict=True) if flag is not None
            )
            loaded[saga_id] = Loaded(state, int(version or 0), seen)
        return loaded

    async def save(self, writes: Sequence[SagaWrite]) -> set[str]:
        if not writes:
            return set()
        keys = self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            # Hints first: if we die after them, they point at nothing and cost a no-op.
            for w in writes:
                if w.timers_set:
                    pipe.zadd(
                        keys.timers,
                        {
                            _timer_member(w.saga_id, t): to_ms(due)
                            for t, due in w.timers_set.items()
                        },
                    )
                if w.outbox:
                    pipe.zadd(
                        keys.pending_outboxes, {w.saga_id: to_ms(w.state.updated_at)}, nx=True
                    )
                status = w.state.status.value
                if status != w.previous_status:
                    if w.previous_status is not None:
                        pipe.zrem(keys.by_status(w.previous_status), w.saga_id)
                    pipe.zadd(keys.by_status(status), {w.saga_id: to_ms(w.state.updated_at)})
            for w in writes:
                ttl = self._retention_ms if w.state.finished else 0
                args: list[Any] = [
                    w.expected_version,
                    orjson.dumps(w.state.to_dict()),
                    ttl,
                    len(w.consumed),
                    *w.consumed,
                ]
                for entry in w.outbox:
                    args += [entry.message_id, entry.to_bytes()]
                await self._save(keys=[keys.saga(w.saga_id)], args=args, client=pipe)
            results = await _run(pipe)
        versions = results[-len(writes) :]
        return {w.saga_id for w, v in zip(writes, versions, strict=True) if int(v) < 0}

    async def acknowledged(self, writes: Sequence[SagaWrite]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for w in writes:
                if w.outbox:
                    ids = [e.message_id for e in w.outbox]
                    await self._clear(
                        keys=[self._keys.saga(w.saga_id), self._keys.pending_outboxes],
                        args=[w.saga_id, *ids],
                        client=pipe,
                    )
                if w.timers_cancelled:
                    pipe.zrem(
                        self._keys.timers,
                        *(_timer_member(w.saga_id, t) for t in w.timers_cancelled),
                    )
            await _run(pipe)

    async def claim_due_timers(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        try:
            members = await self._claim(
                keys=[self._keys.timers], args=[to_ms(now), self._lease_ms, limit]
            )
        except RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc
        return [_split_timer(m) for m in members]

    async def release_timers(self, fired: Iterable[tuple[str, str]]) -> None:
        members = [_timer_member(s, t) for s, t in fired]
        if members:
            try:
                await self._redis.zrem(self._keys.timers, *members)
            except RedisError as exc:
                raise StoreUnavailableError(f"redis: {exc}") from exc

    async def stale_outboxes(
        self, older_than: datetime, limit: int
    ) -> dict[str, list[OutboxEntry]]:
        try:
            members = await self._redis.zrangebyscore(
                self._keys.pending_outboxes, "-inf", to_ms(older_than), start=0, num=limit
            )
            saga_ids = [_text(m) for m in members]
            async with self._redis.pipeline(transaction=False) as pipe:
                for saga_id in saga_ids:
                    pipe.hgetall(self._keys.saga(saga_id))
                rows = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc
        found: dict[str, list[OutboxEntry]] = {}
        for saga_id, row in zip(saga_ids, rows, strict=True):
            found[saga_id] = [
                OutboxEntry.from_bytes(f.decode()[len(OUTBOX_PREFIX) :], raw)
                for f, raw in row.items()
                if f.startswith(OUTBOX_PREFIX.encode())
            ]
        return found

    async def clear_outbox(self, saga_id: str, message_ids: Sequence[str]) -> None:
        try:
            await self._clear(
                keys=[self._keys.saga(saga_id), self._keys.pending_outboxes],
                args=[saga_id, *message_ids],
            )
        except RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc

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
