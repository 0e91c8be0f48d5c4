"""The states a processor saved last, so that a reply to one of them needs no load.

Four of a happy saga's five events are replies, each to the command the previous
event sent; the instance that sent the command usually receives the reply. This
cache keeps, for each saga it saved, the state and the version the save gave it,
and lets a reply be decided on that state without reading Redis.

It is a hint, never trusted: the save is a compare-and-set on the cached version,
so a saga that anyone else wrote since (a rebalance, a timer on another instance,
an operator) loses the race and is loaded and decided again. And it is used only
for what the engine itself proves new: a batch's replies for one saga are decided
on the cached state only if the engine applies every one of them. An applied reply
answers the command the saga awaits, and the engine moves a step out of that wait
once it takes an answer, so a reply it applies on the current state cannot have
been consumed before; the consumed message ids the load would have checked could
only have refused it too. Anything else (a start, an event, a timer, a reply the
engine would ignore or refuse) is loaded as before, so duplicates are counted and
dead-lettered exactly as without the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from saga_worker.engine.state import SagaState
from saga_worker.runtime.store import Loaded, SagaWrite

# Sagas kept: well above the sagas in flight through one instance, small in memory
# (a few KB each).
STATE_CACHE_SIZE = 4096


class StateCache:
    def __init__(self, size: int = STATE_CACHE_SIZE) -> None:
        self._size = size
        self._rows: OrderedDict[str, tuple[SagaState, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def row(self, saga_id: str) -> Loaded | None:
        """The saga as this processor last saved it, or None."""
        found = self._rows.get(saga_id)
        return None if found is None else Loaded(found[0], found[1])

    def saved(self, writes: Sequence[SagaWrite], lost: set[str]) -> None:
        """Records the writes that won their compare-and-set; forgets the others."""
        for w in writes:
            self._rows.pop(w.saga_id, None)
            # A finished saga takes no more replies; the save bumped the version by one.
            if w.saga_id not in lost and not w.state.finished:
                self._rows[w.saga_id] = (w.state, w.expected_version + 1)
        while len(self._rows) > self._size:
            self._rows.popitem(last=False)

    def forget(self, saga_ids: Sequence[str]) -> None:
        """Drops sagas whose save had an unknown outcome (the store raised)."""
        for saga_id in saga_ids:
            self._rows.pop(saga_id, None)
