"""Records a worker gives up on: the original bytes, sent on with where and why."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka.structs import ConsumerRecord

from saga_worker.wire import dead_letter_headers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    record: ConsumerRecord[bytes | None, bytes | None]
    code: str  # short and stable: a DecodeError code, "unknown_saga", ...
    reason: str  # one line for a human

    def headers(self, worker: str, now: datetime | None = None) -> list[tuple[str, bytes]]:
        original = [(k, v) for k, v in (self.record.headers or ()) if v is not None]
        return dead_letter_headers(
            self.record.topic,
            self.record.partition,
            self.record.offset,
            self.reason,
            failed_at=now or datetime.now(UTC),
            error_code=self.code,
            worker=worker,
            original_headers=original,
        )


def log_dead_letters(letters: Sequence[DeadLetter], worker: str) -> None:
    for letter in letters:
        log.warning(
            "dead letter",
            extra={
                "worker": worker,
                "topic": letter.record.topic,
                "partition": letter.record.partition,
                "offset": letter.record.offset,
                "code": letter.code,
                "reason": letter.reason,
            },
        )
