"""Where handler participants' outcomes are recorded, and where their handlers run.

`HandlerStore.settle` takes a batch in two Redis round trips around the handlers:

1. read (one MGET) every command's stored outcome and every step's record;
2. decide each command not answered yet, each saga's commands in batch order,
   sagas concurrently: a repeated command is answered as stored; an action whose
   step already succeeded answers that result, one whose step was compensated
   first is refused (`already_compensated`), a compensation whose step was already
   compensated answers again; only the rest call their handler;
3. store the outcomes (one pipeline, one `lua/handler_store.lua` call per command,
   in batch order). Each call is atomic and never overwrites a stored outcome: if
   one is there (another worker got there first), that one is the answer.

A transient error (the handler raised, or a knob injected one) is answered
retryable and stored nowhere, so the next delivery or attempt calls the handler
again. So does a crash or a Redis failure between a handler and step 3: the
outside system then sees the same idempotency key (`step_key`) a second time,
which is what makes its effect happen once.

The records are the script participants' (`ParticipantKeys.reply`, `.effect`):

    reply  the outcome JSON, as protocol.parse_settled reads it (TTL: retention)
    effect {s: applied | compensated | tombstone, r: result JSON} (TTL: retention)

`StepRecords` is the seam to Redis: `RedisStepRecords`, and `MemoryStepRecords`
beside it for tests without Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from saga_worker.errors import EffectStoreUnavailableError
from saga_worker.observability.tracing import TRACER
from saga_worker.participant.effects import (
    REDIS_UNAVAILABLE,
    Pending,
    lua,
    settled_from_script,
)
from saga_worker.participant.handlers import HandlerParticipant, StepRefused, step_key
from saga_worker.participant.keys import ParticipantKeys
from saga_worker.participant.protocol import (
    Compensated,
    Completed,
    Failed,
    Fault,
    JsonObject,
    Kind,
    Outcome,
    Refuse,
    Settled,
    build_reply,
    idempotency_key,
    parse_settled,
)
from saga_worker.runtime.redis_client import RedisClient, run_script

log = logging.getLogger(__name__)

ALREADY_COMPENSATED = Failed(
    "already_compensated", "refused: this step was compensated before the action arrived", False
)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """What a step did: `applied` (with its result), `compensated` or `tombstone`."""

    state: str
    result: JsonObject = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes | None) -> StepRecord | None:
        if raw is None:
            return None
        body = orjson.loads(raw)
        return cls(str(body["s"]), orjson.loads(body.get("r") or "{}"))

    def encode(self) -> bytes:
        if self.state == "applied":
            return orjson.dumps({"s": self.state, "r": orjson.dumps(self.result).decode()})
        return orjson.dumps({"s": self.state})


def settle_step(
    kind: Kind, outcome: Outcome, record: StepRecord | None
) -> tuple[Outcome, StepRecord | None]:
    """Storing `outcome`: the outcome to answer and the step record after it.

    The step record has the last word for an action (an earlier attempt's result
    stands; a compensation that came first refuses it). lua/handler_store.lua
    does the same in Redis.
    """
    if kind is Kind.COMPENSATION:
        if not isinstance(outcome, Compensated):
            return outcome, record
        if record is None:
            return outcome, StepRecord("tombstone")
        if record.state == "applied":
            return outcome, StepRecord("compensated", record.result)
        return outcome, record
    if record is not None:
        return answer_of(record), record
    if isinstance(outcome, Completed):
        return outcome, StepRecord("applied", outcome.result)
    return outcome, record


def answer_of(record: StepRecord) -> Outcome:
    """An action of a step that has a record: its result stands, or a compensation
    came first and the action is refused."""
    return Completed(record.result) if record.state == "applied" else ALREADY_COMPENSATED


def outcome_json(outcome: Outcome) -> bytes:
    """The stored form of an outcome (the inverse of protocol.parse_settled)."""
    if isinstance(outcome, Completed):
        return orjson.dumps({"t": "completed", "r": orjson.dumps(outcome.result).decode()})
    if isinstance(outcome, Failed):
        body = {"t": "failed", "c": outcome.code, "e": outcome.error, "rt": outcome.retryable}
        return orjson.dumps(body)
    return orjson.dumps({"t": "compensated"})


@dataclass(frozen=True, slots=True)
class Write:
    """One outcome to store: a command's reply, and the step record it updates."""

    reply_key: str
    record_key: str
    kind: Kind
    outcome: Outcome


class StepRecords(Protocol):
    async def read(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of `keys` (None: absent), in one round trip."""
        ...

    async def write(self, writes: Sequence[Write]) -> list[Settled]:
        """Stores each write atomically, in order, in one round trip; never overwrites a
        stored outcome (then that one is returned, not fresh)."""
        ...


class RedisStepRecords:
    def __init__(self, redis: RedisClient, *, retention_ms: int) -> None:
        self._redis = redis
        self._retention_ms = retention_ms
        self._script = redis.register_script(lua("handler_store.lua"))
        self._refusal = outcome_json(ALREADY_COMPENSATED)

    async def read(self, keys: Sequence[str]) -> list[bytes | None]:
        try:
            # GETs in one pipeline, not MGET: on a cluster the keys span slots
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                values = await pipe.execute()
        except REDIS_UNAVAILABLE as exc:
            raise EffectStoreUnavailableError(f"redis: {exc}") from exc
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def write(self, writes: Sequence[Write]) -> list[Settled]:
        calls = [
            (
                [w.reply_key, w.record_key],
                [w.kind.value, outcome_json(w.outcome), self._refusal, str(self._retention_ms)],
            )
            for w in writes
        ]
        try:
            raw = await run_script(self._redis, self._script, calls)
        except REDIS_UNAVAILABLE as exc:
            raise EffectStoreUnavailableError(f"redis: {exc}") from exc
        return [settled_from_script(r) for r in raw]


class MemoryStepRecords:
    """The same records in a dict (no expiry), for tests without Redis."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def read(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.values.get(key) for key in keys]

    async def write(self, writes: Sequence[Write]) -> list[Settled]:
        settled: list[Settled] = []
        for w in writes:
            stored = self.values.get(w.reply_key)
            if stored is not None:
                settled.append(parse_settled(("stored", stored)))
                continue
            old = StepRecord.parse(self.values.get(w.record_key))
            outcome, record = settle_step(w.kind, w.outcome, old)
            if record is not None and record != old:
                self.values[w.record_key] = record.encode()
            self.values[w.reply_key] = outcome_json(outcome)
            settled.append(parse_settled(("new", self.values[w.reply_key])))
        return settled


@dataclass(frozen=True, slots=True)
class _Answer:
    """Answered without a write: a stored outcome, or a transient failure."""

    settled: Settled


@dataclass(frozen=True, slots=True)
class _Repeat:
    """The same command earlier in this batch: answered as that one is."""

    index: int


_Plan = _Answer | _Repeat | Write


@dataclass
class _Batch:
    """What one batch knows, updated in batch order as its commands are decided."""

    stored: dict[str, bytes]  # reply key -> outcome stored before this batch
    records: dict[str, StepRecord | None]  # record key -> the step's record so far
    planned: dict[str, int] = field(default_factory=dict)  # reply key -> index of its Write


class HandlerStore:
    """Settles a batch of a HandlerParticipant's commands (see the module docstring)."""

    def __init__(
        self,
        participant: HandlerParticipant,
        records: StepRecords,
        key_prefix: str,
        *,
        spread: bool = False,
    ) -> None:
        self._participant = participant
        self._records = records
        self._keys = ParticipantKeys(key_prefix, participant.name, spread)

    async def settle(self, pending: Sequence[Pending]) -> list[Settled]:
        if not pending:
            return []
        keys = [self._keys_of(p) for p in pending]
        flat = [key for pair in keys for key in pair]
        found = dict(zip(flat, await self._records.read(flat), strict=True))
        batch = _Batch(
            stored={reply: raw for reply, _ in keys if (raw := found[reply]) is not None},
            records={record: StepRecord.parse(found[record]) for _, record in keys},
        )
        plans: list[_Plan | None] = [None] * len(pending)

        async def one_saga(indexes: list[int]) -> None:
            for i in indexes:
                plans[i] = await self._plan(pending[i], *keys[i], batch, i)

        by_saga: dict[str, list[int]] = {}
        for i, p in enumerate(pending):
            by_saga.setdefault(p.command.saga_id, []).append(i)
        await asyncio.gather(*(one_saga(indexes) for indexes in by_saga.values()))

        writes = [(i, plan) for i, plan in enumerate(plans) if isinstance(plan, Write)]
        stored = await self._records.write([w for _, w in writes]) if writes else []
        written = {i: s for (i, _), s in zip(writes, stored, strict=True)}
        settled: list[Settled] = []
        for i, plan in enumerate(plans):
            if isinstance(plan, _Answer):
                settled.append(plan.settled)
            elif isinstance(plan, _Repeat):
                settled.append(Settled(written[plan.index].outcome, fresh=False))
            else:
                settled.append(written[i])
        return settled

    def _keys_of(self, p: Pending) -> tuple[str, str]:
        reply = self._keys.reply(idempotency_key(p.command, p.logical_topic), p.command.saga_id)
        return reply, self._keys.effect(p.command.saga_id, p.command.step_name)

    async def _plan(
        self, p: Pending, reply_key: str, record_key: str, batch: _Batch, index: int
    ) -> _Plan:
        if (stored := batch.stored.get(reply_key)) is not None:
            return _Answer(parse_settled(("stored", stored)))
        if (earlier := batch.planned.get(reply_key)) is not None:
            return _Repeat(earlier)
        if isinstance(p.verdict, Fault):
            return _Answer(Settled(p.verdict.as_failed(), fresh=False))
        record = batch.records[record_key]
        outcome = await self._outcome(p, record)
        if isinstance(outcome, Failed) and outcome.retryable:
            return _Answer(Settled(outcome, fresh=False))  # transient: not stored
        outcome, batch.records[record_key] = settle_step(p.kind, outcome, record)
        batch.planned[reply_key] = index
        return Write(reply_key, record_key, p.kind, outcome)

    async def _outcome(self, p: Pending, record: StepRecord | None) -> Outcome:
        """The step record's answer if it has one, else the handler's."""
        if p.kind is Kind.ACTION and record is not None:
            return answer_of(record)
        if p.kind is Kind.COMPENSATION and record is not None and record.state != "applied":
            return Compensated()  # an earlier compensation of this step called its handler
        if isinstance(p.verdict, Refuse):
            return Failed(p.verdict.code, p.verdict.error, retryable=False)
        return await self._call(p)

    async def _call(self, p: Pending) -> Outcome:
        handler = self._participant.routes[p.logical_topic]
        outcome: Outcome
        try:
            # The handler runs in a span of the saga's trace: its own spans, and those of
            # the instrumented clients it calls, join the trace.
            with TRACER.active(
                f"{self._participant.name} {p.logical_topic} handler",
                p.traceparent,
                {"saga_id": p.command.saga_id, "step": p.command.step_name},
            ):
                result: Any = await handler.handle(p.command, step_key(p.command))
            if p.kind is Kind.COMPENSATION:
                outcome = Compensated()
            else:
                outcome = Completed(_json_object(result))
        except StepRefused as exc:
            outcome = Failed(exc.code, exc.reason, retryable=False)
        except Exception as exc:  # transient, or a bug in the handler: retried, not stored
            log.exception(
                "handler failed",
                extra={
                    "saga_id": p.command.saga_id,
                    "step": p.command.step_name,
                    "command_id": p.command.command_id,
                },
            )
            return Fault.from_exception("handler_error", exc).as_failed()
        try:  # a reply that could never be sent must not be stored as the answer
            build_reply(p.command, p.logical_topic, outcome)
        except ValidationError as exc:
            log.error("handler answered something no reply can carry: %s", exc)
            return Fault.from_exception("handler_error", exc).as_failed()
        return outcome


def _json_object(result: Any) -> JsonObject:
    """The handler's result as the JSON it is stored as (None: {})."""
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise TypeError(f"a handler returns a dict or None, not {type(result).__name__}")
    value: JsonObject = orjson.loads(orjson.dumps(result))
    return value
