"""What a participant is: its command topics, a pure `prepare` per topic, a Lua body.

Writing a participant means writing these, not plumbing:

    Participant(
        name="inventory",
        routes={RESERVE_ITEMS: Route(ReserveItems, Kind.ACTION, prepare_reserve),
                RELEASE_RESERVATION: Route(ReleaseReservation, Kind.COMPENSATION)},
        script=Path(__file__).parent / "lua/inventory.lua",
                                         # apply(args, effect_json), undo(effect, effect_json)
        domain_keys=lambda prefix: ...,  # KEYS[3..] of the script, under one hash tag
    )

`prepare` validates what needs no state (a declined card, a malformed address)
and says what the effect and the result will be; the Lua body checks what needs
state (stock, balances) and applies the effect, or refuses. A Lua body must check
everything before it writes anything: a script that raises half-way is not rolled
back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from saga_worker.participant.protocol import Apply, Kind, Verdict
from saga_worker.wire import SagaCommand

C = TypeVar("C", bound=SagaCommand)


def nothing_to_prepare(command: SagaCommand) -> Verdict:
    """Compensations work from the stored effect record; nothing to prepare."""
    return Apply()


@dataclass(frozen=True)
class Route(Generic[C]):
    model: type[C]
    kind: Kind
    prepare: Callable[[C], Verdict] = nothing_to_prepare


@dataclass(frozen=True)
class Participant:
    name: str
    routes: Mapping[str, Route[Any]]  # by logical topic
    # The Lua domain body: a Path is read from that file (anywhere: the user's own
    # package, not ours), a str is the Lua text itself.
    script: Path | str
    domain_keys: Callable[[str], tuple[str, ...]]  # key prefix -> KEYS[3..]

    def script_text(self) -> str:
        return self.script.read_text() if isinstance(self.script, Path) else self.script

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self.routes)
