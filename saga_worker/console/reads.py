"""What the console's overview shows, read through the CLI's own operations.

Exact figures come from the indexes (sagas per state, outbox and timer backlog), the
consumer groups' committed offsets and the dead-letter topic. Per-minute figures and
the split by saga type come from the sagas updated in the last WINDOW, read through
`Operations.list` (at most SAMPLE of them; the page says so when it read no more).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from aiokafka.errors import KafkaError

from saga_worker.app import App
from saga_worker.cli.dlq import DeadLetterReadError, Letter, read_letters
from saga_worker.cli.operations import Operations, consumer_groups, dead_letter_topic
from saga_worker.engine.state import SagaState, SagaStatus
from saga_worker.runtime.kafka_admin import GroupLag, consumer_lag
from saga_worker.settings import Settings

WINDOW = timedelta(minutes=30)
SAMPLE = 2000  # sagas read for the per-minute chart and the split by type
LETTERS = 500  # the newest dead letters counted by code on the overview
NEEDING_OPERATOR = 20


@dataclass(frozen=True)
class PerMinute:
    """Sagas started, completed and failed in each minute of the window, oldest first."""

    minutes: list[datetime]
    started: list[int]
    completed: list[int]
    failed: list[int]

    @property
    def peak(self) -> int:
        return max([1, *self.started, *self.completed, *self.failed])


@dataclass(frozen=True)
class Overview:
    counts: dict[str, int]  # per state, every type
    by_type: dict[str, Counter[str]]  # type -> state -> sagas updated in the window
    sampled_all: bool  # False: more sagas were updated in the window than SAMPLE
    per_minute: PerMinute
    needing_operator: list[SagaState]
    backlog: dict[str, int]
    lag: list[GroupLag] = field(default_factory=list)
    letters_by_code: Counter[str] = field(default_factory=Counter)
    kafka_problem: str | None = None  # lag and dead letters could not be read


async def overview(ops: Operations, settings: Settings, app: App) -> Overview:
    counts = await ops.counts()
    backlog = await ops.backlog()
    recent = await ops.list(list(SagaStatus), newer_than=WINDOW, limit=SAMPLE)
    stuck = await ops.list([SagaStatus.NEEDS_OPERATOR], limit=NEEDING_OPERATOR)
    by_type: dict[str, Counter[str]] = {}
    for state in recent.sagas:
        by_type.setdefault(state.definition_name, Counter())[state.status.value] += 1
    found = Overview(
        counts,
        dict(sorted(by_type.items())),
        recent.next_offset is None,
        per_minute(recent.sagas, ops.now()),
        stuck.sagas,
        backlog,
    )
    try:
        found.lag.extend(await consumer_lag(settings.kafka, consumer_groups(settings, app)))
        letters = await read_letters(settings.kafka, dead_letter_topic(settings), newest=LETTERS)
    except (KafkaError, DeadLetterReadError) as exc:
        return replace(found, kafka_problem=f"Kafka: {exc}")
    found.letters_by_code.update(code_of(x) for x in letters)
    return found


def per_minute(sagas: list[SagaState], now: datetime) -> PerMinute:
    minutes = int(WINDOW.total_seconds() // 60)
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    started, completed, failed = [0] * minutes, [0] * minutes, [0] * minutes

    def slot(at: datetime) -> int | None:
        n = int((at - first).total_seconds() // 60)
        return n if 0 <= n < minutes else None

    for state in sagas:
        if (n := slot(state.created_at)) is not None:
            started[n] += 1
        ended = {SagaStatus.COMPLETED: completed, SagaStatus.FAILED: failed}.get(state.status)
        if ended is not None and (n := slot(state.updated_at)) is not None:
            ended[n] += 1
    stamps = [first + timedelta(minutes=n) for n in range(minutes)]
    return PerMinute(stamps, started, completed, failed)


def code_of(letter: Letter) -> str:
    if letter.record is None:
        return "unreadable"
    return letter.record.error_code or "none"
