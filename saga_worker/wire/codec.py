"""The one JSON codec for message bodies (orjson), and the Kafka headers we set.

`decode` never lets a bad value escape as anything but `DecodeError`, whose
`code` is short and stable (it goes into dead-letter headers and metrics) and
whose `reason` is one line for a human.

Sizes, one policy for every worker: SAGA_MAX_MESSAGE_BYTES (default `MAX_BYTES`)
bounds every record a worker reads or writes, whole (key, value, headers and
Kafka's framing, as `record_size` counts them), and is the producer's
`max_request_size`. A body the runtime builds may use all of it but
`HEADER_ROOM`, which the key and the headers we set (a saga id, a topic name, a
55-character traceparent) never come near. Dead letters are cut to fit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

import orjson
from pydantic import ValidationError

from saga_worker.wire.messages import WireMessage

M = TypeVar("M", bound=WireMessage)

DecodeErrorCode = Literal["not_utf8", "not_json", "not_object", "too_large", "too_deep", "invalid"]

MAX_BYTES = 1024 * 1024  # aiokafka's default max_request_size; brokers accept 1048588
HEADER_ROOM = 16 * 1024  # of a record's bytes, kept for its key, headers and framing
MAX_KEY_BYTES = 1024  # a longer record key is refused at intake
MAX_HEADER_BYTES = 1024  # a longer header value is never read, nor copied to a dead letter
# Free-form fields (`result`, unknown fields) may nest; a cap keeps a hostile
# value from costing more than a bounded walk. orjson itself stops at 1024.
MAX_DEPTH = 32
_ERRORS_IN_REASON = 3
_MAX_REASON_CHARS = 500


class DecodeError(ValueError):
    """A message body that cannot be turned into its model; never worth retrying."""

    def __init__(self, code: DecodeErrorCode, reason: str) -> None:
        self.code: DecodeErrorCode = code
        self.reason = reason[:_MAX_REASON_CHARS]
        super().__init__(f"{code}: {self.reason}")


def encode(message: WireMessage) -> bytes:
    """The JSON body of `message`: unknown fields kept, absent optional fields left out."""
    return orjson.dumps(message.model_dump(mode="json"))


def decode(
    model_type: type[M],
    data: bytes | None,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
) -> M:
    """Parse and validate one message body, or raise `DecodeError`."""
    if not data:
        raise DecodeError("not_json", "empty value")
    if len(data) > max_bytes:
        raise DecodeError("too_large", f"{len(data)} bytes, more than {max_bytes}")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("not_utf8", f"invalid UTF-8 at byte {exc.start}") from exc
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        code: DecodeErrorCode = "too_deep" if "depth limit" in str(exc) else "not_json"
        raise DecodeError(code, str(exc)) from exc
    if not isinstance(parsed, dict):
        raise DecodeError("not_object", f"expected a JSON object, got {type(parsed).__name__}")
    # Nesting needs brackets: a value with fewer than max_depth of them cannot be too
    # deep, and counting bytes is far cheaper than walking the parsed value.
    if data.count(b"{") + data.count(b"[") > max_depth and _depth_exceeds(parsed, max_depth):
        raise DecodeError("too_deep", f"nested deeper than {max_depth} levels")
    try:
        return model_type.model_validate(parsed)
    except ValidationError as exc:
        raise DecodeError("invalid", describe_validation_error(exc)) from exc


def _depth_exceeds(value: dict[str, Any], max_depth: int) -> bool:
    # Level by level rather than recursively, so depth cannot exhaust the Python stack.
    level: list[dict[str, Any] | list[Any]] = [value]
    for _ in range(max_depth):
        below: list[dict[str, Any] | list[Any]] = []
        for node in level:
            children = node.values() if isinstance(node, dict) else node
            below.extend(child for child in children if isinstance(child, dict | list))
        if not below:
            return False
        level = below
    return True


def describe_validation_error(exc: ValidationError) -> str:
    """The first few errors of `exc` on one line, without the offending input."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}"
        for err in errors[:_ERRORS_IN_REASON]
    ]
    if len(errors) > _ERRORS_IN_REASON:
        parts.append(f"(+{len(errors) - _ERRORS_IN_REASON} more)")
    return f"{exc.title}: " + "; ".join(parts)


Headers = list[tuple[str, bytes]]

TRACEPARENT = "traceparent"  # W3C trace context
MESSAGE_TYPE = "message_type"  # the logical topic the body was written for
CORRELATION_ID = "correlation_id"  # the saga id, or the business key before a saga exists


def make_headers(message_type: str, correlation_id: str, traceparent: str | None = None) -> Headers:
    """The headers every saga message is produced with."""
    headers = [(MESSAGE_TYPE, message_type.encode()), (CORRELATION_ID, correlation_id.encode())]
    if traceparent is not None:
        headers.append((TRACEPARENT, traceparent.encode()))
    return headers


def traceparent_of(headers: Iterable[tuple[str, bytes | None]]) -> str | None:
    """The record's W3C trace context, or None if absent or not well formed.

    Only a header the W3C format allows travels on: never longer than 55
    characters, so a hostile value cannot grow every message of a saga.
    """
    raw: bytes | None = None
    for key, value in headers:
        if key == TRACEPARENT:
            raw = value
    if raw is None or len(raw) > MAX_HEADER_BYTES:
        return None
    try:
        return valid_traceparent(raw.decode("ascii"))
    except UnicodeDecodeError:
        return None


_TRACEPARENT_CHARS = 55  # version 00: 2 + 1 + 32 + 1 + 16 + 1 + 2
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def valid_traceparent(value: str | None) -> str | None:
    """`value` if it is a W3C traceparent; of a later version's, its 55-character head."""
    if value is None:
        return None
    head = value[:_TRACEPARENT_CHARS]
    match = _TRACEPARENT.fullmatch(head)
    if match is None:
        return None
    version, trace_id, parent_id = match.groups()
    if version == "ff" or not trace_id.strip("0") or not parent_id.strip("0"):
        return None
    if len(value) > _TRACEPARENT_CHARS and (version == "00" or value[_TRACEPARENT_CHARS] != "-"):
        return None
    return head


# Kafka's framing of a record sent alone, at most: the v2 batch header, then the
# record's varints (length, attributes, timestamp and offset deltas, key and value
# lengths, header count), and per header its name and value lengths.
_BATCH_BYTES = 61
_RECORD_BYTES = 5 + 1 + 10 + 5 + 5 + 5 + 5
_PER_HEADER_BYTES = 10


def record_size(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]]
) -> int:
    """An upper bound of the bytes Kafka counts for this record in a batch of its own:
    what the producer's max_request_size and the broker's message.max.bytes limit."""
    size = _BATCH_BYTES + _RECORD_BYTES + len(key or b"") + len(value or b"")
    for name, raw in headers:
        size += _PER_HEADER_BYTES + len(name.encode()) + len(raw or b"")
    return size


def header_value(headers: Iterable[tuple[str, bytes | None]], name: str) -> str | None:
    """The last value of header `name` as text; None if absent, null or not UTF-8."""
    found: str | None = None
    for key, raw in headers:
        if key != name:
            continue
        try:
            found = raw.decode("utf-8") if raw is not None else None
        except UnicodeDecodeError:
            found = None
    return found
