"""What the operator commands accept: durations, dead letter ids, and value previews."""

from __future__ import annotations

from datetime import timedelta

import pytest

from saga_worker.cli.dlq import parse_letter_id
from saga_worker.cli.operator import parse_duration
from saga_worker.cli.views import PREVIEW_CHARS, preview


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1.5h", timedelta(minutes=90)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "m", "10 m", "10min", "-5m", "0s", "1h30m", "2w"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration like 30s, 10m, 2h or 1d"):
        parse_duration(text)


def test_dead_letter_ids() -> None:
    assert parse_letter_id("3:1042") == (3, 1042)
    for bad in ("3", "3:", ":4", "a:1", "1:-2", "1:2:3"):
        with pytest.raises(ValueError, match="PARTITION:OFFSET"):
            parse_letter_id(bad)


def test_previews_are_one_printable_line() -> None:
    assert preview(None) == "(no value)"
    assert preview(b'{"a": 1}') == '{"a": 1}'
    assert preview(b"\x00\xffline\nnext") == r"\x00\xffline\nnext"
    long = preview(b"x" * (PREVIEW_CHARS + 1))
    assert long == "x" * PREVIEW_CHARS + "..."
