"""Every Redis key the orchestrator uses, named in one place.

A saga lives in ONE hash, `<ns>saga:{<saga_id>}`, so its state, version, consumed
message ids and outbox change together in one script and share one cluster slot:

    v         the version, bumped by every write (compare-and-set)
    s         the state, as orjson
    m:<id>    a consumed message id (dropped when the saga finishes)
    o:<id>    an outbox entry not yet acknowledged by Kafka

Beside it, with the same hash tag, `<ns>start:{<saga_id>}` is the saga's start
marker: a digest of the start message's body (32 hex characters), set in the same
script that creates the saga and kept SAGA_START_RETENTION_S, renewed when the saga
finishes, so it outlives the saga's hash. A repeated start is recognised by it after
the saga expired, and a different start for the same business key is refused.

Each wait step's correlation index is a set of the ids of the sagas whose data holds
a value (runtime/correlation.py), in the index shard its (saga type, step, value)
hashes to: `<ns>idx{<k>}:wait:<saga type>:<step>:<value>`.

The global indexes are split into SAGA_INDEX_SHARDS shards, each under its own hash
tag `idx{<k>}`, so on Redis Cluster every index shard is one slot and no slot carries
all the traffic; a saga's timers, pending-outbox hints and status entries live in the
shard its id hashes to (`shard`), and every reader (the timer task, the sweeper, the
CLI) reads every shard:

    <ns>idx{<k>}:timers            ZSET `<saga_id>|<timer_id>` by due time
    <ns>idx{<k>}:outbox:pending    ZSET `<saga_id>|<version>` by the write's time
    <ns>idx{<k>}:status:<status>   ZSET saga ids by update time

They are hints, written before the saga's own state (store.py) and always checked
against it, so a stale entry costs a no-op, and one a saga needs is never missing.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

OUTBOX_PREFIX = "o:"  # the other fields are named only in the Lua scripts (lua/*.lua)
TIMER_SEPARATOR = "|"  # saga ids are derived ids and never contain it


DEFAULT_INDEX_SHARDS = 4


def shard_of(text: str, shards: int) -> int:
    """A stable shard number in [0, shards): the same in every process and version."""
    return zlib.crc32(text.encode()) % shards if shards > 1 else 0


@dataclass(frozen=True)
class KeySpace:
    namespace: str = "saga-worker:"
    shards: int = DEFAULT_INDEX_SHARDS  # of every global index (SAGA_INDEX_SHARDS)

    def saga(self, saga_id: str) -> str:
        return f"{self.namespace}saga:{{{saga_id}}}"

    def start_marker(self, saga_id: str) -> str:
        """STRING: the digest of the start message that created the saga (see above)."""
        return f"{self.namespace}start:{{{saga_id}}}"

    def shard(self, saga_id: str) -> int:
        """The index shard of a saga's timers, outbox hints and status entries."""
        return shard_of(saga_id, self.shards)

    def index(self, shard: int) -> str:
        """The prefix, with its hash tag, of every key of one index shard."""
        return f"{self.namespace}idx{{{shard}}}:"

    def wait_index(self, saga_type: str, step: str, token: str) -> str:
        """SET of the saga ids a wait step's event with this value names (see above)."""
        shard = shard_of(f"{saga_type}:{step}:{token}", self.shards)
        return f"{self.index(shard)}wait:{saga_type}:{step}:{token}"

    @property
    def saga_affixes(self) -> tuple[str, str]:
        """What comes before and after the saga id in `saga(id)`, for scripts that
        derive saga keys from the ids an index holds."""
        prefix, _, suffix = self.saga("\n").partition("\n")
        return prefix, suffix

    def timers(self, shard: int) -> str:
        """ZSET of `<saga_id>|<timer_id>` scored by due time (epoch ms, Redis's clock)."""
        return f"{self.index(shard)}timers"

    def pending_outboxes(self, shard: int) -> str:
        """ZSET of `<saga_id>|<version>`: the write of that version put entries in the
        saga's outbox, scored by the write's time (ms)."""
        return f"{self.index(shard)}outbox:pending"

    def by_status(self, status: str, shard: int) -> str:
        """ZSET of saga ids last seen in `status`, scored by update time (ms)."""
        return f"{self.index(shard)}status:{status}"

    @property
    def all_shards(self) -> range:
        return range(self.shards)

    @property
    def measurer(self) -> str:
        """STRING: the orchestrator instance that measures and exports the Redis-wide
        gauges (backlogs, sagas per status), with a time to live it renews each sweep."""
        return f"{self.namespace}metrics:measurer"

    @property
    def saga_pattern(self) -> str:
        return f"{self.namespace}saga:*"
