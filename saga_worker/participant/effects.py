"""Where effects and replies are recorded: one composed Lua script per participant.

`EffectStore.settle` runs a batch of commands in ONE pipelined round trip, one
script call per command, in batch order (so one saga's commands keep their
order). Each call is atomic: the domain effect, the step's effect record and the
command's stored outcome are written together or not at all.

`Settler` is the seam the worker settles a batch through: `EffectStore` for script
participants, `handler_store.HandlerStore` for handler participants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from saga_worker.errors import EffectStoreUnavailableError
from saga_worker.participant.definition import Participant
from saga_worker.participant.keys import ParticipantKeys
from saga_worker.participant.protocol import (
    Fault,
    Kind,
    Settled,
    Verdict,
    idempotency_key,
    parse_settled,
    script_args,
)
from saga_worker.runtime.redis_client import RedisClient, is_cluster, run_script
from saga_worker.runtime.transient import redis_refused_for_now
from saga_worker.wire import SagaCommand

# Redis did not answer: the batch is tried again (EffectStoreUnavailableError).
REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class Pending:
    """One decoded command on its way to the store. For a handler participant the
    verdict is Apply() (call the handler) unless a knob injected a Refuse or a Fault."""

    command: SagaCommand
    logical_topic: str
    kind: Kind
    verdict: Verdict
    traceparent: str | None = None  # the record's, well-formed or None


class Settler(Protocol):
    """Settles a batch: each command's outcome, in batch order, recorded or found in
    Redis. Raises EffectStoreUnavailableError (retriable) when Redis does not answer."""

    async def settle(self, pending: Sequence[Pending]) -> list[Settled]: ...


def lua(name: str) -> str:
    return resources.files("saga_worker.participant").joinpath(f"lua/{name}").read_text()


def compose_script(participant: Participant) -> str:
    """prologue (stored replies, faults) .. the domain body .. epilogue (the protocol)."""
    return "\n".join((lua("prologue.lua"), participant.script_text(), lua("epilogue.lua")))


class EffectStore:
    def __init__(
        self, redis: RedisClient, participant: Participant, key_prefix: str, *, retention_ms: int
    ) -> None:
        self._redis = redis
        self._domain_keys = list(participant.domain_keys(key_prefix))
        # records by saga on a cluster, unless they must share the domain keys' slot
        spread = is_cluster(redis) and not self._domain_keys
        self._keys = ParticipantKeys(key_prefix, participant.name, spread)
        self._retention_ms = retention_ms
        self._script = redis.register_script(compose_script(participant))

    async def settle(self, pending: Sequence[Pending]) -> list[Settled]:
        if not pending:
            return []
        calls = [
            (
                [
                    self._keys.reply(
                        idempotency_key(p.command, p.logical_topic), p.command.saga_id
                    ),
                    self._keys.effect(p.command.saga_id, p.command.step_name),
                    *self._domain_keys,
                ],
                script_args(p.kind, p.verdict, self._retention_ms),
            )
            for p in pending
        ]
        try:
            raw = await run_script(self._redis, self._script, calls)
        except REDIS_UNAVAILABLE as exc:
            raise EffectStoreUnavailableError(f"redis: {exc}") from exc
        return [settled_from_script(r) for r in raw]


def settled_from_script(raw: object) -> Settled:
    if redis_refused_for_now(raw):
        # Out of memory, read-only, loading...: the server's state, not the step's. The
        # batch is retried (nothing is answered), rather than burning the saga's retries.
        raise EffectStoreUnavailableError(f"redis: {raw!r}") from (
            raw if isinstance(raw, BaseException) else None
        )
    if isinstance(raw, ResponseError | RedisError):
        # A script that raised wrote nothing it had not checked; answer retryable.
        return Settled(Fault.from_exception("internal_error", raw).as_failed(), fresh=False)
    return parse_settled(raw)
