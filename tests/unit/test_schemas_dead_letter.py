"""Dead letters keep the original bytes and carry their metadata in headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from saga_worker.wire import (
    DLQ_REASON,
    TRACEPARENT,
    DeadLetterRecord,
    DecodeError,
    dead_letter_headers,
    parse_dead_letter,
)

FAILED_AT = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def test_headers_read_back_into_a_record() -> None:
    headers = dead_letter_headers(
        "prod.SagaStepCompleted",
        3,
        1042,
        "not_json: unexpected end of input",
        failed_at=FAILED_AT,
        error_code="not_json",
        worker="orchestrator",
        original_headers=[(TRACEPARENT, b"00-abc-def-01")],
    )
    record = parse_dead_letter(b"{\xff", b"saga-1", headers)
    assert record == DeadLetterRecord(
        source_topic="prod.SagaStepCompleted",
        partition=3,
        offset=1042,
        reason="not_json: unexpected end of input",
        error_code="not_json",
        worker="orchestrator",
        failed_at=FAILED_AT,
        key=b"saga-1",
        value=b"{\xff",
        headers=[(TRACEPARENT, b"00-abc-def-01")],
    )


def test_failing_again_replaces_the_old_metadata() -> None:
    first = dead_letter_headers("t", 0, 1, "first", failed_at=FAILED_AT)
    second = dead_letter_headers("t", 0, 1, "second", failed_at=FAILED_AT, original_headers=first)
    assert [value for name, value in second if name == DLQ_REASON] == [b"second"]


def test_long_reasons_are_cut_short() -> None:
    headers = dead_letter_headers("t", 0, 1, "x" * 5000, failed_at=FAILED_AT)
    assert len(parse_dead_letter(None, None, headers).reason) == 1000


def test_failed_at_must_carry_a_timezone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        dead_letter_headers("t", 0, 1, "r", failed_at=datetime(2024, 5, 1))


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("dlq.source_topic", b"t"), ("dlq.partition", b"x"), ("dlq.offset", b"1")],
        dead_letter_headers("t", 0, 1, "r", failed_at=FAILED_AT)[1:],
    ],
)
def test_unusable_metadata_is_a_decode_error(headers: list[tuple[str, bytes]]) -> None:
    with pytest.raises(DecodeError) as caught:
        parse_dead_letter(b"{}", None, headers)
    assert caught.value.code == "invalid"


def test_record_json_carries_bytes_as_base64() -> None:
    headers = dead_letter_headers("t", 0, 1, "r", failed_at=FAILED_AT)
    record = parse_dead_letter(b"\x00\xff", None, headers)
    assert DeadLetterRecord.model_validate_json(record.model_dump_json()) == record
