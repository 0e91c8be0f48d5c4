"""Dead letters: the original record, unchanged, with why and where it failed in headers.

The value and key are copied byte for byte, so an operator can replay a dead
letter to its source topic once the cause is fixed. The metadata lives in
`dlq.*` headers next to the original headers (trace context survives).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from saga_worker.wire.codec import DecodeError, Headers, describe_validation_error

DLQ_PREFIX = "dlq."
DLQ_SOURCE_TOPIC = "dlq.source_topic"  # physical topic the record was read from
DLQ_PARTITION = "dlq.partition"
DLQ_OFFSET = "dlq.offset"
DLQ_REASON = "dlq.reason"  # one line for a human
DLQ_ERROR_CODE = "dlq.error_code"  # short and stable, e.g. a DecodeError code
DLQ_FAILED_AT = "dlq.failed_at"  # ISO 8601 with offset
DLQ_WORKER = "dlq.worker"  # which worker gave up on it

MAX_REASON_CHARS = 1_000

NonNegative = Annotated[int, Field(ge=0)]


class DeadLetterRecord(BaseModel):
    """A dead letter as read back from the dead-letter topic. Bytes are base64 in JSON."""

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    source_topic: Annotated[str, Field(min_length=1, max_length=249)]  # Kafka's limit
    partition: NonNegative
    offset: NonNegative
    reason: Annotated[str, Field(max_length=MAX_REASON_CHARS)]
    error_code: str | None = None
    worker: str | None = None
    failed_at: AwareDatetime
    key: bytes | None = None
    value: bytes | None = None
    headers: list[tuple[str, bytes | None]] = Field(default_factory=list)  # the originals


def dead_letter_headers(
    source_topic: str,
    partition: int,
    offset: int,
    reason: str,
    *,
    failed_at: datetime,
    error_code: str | None = None,
    worker: str | None = None,
    original_headers: Iterable[tuple[str, bytes]] = (),
) -> Headers:
    """Headers for a dead letter: the original ones, then the `dlq.*` metadata.

    `dlq.*` headers of a dead letter that is failing again are replaced, not stacked.
    """
    if failed_at.tzinfo is None:
        raise ValueError("failed_at must be timezone-aware")
    metadata = {
        DLQ_SOURCE_TOPIC: source_topic,
        DLQ_PARTITION: str(partition),
        DLQ_OFFSET: str(offset),
        DLQ_REASON: reason[:MAX_REASON_CHARS],
        DLQ_FAILED_AT: failed_at.isoformat(),
        DLQ_ERROR_CODE: error_code,
        DLQ_WORKER: worker,
    }
    kept = [(k, v) for k, v in original_headers if not k.startswith(DLQ_PREFIX)]
    return kept + [(k, v.encode()) for k, v in metadata.items() if v is not None]


def parse_dead_letter(
    value: bytes | None, key: bytes | None, headers: Iterable[tuple[str, bytes | None]]
) -> DeadLetterRecord:
    """Read a record from the dead-letter topic; DecodeError if its metadata is unusable."""
    metadata: dict[str, str] = {}
    originals: list[tuple[str, bytes | None]] = []
    for name, raw in headers:
        if not name.startswith(DLQ_PREFIX):
            originals.append((name, raw))
        elif raw is not None:
            metadata[name.removeprefix(DLQ_PREFIX)] = raw.decode("utf-8", errors="replace")
    try:
        return DeadLetterRecord.model_validate(
            {**metadata, "key": key, "value": value, "headers": originals}
        )
    except ValidationError as exc:
        raise DecodeError("invalid", describe_validation_error(exc)) from exc
