"""An in-memory SagaStore for the processor's unit tests: load, and save with its
compare-and-set on the version."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from saga_worker.engine.state import SagaState
from saga_worker.runtime.store import Loaded, SagaWrite


class MemoryStore:
    """Just the part of a SagaStore the processor uses: load and save. Like the Redis
    store it keeps consumed message ids until a saga finishes, and start markers apart
    from the sagas, so a saga can expire while its marker stays."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[SagaState, int]] = {}
        self.consumed: dict[str, set[str]] = {}
        self.markers: dict[str, str] = {}
        self.saved: list[SagaWrite] = []
        self.marker_loads: list[set[str]] = []  # the saga ids each load asked markers of
        self.loads: list[set[str]] = []  # the saga ids each load read

    async def load(
        self, wanted: Mapping[str, Sequence[str]], starts: Collection[str] = ()
    ) -> dict[str, Loaded]:
        self.marker_loads.append(set(starts))
        self.loads.append(set(wanted))
        out: dict[str, Loaded] = {}
        for saga_id, message_ids in wanted.items():
            state, version = self.rows.get(saga_id, (None, 0))
            consumed = self.consumed.get(saga_id, set())
            out[saga_id] = Loaded(
                state,
                version,
                frozenset(m for m in message_ids if m in consumed),
                self.markers.get(saga_id) if saga_id in starts else None,
            )
        return out

    async def save(self, writes: Sequence[SagaWrite]) -> set[str]:
        lost = {w.saga_id for w in writes if self.version(w.saga_id) != w.expected_version}
        writes = [w for w in writes if w.saga_id not in lost]
        for w in writes:
            self.rows[w.saga_id] = (w.state, w.expected_version + 1)
            if w.state.finished:
                self.consumed.pop(w.saga_id, None)
            else:
                self.consumed.setdefault(w.saga_id, set()).update(w.consumed)
            if w.expected_version == 0 and w.start_digest is not None:
                self.markers[w.saga_id] = w.start_digest
        self.saved += writes
        return lost

    def version(self, saga_id: str) -> int:
        return self.rows[saga_id][1] if saga_id in self.rows else 0

    def expire(self, saga_id: str) -> None:
        """The saga's retention ran out: its hash is gone, its start marker is not."""
        del self.rows[saga_id]
        self.consumed.pop(saga_id, None)
