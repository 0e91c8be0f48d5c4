"""The console's pure parts: its settings, who may use it, the timeline read from a
saga's history, and how outside text is shown."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from participants.order_fulfillment import ORDER_FULFILLMENT
from saga_worker.console.pages import CLIP, pretty, visible
from saga_worker.console.security import Credentials, check_exposure, is_loopback
from saga_worker.console.timeline import bars, rows
from saga_worker.engine.state import SagaState
from saga_worker.errors import ConfigurationError
from saga_worker.settings import load_settings

HISTORIES = Path(__file__).parent / "histories"
TOKEN = "t" * 24


def recorded(name: str) -> SagaState:
    steps = json.loads((HISTORIES / f"{name}.json").read_text())["steps"]
    return SagaState.from_dict(steps[-1]["decision"]["state"])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SAGA_CONSOLE_TOKEN": "short"}, "SAGA_CONSOLE_TOKEN: must be at least 16 characters"),
        ({"SAGA_CONSOLE_USER": "ops"}, "SAGA_CONSOLE_USER and SAGA_CONSOLE_PASSWORD go together"),
        ({"SAGA_CONSOLE_PORT": "0"}, "invalid setting SAGA_CONSOLE_PORT"),
        ({"SAGA_CONSOLE_REFRESH_S": "0.1"}, "invalid setting SAGA_CONSOLE_REFRESH_S"),
    ],
)
def test_bad_console_settings_are_one_line_naming_them(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_settings()
    assert "\n" not in str(caught.value)
    assert "short" not in str(caught.value)  # a secret is never repeated


def test_the_console_token_may_come_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    monkeypatch.setenv("SAGA_CONSOLE_TOKEN_FILE", str(secret))
    settings = load_settings()
    assert Credentials.of(settings).token == TOKEN
    assert TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
     ("console.example", False)],
)  # fmt: skip
def test_loopback_addresses_are_told_apart(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_beyond_loopback_the_console_needs_credentials() -> None:
    with pytest.raises(ConfigurationError, match="beyond loopback, without credentials"):
        check_exposure("0.0.0.0", Credentials())
    check_exposure("0.0.0.0", Credentials(token=TOKEN))
    check_exposure("0.0.0.0", Credentials(user="ops", password=TOKEN))
    check_exposure("127.0.0.1", Credentials())


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_name_who_acts_and_refuse_anything_else() -> None:
    both = Credentials(token=TOKEN, user="ops", password="p" * 16)
    assert both.who(f"Bearer {TOKEN}") == "token"
    assert both.who(basic("ops", "p" * 16)) == "ops"
    assert both.who(basic("alice", TOKEN)) == "alice (token)"
    for refused in [None, "", "Bearer nope", basic("ops", "wrong"), "Basic !!!", "Digest x"]:
        assert both.who(refused) is None
    assert Credentials().who(basic("", "")) is None


def test_the_timeline_has_a_bar_per_attempt_and_compensations_apart() -> None:
    declined = recorded("payment_declined")
    found = bars(declined, ORDER_FULFILLMENT, declined.updated_at)
    assert [(b.step, b.kind, b.attempt) for b in found] == [
        ("reserve_inventory", "action", 1),
        ("process_payment", "action", 1),
        ("reserve_inventory", "compensation", 1),
    ]
    assert all(b.start <= b.end for b in found)
    assert found[1].start == found[0].end  # the next stage starts when the last one ended
    laid = rows(found, declined.created_at, declined.updated_at)
    assert [r.label for r in laid] == [
        "reserve_inventory",
        "process_payment",
        "reserve_inventory (undo)",
    ]
    assert all(0 <= left <= 1 and 0 < width <= 1 - left for r in laid for left, width, _ in r.bars)


def test_retries_start_when_their_timer_fires_and_a_resumed_compensation_is_a_new_bar() -> None:
    retried = recorded("retries_duplicates_and_late_replies")
    found = bars(retried, ORDER_FULFILLMENT, retried.updated_at)
    confirmations = [b for b in found if b.step == "send_confirmation"]
    assert [(b.attempt, b.outcome) for b in confirmations] == [
        (1, "attempt 1 timed out"),
        (2, "attempt 2 timed out"),
        (3, "StepSucceeded"),
    ]
    assert confirmations[0].end < confirmations[1].start  # the backoff between them
    stuck = recorded("compensation_needs_operator")
    undo = [b for b in bars(stuck, ORDER_FULFILLMENT, stuck.updated_at) if b.kind == "compensation"]
    assert [b.attempt for b in undo if b.step == "reserve_inventory"] == list(range(1, 22))
    assert undo[-1].outcome == "CompensationSucceeded"


def test_outside_text_shows_control_characters_and_is_clipped() -> None:
    assert visible("a\x00b\x1b[2J\u202ec\nd\te") == "a\\x00b\\x1b[2J\\u202ec\nd\te"
    long = visible("x" * (CLIP + 5))
    assert long.endswith(" … (5 more characters)")
    shown = pretty({"k": ["y" * (CLIP + 1), "<script>\x07"]})
    assert "(1 more characters)" in shown
    assert "<script>\\u0007" in shown  # JSON escapes it; the template escapes the tag
