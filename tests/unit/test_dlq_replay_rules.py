"""Replay lineage on the wire and the replay's choice per dead letter, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saga_worker.cli.dlq import ALREADY_REPLAYED, Letter, Receipt, Selection, Send, Skip, decide
from saga_worker.wire import DLQ_REASON, TRACEPARENT, dead_letter_headers, parse_dead_letter
from saga_worker.wire.dead_letter import (
    DLQ_REPLAYED_FROM,
    DLQ_REPLAYS,
    ReplayLineage,
    receipt_headers,
    receipt_of,
    replay_headers,
)

FAILED_AT = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
TOPIC = "prod.OrderCreated"
ORIGINALS = [(TRACEPARENT, b"00-abc-def-01"), ("origin", b"shop")]


def letter(
    partition: int = 0, offset: int = 7, lineage: ReplayLineage | None = None, **metadata: str
) -> Letter:
    headers = dead_letter_headers(
        metadata.pop("source_topic", TOPIC),
        0,
        3,
        "not_json: oops",
        failed_at=FAILED_AT,
        error_code=metadata.pop("error_code", "not_json"),
        original_headers=ORIGINALS + (lineage_headers(lineage) if lineage else []),
    )
    headers += [(f"dlq.{k}", v.encode()) for k, v in metadata.items()]
    record = parse_dead_letter(b"{oops", b"o-1", headers)
    return Letter(partition, offset, 0, record, lineage=ReplayLineage.of(headers))


def lineage_headers(lineage: ReplayLineage) -> list[tuple[str, bytes]]:
    return replay_headers([], lineage.replayed_from, lineage.replays)


def test_a_replayed_record_carries_its_originals_then_where_it_came_from_and_how_often() -> None:
    sent_back = replay_headers([*ORIGINALS, (DLQ_REASON, b"old")], "2:41", 3)
    assert sent_back == [*ORIGINALS, (DLQ_REPLAYED_FROM, b"2:41"), (DLQ_REPLAYS, b"3")]


def test_its_dead_letter_keeps_the_lineage_and_replaces_the_rest_of_the_metadata() -> None:
    failed_again = dead_letter_headers(
        TOPIC,
        1,
        9,
        "second",
        failed_at=FAILED_AT,
        original_headers=replay_headers([*ORIGINALS, (DLQ_REASON, b"first")], "2:41", 3),
    )
    assert ReplayLineage.of(failed_again) == ReplayLineage("2:41", 3)
    assert [v for k, v in failed_again if k == DLQ_REASON] == [b"second"]
    record = parse_dead_letter(b"x", None, failed_again)
    assert record.headers == ORIGINALS  # the lineage is metadata, not an original header


@pytest.mark.parametrize(
    ("replayed_from", "replays"),
    [
        (b"2:41", b"0"),
        (b"2:41", b"-1"),
        (b"2:41", b"x"),
        (b"41", b"1"),
        (b"a:b", b"1"),
        (b"", b"1"),
    ],
)
def test_a_malformed_lineage_is_dropped_so_the_letter_stays_readable(
    replayed_from: bytes, replays: bytes
) -> None:
    forged = [(DLQ_REPLAYED_FROM, replayed_from), (DLQ_REPLAYS, replays)]
    headers = dead_letter_headers(TOPIC, 0, 1, "r", failed_at=FAILED_AT, original_headers=forged)
    assert ReplayLineage.of(headers) is None
    assert not [k for k, _ in headers if k in (DLQ_REPLAYED_FROM, DLQ_REPLAYS)]
    parse_dead_letter(None, None, headers)


@given(
    st.integers(0, 10**6),
    st.integers(0, 10**12),
    st.integers(1, 10**8),
    st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8)), max_size=4),
)
def test_the_lineage_survives_any_number_of_failures(
    partition: int, offset: int, replays: int, originals: list[tuple[str, bytes]]
) -> None:
    headers = replay_headers(originals, f"{partition}:{offset}", replays)
    for attempt in range(3):
        headers = dead_letter_headers(
            TOPIC, 0, attempt, "r", failed_at=FAILED_AT, original_headers=headers
        )
    assert ReplayLineage.of(headers) == ReplayLineage(f"{partition}:{offset}", replays)


def test_a_receipt_names_the_letter_and_nothing_else_is_a_receipt() -> None:
    assert receipt_of(receipt_headers("3:12", 2)) == "3:12"
    assert receipt_of(replay_headers(ORIGINALS, "3:12", 2)) is None
    assert ReplayLineage.of(receipt_headers("3:12", 2)) is None  # not a replayed record


def sent(decision: Send | Skip) -> tuple[str, int, bytes | None]:
    assert isinstance(decision, Send), decision
    return decision.topic, decision.replays, decision.record.value


def why_not(decision: Send | Skip) -> str:
    assert isinstance(decision, Skip), decision
    assert not decision.replayed_before
    return decision.why


def test_a_letter_goes_back_as_the_next_replay_of_its_message() -> None:
    assert sent(decide(letter(), {TOPIC}, set(), force=False)) == (TOPIC, 1, b"{oops")
    again = letter(lineage=ReplayLineage("0:2", 2))
    assert sent(decide(again, {TOPIC}, set(), force=False)) == (TOPIC, 3, b"{oops")


def test_a_letter_replayed_before_goes_back_only_when_forced() -> None:
    assert decide(letter(), {TOPIC}, {"0:7"}, force=False) == ALREADY_REPLAYED
    assert sent(decide(letter(), {TOPIC}, {"0:7"}, force=True))[:2] == (TOPIC, 1)
    assert sent(decide(letter(offset=8), {TOPIC}, {"0:7"}, force=False))[:2] == (TOPIC, 1)


def test_what_never_goes_back_even_when_forced() -> None:
    unreadable = Letter(0, 1, 0, None, "source_topic: missing")
    assert "unreadable" in why_not(decide(unreadable, {TOPIC}, set(), force=True))
    foreign = letter(source_topic="elsewhere")
    assert "elsewhere is not a topic" in why_not(decide(foreign, {TOPIC}, set(), force=True))
    cut = letter(original_size="5000000", sha256="ab")
    assert "cut to fit" in why_not(decide(cut, {TOPIC}, set(), force=True))


def test_a_selection_picks_by_id_and_code_and_names_receipts_only_by_id() -> None:
    assert Selection().picks(letter())
    assert Selection(frozenset({(0, 7)})).picks(letter())
    assert not Selection(frozenset({(0, 8)})).picks(letter())
    assert not Selection(code="too_large").picks(letter())
    assert Selection(frozenset({(0, 7)}), "not_json").picks(letter())
    receipt = Receipt(0, 9, "0:7")
    assert Selection(frozenset({(0, 9)})).names(receipt)
    assert not Selection().names(receipt)
