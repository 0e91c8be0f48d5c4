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

Each wait step's correlation index is a set, `<ns>wait:<saga type>:<step>:<value>`,
of the ids of the sagas whose data holds that value (runtime/correlation.py). The
save script that creates a saga adds it and the one that finishes it removes it.

The global sorted sets below are hints: written before the saga's own state and
always checked against it, so a stale entry costs a no-op, never a wrong step.
"""

from __future__ import annotations

from dataclasses import dataclass

OUTBOX_PREFIX = "o:"  # the other fields are named only in the Lua scripts (lua/*.lua)
TIMER_SEPARATOR = "|"  # saga ids are derived ids and never contain it


@dataclass(frozen=True)
class KeySpace:
    namespace: str = "saga-worker:"

    def saga(self, saga_id: str) -> str:
        return f"{self.namespace}saga:{{{saga_id}}}"

    def start_marker(self, saga_id: str) -> str:
        """STRING: the digest of the start message that created the saga (see above)."""
        return f"{self.namespace}start:{{{saga_id}}}"

    def wait_index(self, saga_type: str, step: str, token: str) -> str:
        """SET of the saga ids a wait step's event with this value names (see above)."""
        return f"{self.namespace}wait:{saga_type}:{step}:{token}"

    @property
    def saga_affixes(self) -> tuple[str, str]:
        """What comes before and after the saga id in `saga(id)`, for scripts that
        derive saga keys from the ids an index holds."""
        prefix, _, suffix = self.saga("\n").partition("\n")
        return prefix, suffix

    @property
    def timers(self) -> str:
        """ZSET of `<saga_id>|<timer_id>` scored by due time (epoch ms, Redis's clock)."""
        return f"{self.namespace}timers"

    @property
    def pending_outboxes(self) -> str:
        """ZSET of saga ids whose outbox may hold entries, scored by first write (ms)."""
        return f"{self.namespace}outbox:pending"

    @property
    def measurer(self) -> str:
        """STRING: the orchestrator instance that measures and exports the Redis-wide
        gauges (backlogs, sagas per status), with a time to live it renews each sweep."""
        return f"{self.namespace}metrics:measurer"

    def by_status(self, status: str) -> str:
        """ZSET of saga ids last seen in `status`, scored by update time (ms)."""
        return f"{self.namespace}status:{status}"

    @property
    def saga_pattern(self) -> str:
        return f"{self.namespace}saga:*"
