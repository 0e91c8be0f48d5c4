"""How many replicas must confirm a batch's writes (WAIT) before its offsets commit.

Redis replication is asynchronous: a primary that dies before its replica got a write
loses it in the failover, while the batch's offsets may already be committed. The
store therefore WAITs on every node it wrote, for what this policy says:

- SAGA_REDIS_REPLICAS=N (strict): N replicas on every node. A node with fewer (a
  replica down, or a replica just promoted that has none yet) fails the batch, which
  is retried until they are back: durability over availability.
- unset (adaptive, the default): one replica on every node that has one, none on a
  node that has none. A node's count is read (INFO replication) when first written,
  again when a WAIT comes back short, and every RECHECK_S while it has none, so a
  replica that returns is waited for again. A promoted replica with no replica of its
  own keeps taking writes, unwaited, rather than stopping its slots: availability,
  with the durability of its AOF alone until a replica joins (logged once per node).
- 0: never WAIT.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from saga_worker.runtime.redis_client import RedisClient, is_cluster

log = logging.getLogger(__name__)

RECHECK_S = 5.0


class ReplicaWait:
    def __init__(
        self,
        redis: RedisClient,
        configured: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._configured = configured
        self._clock = clock
        self._known: dict[str, tuple[int, float]] = {}  # node -> (replicas, read at)

    @property
    def off(self) -> bool:
        return self._configured == 0

    def describe(self) -> str:
        return "adaptive" if self._configured is None else str(self._configured)

    async def wanted(self, name: str, node: Any) -> int:
        """The replicas to WAIT for on `node` (None on a single Redis), named `name`."""
        if self._configured is not None:
            return self._configured
        known = self._known.get(name)
        if known is None or (known[0] == 0 and self._clock() - known[1] >= RECHECK_S):
            return min(1, await self._read(name, node))
        return min(1, known[0])

    async def enough(self, name: str, node: Any, acked: int, wanted: int) -> bool:
        """Whether `acked` confirmations of a WAIT for `wanted` will do."""
        if acked >= wanted:
            return True
        if self._configured is not None:
            return False
        # Short: a replica left (or its node was promoted and has none yet), or lags.
        return acked >= min(1, await self._read(name, node))

    async def _read(self, name: str, node: Any) -> int:
        if is_cluster(self._redis):
            info = await self._redis.info("replication", target_nodes=node)
            if isinstance(info, dict) and name in info and isinstance(info[name], dict):
                info = info[name]
        else:
            info = await self._redis.info("replication")
        count = int(info.get("connected_slaves", 0))
        before = self._known.get(name)
        self._known[name] = (count, self._clock())
        if count == 0 and before is not None and before[0] > 0:
            log.warning(
                "a Redis primary has no replica: its writes are not waited for until one joins",
                extra={"node": name},
            )
        return count
