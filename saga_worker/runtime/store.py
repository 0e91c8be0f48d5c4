"""Where sagas live: the `SagaStore` seam, and its Redis implementation.

Every method works on a whole batch in one pipelined round trip (two for a save on
Redis Cluster, below). Every script call touches the keys of one hash slot only, all
named in KEYS, so the store runs on Redis Cluster as on a single Redis: a batch's
sagas are grouped by slot, one call per slot (on a single Redis one call for the
batch), and their index hints by index shard (keys.py), one call per shard.

A saga's write is one Lua script (`lua/save_sagas.lua`) guarded by the version it
was read at; a lost compare-and-set is a normal outcome the caller re-decides, not
an error. Its index hints (the timers it sets, the pending-outbox hint of its
outbox, its new status entry, its correlation index entries) are other slots' keys,
so they cannot change in the same script: they are written BEFORE it
(`lua/index_ops.lua`), in the same pipeline on a single Redis (one connection runs
it in order) and in the round trip before it on a cluster. So a hint a saga needs
is never missing, whatever fails between; a hint whose write then lost its
compare-and-set, or never came, is stale, and every reader checks a hint against
the saga's own state (a timer the saga does not hold is ignored by `decide`, a
pending hint of a saga without entries is dropped by the sweeper, a status entry is
filtered by `list`). What only a saved write may remove (its previous status entry,
the correlation entries of a saga that finished) is removed when its outbox is
acknowledged; a crash before leaves a stale entry, harmless in the same way.

A pending-outbox hint names the write (`<saga_id>|<version>`), not only the saga:
the acknowledgment of version 3 drops only the hint of version 3, so it can never
drop the hint of a version-4 write racing it on another slot, and the sweeper drops
a hint once its saga holds no entry and is at that version or later.

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

import hashlib
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, Protocol

import orjson
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisError

from saga_worker.engine.state import TERMINAL, SagaState, to_ms
from saga_worker.errors import StoreUnavailableError
from saga_worker.runtime.keys import (
    OUTBOX_PREFIX,
    TIMER_SEPARATOR,
    KeySpace,
)
from saga_worker.runtime.redis_client import RedisClient, is_cluster
from saga_worker.runtime.replica_wait import ReplicaWait
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


DEFLATE_LEVEL = 1  # the fastest: higher levels gain a few percent on a saga's JSON


def encode_state(state: SagaState) -> bytes:
    """A saga's state as stored: JSON, deflated once the saga finished. A finished saga
    is kept for the whole retention and read rarely, so its deflated state (about a
    third of the JSON of the sample's) costs one compression per saga; a running
    saga's, rewritten at every step, stays plain."""
    raw = orjson.dumps(state.to_dict())
    if state.finished:
        deflated = zlib.compress(raw, DEFLATE_LEVEL)
        if len(deflated) < len(raw):
            return deflated
    return raw


def decode_state(raw: bytes) -> SagaState:
    """The inverse of encode_state: JSON starts with `{`, a zlib stream never does."""
    return SagaState.from_dict(orjson.loads(raw if raw[:1] == b"{" else zlib.decompress(raw)))


def _script(name: str) -> str:
    return resources.files("saga_worker.runtime").joinpath(f"lua/{name}.lua").read_text()


SCRIPTS = ("load_sagas", "save_sagas", "ack_sagas", "claim_timers", "read_outboxes", "index_ops")
# Sent whole (EVAL) rather than by digest: a hint call must never fail with NOSCRIPT
# (a restarted or promoted node has no script cache) while the saga call behind it in
# the same pipeline runs. It is short.
INLINE = frozenset({"index_ops"})

Call = tuple[str, list[str], list[Any]]  # script name, KEYS, ARGV


class _IndexOps:
    """Index hint operations (lua/index_ops.lua), one call per group of keys."""

    def __init__(self, group: Any) -> None:
        self._group = group
        self._calls: dict[int, tuple[list[str], dict[str, int], list[Any]]] = {}

    def add(self, kind: str, key: str, member: str, value: object = "") -> None:
        keys, position, args = self._calls.setdefault(self._group(key), ([], {}, []))
        at = position.get(key)
        if at is None:
            keys.append(key)
            at = position[key] = len(keys)
        args += [kind, at, member, value]

    def calls(self) -> list[Call]:
        return [("index_ops", keys, args) for keys, _, args in self._calls.values()]


class RedisSagaStore:
    def __init__(
        self,
        redis: RedisClient,
        keys: KeySpace | None = None,
        *,
        retention: timedelta = timedelta(days=7),
        start_retention: timedelta = timedelta(days=90),
        timer_lease: timedelta = timedelta(seconds=30),
        replicas: int | None = 0,  # None: adaptive (runtime/replica_wait.py)
        replica_timeout: timedelta = timedelta(seconds=1),
        cluster: bool | None = None,  # None: as the client is
    ) -> None:
        self._redis = redis
        self._cluster = is_cluster(redis) if cluster is None else cluster
        self._keys = keys or KeySpace()
        self._retention_ms = int(retention.total_seconds() * 1000)
        self._start_retention_ms = int(start_retention.total_seconds() * 1000)
        self._lease_ms = int(timer_lease.total_seconds() * 1000)
        self._source = {name: _script(name) for name in SCRIPTS}
        self._sha = {n: hashlib.sha1(s.encode()).hexdigest() for n, s in self._source.items()}  # noqa: S324 - Redis names scripts by SHA-1
        # The sweeper's last read: the pending hints it found per saga, for defer_outboxes.
        self._hints: dict[str, list[tuple[int, str, bool]]] = {}
        self._replicas = ReplicaWait(redis, replicas)
        self._replica_timeout_ms = int(replica_timeout.total_seconds() * 1000)

    @property
    def keys(self) -> KeySpace:
        return self._keys

    @property
    def replicas(self) -> ReplicaWait:
        return self._replicas

    # -- grouping --------------------------------------------------------------------

    def _group(self, key: str) -> int:
        """Keys of one call: one hash slot on a cluster; everything on a single Redis."""
        return key_slot(key.encode()) if self._cluster else 0

    def _by_slot(self, saga_ids: Iterable[str]) -> list[list[str]]:
        groups: dict[int, list[str]] = {}
        for saga_id in saga_ids:
            groups.setdefault(self._group(self._keys.saga(saga_id)), []).append(saga_id)
        return list(groups.values())

    async def _run(self, calls: Sequence[Call], *, replicated: bool = False) -> list[Any]:
        """The calls in one pipeline, in order on a single Redis (per node on a cluster).
        A call a node has no cached script for is sent again whole. `replicated`: then
        WAIT on every node written until `replicas` replicas have the calls' writes."""
        if not calls:
            return []
        replicated = replicated and not self._replicas.off
        try:
            results = await self._pipeline(calls, replicated=replicated)
            missing = [n for n, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:
                again = await self._pipeline(
                    [calls[n] for n in missing], inline=True, replicated=replicated
                )
                for n, result in zip(missing, again, strict=True):
                    results[n] = result
        except RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc
        for result in results:
            if isinstance(result, RedisError):
                raise StoreUnavailableError(f"redis: {result}") from result
            if isinstance(result, Exception):
                raise result
        return results

    async def _pipeline(
        self, calls: Sequence[Call], *, inline: bool = False, replicated: bool = False
    ) -> list[Any]:
        waits = await self._waits(calls) if replicated else []
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, keys, args in calls:
                if inline or name in INLINE:
                    pipe.execute_command("EVAL", self._source[name], len(keys), *keys, *args)
                else:
                    pipe.execute_command("EVALSHA", self._sha[name], len(keys), *keys, *args)
            # WAIT behind the writes, on the connection (the node) that sent them.
            for _, node, wanted in waits:
                target = {} if node is None else {"target_nodes": node}
                pipe.execute_command("WAIT", wanted, self._replica_timeout_ms, **target)
            results = list(await pipe.execute(raise_on_error=False))
        if waits:
            for (name, node, wanted), acked in zip(waits, results[-len(waits) :], strict=True):
                if isinstance(acked, Exception):
                    raise acked
                if not await self._replicas.enough(name, node, int(acked), wanted):
                    raise StoreUnavailableError(
                        f"redis: {acked} of {wanted} replicas of {name} confirmed the batch's "
                        f"writes within {self._replica_timeout_ms} ms (SAGA_REDIS_REPLICAS)"
                    )
            results = results[: -len(waits)]
        return results

    async def _waits(self, calls: Sequence[Call]) -> list[tuple[str, Any, int]]:
        """(node name, node, replicas to wait for) of every node the calls write; a node
        with nothing to wait for is left out."""
        nodes: dict[str, Any] = {}
        if not self._cluster:
            nodes["redis"] = None
        else:
            for _, keys, _ in calls:
                node = self._redis.get_node_from_key(keys[0])  # type: ignore[union-attr]
                if node is not None:
                    nodes[node.name] = node
        waits = [
            (name, node, await self._replicas.wanted(name, node)) for name, node in nodes.items()
        ]
        return [w for w in waits if w[2] > 0]

    # One script call per slot (per batch on a single Redis) for each of load, save and
    # acknowledge: per-command costs in the client would otherwise dominate.

    async def load(
        self, wanted: Mapping[str, Sequence[str]], starts: Collection[str] = ()
    ) -> dict[str, Loaded]:
        if not wanted:
            return {}
        groups = self._by_slot(wanted)
        calls: list[Call] = []
        for ids in groups:
            keys: list[str] = []
            args: list[Any] = []
            for saga_id in ids:
                marked = saga_id in starts
                keys.append(self._keys.saga(saga_id))
                if marked:
                    keys.append(self._keys.start_marker(saga_id))
                args += [len(wanted[saga_id]), "1" if marked else "0", *wanted[saga_id]]
            calls.append(("load_sagas", keys, args))
        loaded: dict[str, Loaded] = {}
        for ids, rows in zip(groups, await self._run(calls), strict=True):
            for saga_id, row in zip(ids, rows, strict=True):
                version, raw, marker, *seen_flags = row
                state = decode_state(raw) if raw is not None else None
                seen = frozenset(
                    m
                    for m, flag in zip(wanted[saga_id], seen_flags, strict=True)
                    if flag is not None
                )
                start_marker = _text(marker) if marker is not None else None
                loaded[saga_id] = Loaded(state, int(version or 0), seen, start_marker)
        return {saga_id: loaded[saga_id] for saga_id in wanted}

    async def save(self, writes: Sequence[SagaWrite]) -> set[str]:
        if not writes:
            return set()
        keys = self._keys
        hints = _IndexOps(self._group)
        by_id = {w.saga_id: w for w in writes}
        for w in writes:
            state, shard = w.state, keys.shard(w.saga_id)
            updated = to_ms(state.updated_at)  # the `now` the engine computed due times from
            if w.outbox:
                member = _member(w.saga_id, str(w.expected_version + 1))
                hints.add("Z", keys.pending_outboxes(shard), member, updated)
            for timer, due in w.timers_set.items():
                delay = max(to_ms(due) - updated, 0)
                hints.add("T", keys.timers(shard), _member(w.saga_id, timer), delay)
            if state.status.value != w.previous_status:
                hints.add("Z", keys.by_status(state.status.value, shard), w.saga_id, updated)
            for entry in w.index_add:
                hints.add("S", keys.wait_index(*entry), w.saga_id)
        groups = self._by_slot(by_id)
        sagas: list[Call] = []
        for ids in groups:
            args: list[Any] = [self._retention_ms, self._start_retention_ms]
            saga_keys: list[str] = []
            for saga_id in ids:
                w = by_id[saga_id]
                saga_keys += [keys.saga(saga_id), keys.start_marker(saga_id)]
                args += [
                    w.expected_version,
                    encode_state(w.state),
                    "1" if w.state.finished else "0",
                    w.start_digest or "",
                    len(w.consumed),
                    len(w.outbox),
                    *w.consumed,
                ]
                for out in w.outbox:
                    args += [out.message_id, out.to_bytes()]
            sagas.append(("save_sagas", saga_keys, args))
        if self._cluster:  # nodes answer a pipeline concurrently: hints first, then sagas
            await self._run(hints.calls(), replicated=True)
            results = await self._run(sagas, replicated=True)
        else:  # one connection runs a pipeline in order
            hint_calls = hints.calls()
            results = (await self._run([*hint_calls, *sagas], replicated=True))[len(hint_calls) :]
        lost: set[str] = set()
        for ids, versions in zip(groups, results, strict=True):
            lost.update(s for s, v in zip(ids, versions, strict=True) if int(v) < 0)
        return lost

    async def acknowledged(self, writes: Sequence[SagaWrite]) -> None:
        keys = self._keys
        ops = _IndexOps(self._group)
        outboxes: dict[str, list[str]] = {}
        for w in writes:
            shard = keys.shard(w.saga_id)
            if w.outbox:
                outboxes[w.saga_id] = [e.message_id for e in w.outbox]
                member = _member(w.saga_id, str(w.expected_version + 1))
                ops.add("z", keys.pending_outboxes(shard), member)
            for timer in sorted(w.timers_cancelled):
                ops.add("z", keys.timers(shard), _member(w.saga_id, timer))
            previous = w.previous_status
            if previous and previous != w.state.status.value:
                ops.add("z", keys.by_status(previous, shard), w.saga_id)
            for entry in w.index_remove:
                ops.add("s", keys.wait_index(*entry), w.saga_id)
        await self._run([*self._hdel_calls(outboxes), *ops.calls()])

    def _hdel_calls(self, outboxes: Mapping[str, Sequence[str]]) -> list[Call]:
        calls: list[Call] = []
        for ids in self._by_slot(outboxes):
            args: list[Any] = []
            for saga_id in ids:
                args += [len(outboxes[saga_id]), *outboxes[saga_id]]
            calls.append(("ack_sagas", [self._keys.saga(s) for s in ids], args))
        return calls

    async def claim_due_timers(self, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` due timers from each index shard."""
        calls: list[Call] = [
            ("claim_timers", [self._keys.timers(shard)], [self._lease_ms, limit])
            for shard in self._keys.all_shards
        ]
        return [_split(m) for members in await self._run(calls) for m in members]

    async def release_timers(
        self,
        done: Iterable[tuple[str, str]],
        deferred: Iterable[tuple[str, str]] = (),
        *,
        retry_after: timedelta = timedelta(0),
    ) -> None:
        ops = _IndexOps(self._group)
        retry_ms = int(retry_after.total_seconds() * 1000)
        for saga_id, timer in deferred:
            ops.add(
                "D", self._keys.timers(self._keys.shard(saga_id)), _member(saga_id, timer), retry_ms
            )
        for saga_id, timer in done:
            ops.add("z", self._keys.timers(self._keys.shard(saga_id)), _member(saga_id, timer))
        await self._run(ops.calls())

    async def stale_outboxes(self, older_than: datetime, limit: int) -> StaleOutboxes:
        """Reads the pending hints of every shard older than `older_than`, page by page
        (at most 10 * limit hints per call; later calls go on), the outboxes of their
        sagas, and drops on the way the hints of sagas gone, or at the hint's version or
        later and holding no entry, so dead hints never fill the limit and hide live ones."""
        keys = self._keys
        found = StaleOutboxes()
        self._hints = {}
        offsets = dict.fromkeys(keys.all_shards, 0)
        looked = 0
        while offsets and len(found) < limit and looked < 10 * limit:
            page = min(limit, 10 * limit - looked)
            shards = list(offsets)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for shard in shards:
                        pipe.zrangebyscore(
                            keys.pending_outboxes(shard),
                            "-inf",
                            to_ms(older_than),
                            start=offsets[shard],
                            num=page,
                        )
                    pages = await pipe.execute()
            except RedisError as exc:
                raise StoreUnavailableError(f"redis: {exc}") from exc
            hints = [
                (shard, _text(m))
                for shard, members in zip(shards, pages, strict=True)
                for m in members
            ]
            for shard, members in zip(shards, pages, strict=True):
                if len(members) < page:
                    del offsets[shard]
            if not hints:
                break
            looked += len(hints)
            outboxes = await self._read_outboxes({_split(m)[0] for _, m in hints})
            dead = _IndexOps(self._group)
            for shard, member in hints:
                saga_id, _, version = member.partition(TIMER_SEPARATOR)
                current, entries = outboxes[saga_id]
                if current is None or (not entries and current >= int(version or 0)):
                    dead.add("z", keys.pending_outboxes(shard), member)
                    continue
                if shard in offsets:
                    offsets[shard] += 1  # kept: the next page starts after it
                # no entries yet, at an earlier version: that write is on its way
                if entries and (saga_id in self._hints or len(found) < limit):
                    self._take(found, saga_id, entries)
                    # the entries read include every one of this hint's write if the
                    # saga is at its version or later: republished, the hint may go
                    done = current >= int(version or 0)
                    self._hints.setdefault(saga_id, []).append((shard, member, done))
            await self._run(dead.calls())
        return found

    def _take(self, found: StaleOutboxes, saga_id: str, entries: dict[bytes, bytes]) -> None:
        if saga_id in found.entries or saga_id in found.unreadable:
            return
        try:
            found.entries[saga_id] = [
                OutboxEntry.from_bytes(f.decode()[len(OUTBOX_PREFIX) :], raw)
                for f, raw in entries.items()
            ]
        except (ValueError, TypeError) as exc:  # orjson's errors are ValueErrors
            found.unreadable[saga_id] = f"unreadable outbox entry: {exc!r}"[:300]

    async def _read_outboxes(
        self, saga_ids: Collection[str]
    ) -> dict[str, tuple[int | None, dict[bytes, bytes]]]:
        groups = self._by_slot(saga_ids)
        calls: list[Call] = [
            ("read_outboxes", [self._keys.saga(s) for s in ids], []) for ids in groups
        ]
        read: dict[str, tuple[int | None, dict[bytes, bytes]]] = {}
        for ids, rows in zip(groups, await self._run(calls), strict=True):
            for saga_id, (version, flat) in zip(ids, rows, strict=True):
                entries = dict(zip(flat[::2], flat[1::2], strict=True))
                read[saga_id] = (int(version) if version else None, entries)
        return read

    async def holding_outbox_entries(self, saga_ids: Collection[str]) -> set[str]:
        """Which of these sagas hold outbox entries not yet acknowledged (for checks)."""
        read = await self._read_outboxes(saga_ids)
        return {saga_id for saga_id, (_, entries) in read.items() if entries}

    async def defer_outboxes(self, saga_ids: Iterable[str], until: datetime) -> None:
        ops = _IndexOps(self._group)
        for saga_id in saga_ids:
            for shard, member, _ in self._hints.get(saga_id, ()):
                # XX: a hint dropped meanwhile (its outbox cleared) must not come back.
                ops.add("X", self._keys.pending_outboxes(shard), member, to_ms(until))
        await self._run(ops.calls())

    async def clear_outboxes(self, republished: Mapping[str, Sequence[str]]) -> None:
        ops = _IndexOps(self._group)
        for saga_id in republished:
            for shard, member, done in self._hints.get(saga_id, ()):
                if done:  # else the next sweep drops it, once its write is in
                    ops.add("z", self._keys.pending_outboxes(shard), member)
        await self._run([*self._hdel_calls(republished), *ops.calls()])

    async def forget_expired(self, updated_before: datetime) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for shard in self._keys.all_shards:
                    for status in TERMINAL:
                        pipe.zremrangebyscore(
                            self._keys.by_status(status.value, shard), "-inf", to_ms(updated_before)
                        )
                await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc

    async def index_sizes(self, statuses: Sequence[str]) -> tuple[int, int, list[int]]:
        """(pending-outbox hints, timers, sagas listed in each of `statuses`), summed over
        every shard, in one pipeline."""
        per_shard = 2 + len(statuses)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for shard in self._keys.all_shards:
                    pipe.zcard(self._keys.pending_outboxes(shard))
                    pipe.zcard(self._keys.timers(shard))
                    for status in statuses:
                        pipe.zcard(self._keys.by_status(status, shard))
                sizes = [int(n) for n in await pipe.execute()]
        except RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc
        column = [sum(sizes[n::per_shard]) for n in range(per_shard)]
        return column[0], column[1], column[2:]


def _member(saga_id: str, suffix: str) -> str:
    return f"{saga_id}{TIMER_SEPARATOR}{suffix}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _split(member: bytes | str) -> tuple[str, str]:
    saga_id, _, rest = _text(member).partition(TIMER_SEPARATOR)
    return saga_id, rest
