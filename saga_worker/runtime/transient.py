"""Whether an exception is worth retrying: the runtime's one answer, given at the adapter.

`errors.is_transient` reads our own `retriable` flag (and aiokafka's, which its errors
share). The libraries leave some transient failures unmarked, and the error tree may
not import them, so they are named here:

- aiokafka's `KafkaTimeoutError` (its `retriable` is False, yet a timed-out send or
  request is exactly what trying again may fix);
- redis-py's `ConnectionError` and `TimeoutError` (not the builtins of the same names);
- a Redis server that refuses for a while (`OOM`, `READONLY`, `BUSY`, `LOADING`,
  `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`): the state passes, the command was fine.

The consumer loop and the orchestrator's background loops ask `worth_retrying`; the
participants' stores raise `EffectStoreUnavailableError` for `redis_refused_for_now`.
"""

from __future__ import annotations

from aiokafka.errors import KafkaTimeoutError
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from saga_worker.errors import is_transient

# Error codes (the reply's first word) of a Redis that refuses for now, not for good.
REDIS_TRANSIENT_CODES = frozenset(
    {"OOM", "READONLY", "BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"}
)


def redis_refused_for_now(exc: object) -> bool:
    """A Redis error reply whose code says the server, not the command, is the problem."""
    if not isinstance(exc, RedisError):
        return False
    # redis-py maps some codes to classes (MasterDownError is a ClusterDownError) and
    # strips the code from their message; the others keep it as their first word.
    mapped = OutOfMemoryError | ReadOnlyError | BusyLoadingError | TryAgainError | ClusterDownError
    if isinstance(exc, mapped):
        return True
    code = getattr(exc, "status_code", None) or str(exc).split(" ", 1)[0]
    return code in REDIS_TRANSIENT_CODES


def cluster_unreachable(exc: BaseException) -> bool:
    """The cluster client found no node that answers, or a slot without a primary (a
    failover under way): not the command's fault. Its other errors (keys of several
    slots in one call) are bugs and stay errors."""
    if isinstance(exc, SlotNotCoveredError):
        return True
    return isinstance(exc, RedisClusterException) and (
        "cannot be connected" in str(exc) or "could not agree" in str(exc)
    )


def worth_retrying(exc: BaseException) -> bool:
    """Whether trying the same work again, after a pause, may succeed."""
    return (
        is_transient(exc)
        or isinstance(exc, KafkaTimeoutError | RedisConnectionError | RedisTimeoutError)
        or redis_refused_for_now(exc)
        or cluster_unreachable(exc)
    )
