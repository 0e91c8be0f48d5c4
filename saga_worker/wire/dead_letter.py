"""Dead letters: the original record, unchanged, with why and where it failed in headers.

The value and key are copied byte for byte, so an operator can replay a dead
letter to its source topic once the cause is fixed. The metadata lives in
`dlq.*` headers next to the original headers (trace context survives).

Unless that would not fit: `fit_dead_letter` cuts a letter down to the largest
record the worker may send (its SAGA_MAX_MESSAGE_BYTES), so a record just under
the broker's limit, with our headers added, cannot stop the worker. A cut value
says so in `dlq.original_size` and `dlq.sha256` (of the whole original value).

A dead letter sent back by `saga-worker dlq replay` carries `dlq.replayed_from`
(the dead letter's id) and `dlq.replays` (how often the message has been sent
back); if it fails again, its new dead letter keeps them. After sending, the
replay appends a receipt to the dead-letter topic (`dlq.replay_of`, no value) so
that a second replay knows the letter went back already.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from saga_worker.wire.codec import (
    MAX_HEADER_BYTES,
    MAX_KEY_BYTES,
    DecodeError,
    Headers,
    describe_validation_error,
    record_size,
)

DLQ_PREFIX = "dlq."
DLQ_SOURCE_TOPIC = "dlq.source_topic"  # physical topic the record was read from
DLQ_PARTITION = "dlq.partition"
DLQ_OFFSET = "dlq.offset"
DLQ_REASON = "dlq.reason"  # one line for a human
DLQ_ERROR_CODE = "dlq.error_code"  # short and stable, e.g. a DecodeError code
DLQ_FAILED_AT = "dlq.failed_at"  # ISO 8601 with offset
DLQ_WORKER = "dlq.worker"  # which worker gave up on it
# Only on a letter that had to be cut to fit (fit_dead_letter):
DLQ_ORIGINAL_SIZE = "dlq.original_size"  # bytes of the original value
DLQ_SHA256 = "dlq.sha256"  # hex SHA-256 of the original value
DLQ_DROPPED_HEADERS = "dlq.dropped_headers"  # original headers left out
# On a record sent back by `dlq replay`, and kept on its dead letter if it fails again:
DLQ_REPLAYED_FROM = "dlq.replayed_from"  # the dead letter it was sent back from, PARTITION:OFFSET
DLQ_REPLAYS = "dlq.replays"  # how many times the message has been sent back, this time included
# On a replay receipt, the record (no value) `dlq replay` appends to the dead letter's
# partition of the dead-letter topic once the letter is back in its source topic:
DLQ_REPLAY_OF = "dlq.replay_of"  # the dead letter sent back, PARTITION:OFFSET

LETTER_ID = re.compile(r"\d{1,10}:\d{1,19}")  # a dead letter's id, PARTITION:OFFSET

MAX_REASON_CHARS = 1_000
ORIGINAL_HEADERS_BYTES = 8 * 1024  # at most this much of a letter for the original headers

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
    original_size: NonNegative | None = None  # set when the value was cut to fit
    sha256: str | None = None
    dropped_headers: NonNegative | None = None
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

    `dlq.*` headers of a dead letter that is failing again are replaced, not stacked,
    except a replayed record's `dlq.replayed_from` and `dlq.replays` (if well formed):
    they stay, so its new dead letter says it had been replayed, from where, how often.
    """
    if failed_at.tzinfo is None:
        raise ValueError("failed_at must be timezone-aware")
    original_headers = list(original_headers)
    lineage = ReplayLineage.of(original_headers)
    metadata = {
        DLQ_SOURCE_TOPIC: source_topic,
        DLQ_PARTITION: str(partition),
        DLQ_OFFSET: str(offset),
        DLQ_REASON: reason[:MAX_REASON_CHARS],
        DLQ_FAILED_AT: failed_at.isoformat(),
        DLQ_ERROR_CODE: error_code,
        DLQ_WORKER: worker,
        DLQ_REPLAYED_FROM: lineage.replayed_from if lineage else None,
        DLQ_REPLAYS: str(lineage.replays) if lineage else None,
    }
    kept = [(k, v) for k, v in original_headers if not k.startswith(DLQ_PREFIX)]
    return kept + [(k, v.encode()) for k, v in metadata.items() if v is not None]


def fit_dead_letter(
    key: bytes | None, value: bytes | None, headers: Headers, max_bytes: int
) -> tuple[bytes | None, bytes | None, Headers]:
    """A dead letter (key, value, headers) cut down to a record of at most `max_bytes`.

    The `dlq.*` headers stay whole. Original headers are kept in order while each
    is at most MAX_HEADER_BYTES and together they fit ORIGINAL_HEADERS_BYTES
    (`dlq.dropped_headers` counts the rest); a key is cut to MAX_KEY_BYTES; a value
    that does not fit is cut to what does, with `dlq.original_size` and
    `dlq.sha256` of the whole. A letter that fits is returned as it came.
    """
    kept: Headers = []
    metadata: Headers = []
    dropped = 0
    budget = ORIGINAL_HEADERS_BYTES
    for name, raw in headers:
        if name.startswith(DLQ_PREFIX):
            metadata.append((name, raw))
            continue
        cost = len(name.encode()) + len(raw)
        if len(raw) > MAX_HEADER_BYTES or cost > budget:
            dropped += 1
            continue
        budget -= cost
        kept.append((name, raw))
    if dropped:
        metadata.append((DLQ_DROPPED_HEADERS, str(dropped).encode()))
    if key is not None:
        key = key[:MAX_KEY_BYTES]
    fitted = kept + metadata
    if value is None or record_size(key, value, fitted) <= max_bytes:
        return key, value, fitted
    fitted += [
        (DLQ_ORIGINAL_SIZE, str(len(value)).encode()),
        (DLQ_SHA256, hashlib.sha256(value).hexdigest().encode()),
    ]
    room = max_bytes - record_size(key, b"", fitted)
    return key, value[: max(room, 0)], fitted


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


@dataclass(frozen=True)
class ReplayLineage:
    """Where a replayed record came from (`dlq.replayed_from`, a dead letter's id) and
    how many times its message has been sent back from the dead-letter topic."""

    replayed_from: str
    replays: int

    @classmethod
    def of(cls, headers: Iterable[tuple[str, bytes | None]]) -> ReplayLineage | None:
        """The lineage these headers carry; None if none, or if it is malformed."""
        found = {k: v for k, v in headers if k in (DLQ_REPLAYED_FROM, DLQ_REPLAYS) and v}
        source = found.get(DLQ_REPLAYED_FROM, b"").decode("ascii", errors="replace")
        count = found.get(DLQ_REPLAYS, b"").decode("ascii", errors="replace")
        if not LETTER_ID.fullmatch(source) or not re.fullmatch(r"[1-9]\d{0,8}", count):
            return None
        return cls(source, int(count))


def replay_headers(
    original_headers: Iterable[tuple[str, bytes | None]], letter_id: str, replays: int
) -> Headers:
    """Headers of a dead letter sent back to its source topic: the original ones
    (without `dlq.*`), then where it comes from and how often it has been sent back."""
    kept = [(k, v or b"") for k, v in original_headers if not k.startswith(DLQ_PREFIX)]
    return [*kept, (DLQ_REPLAYED_FROM, letter_id.encode()), (DLQ_REPLAYS, str(replays).encode())]


def receipt_headers(letter_id: str, replays: int) -> Headers:
    """Headers of the receipt saying that dead letter `letter_id` was sent back."""
    return [(DLQ_REPLAY_OF, letter_id.encode()), (DLQ_REPLAYS, str(replays).encode())]


def receipt_of(headers: Iterable[tuple[str, bytes | None]]) -> str | None:
    """The id of the dead letter a replay receipt is about; None for any other record."""
    for name, raw in headers:
        if name == DLQ_REPLAY_OF:
            return (raw or b"").decode("ascii", errors="replace")
    return None
