"""Recorded saga histories (events in, decisions out) replayed through decide.

A changed decision for a recorded event is a behaviour change: a running saga
started under the old code could take another path. If the change is
intended, re-record and review the diff of tests/unit/histories/*.json:

    RECORD_HISTORIES=1 .venv/bin/pytest tests/unit/test_histories.py

Recording writes the files and fails every replay test, saying what it wrote: a
replay of what was just recorded would prove nothing. Run again without
RECORD_HISTORIES to check the new recordings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from participants.order_fulfillment import ORDER_FULFILLMENT
from saga_worker.engine.decide import Decision, TimerSet, decide
from saga_worker.engine.events import OperatorAbort, OperatorRetry, event_from_dict, event_to_dict
from saga_worker.engine.harness import Fail, NoReply, SagaHarness, StepScript, Succeed
from saga_worker.engine.state import SagaState, from_ms, to_ms

from .support import ORDER_DATA, RESULTS

HISTORIES = Path(__file__).parent / "histories"
RECORD = os.environ.get("RECORD_HISTORIES") == "1"
SID = "0b5e3f9a-hist"


def ok(**overrides: StepScript) -> dict[str, StepScript]:
    scripts = {name: StepScript(then=Succeed(RESULTS[name])) for name in RESULTS}
    scripts.update(overrides)
    return scripts


def _happy(h: SagaHarness) -> None:
    h.run()


def _operator_fixes_compensation(h: SagaHarness) -> None:
    h.run()
    h.scripts["reserve_inventory"] = StepScript(then=Succeed(RESULTS["reserve_inventory"]))
    h.apply(SID, OperatorRetry())
    h.run()


def _abort_during_payment(h: SagaHarness) -> None:
    h.run_until(h.clock.now + (ORDER_FULFILLMENT.steps["process_payment"].timeout / 100))
    h.apply(SID, OperatorAbort("customer cancelled"))
    h.run()


SCENARIOS: dict[str, tuple[dict[str, StepScript], Callable[[SagaHarness], None]]] = {
    "happy_path": (ok(), _happy),
    "payment_declined": (
        ok(process_payment=StepScript(attempts=(Fail("card declined", False, "DECLINED"),))),
        _happy,
    ),
    "shipment_times_out": (ok(create_shipment=StepScript(then=NoReply())), _happy),
    "retries_duplicates_and_late_replies": (
        ok(
            reserve_inventory=StepScript(
                attempts=(Fail("db busy", retryable=True),),
                then=Succeed(RESULTS["reserve_inventory"], duplicates=1),
            ),
            process_payment=StepScript(
                attempts=(
                    Succeed(
                        RESULTS["process_payment"],
                        delay=ORDER_FULFILLMENT.steps["process_payment"].timeout * 1.5,
                    ),
                ),
                then=Succeed(RESULTS["process_payment"]),
            ),
            send_confirmation=StepScript(attempts=(NoReply(), NoReply())),
        ),
        _happy,
    ),
    "compensation_needs_operator": (
        ok(
            create_shipment=StepScript(attempts=(Fail("no carrier", False),)),
            reserve_inventory=StepScript(
                then=Succeed(RESULTS["reserve_inventory"]), compensations_then=NoReply()
            ),
        ),
        _operator_fixes_compensation,
    ),
    "aborted_by_operator": (ok(), _abort_during_payment),
}


def decision_to_dict(decision: Decision, full_history: bool = False) -> dict[str, Any]:
    """The decision as JSON; history is append-only, so only the last step keeps it whole."""
    state = decision.state.to_dict() if decision.state is not None else None
    if state is not None and not full_history:
        state["hist"] = len(state["hist"])
    return {
        "state": state,
        "outgoing": [[m.topic, m.key, m.message_id, m.payload] for m in decision.outgoing],
        "timers": [
            ["set", t.timer_id, to_ms(t.due)] if isinstance(t, TimerSet) else ["cancel", t.timer_id]
            for t in decision.timers
        ],
        "ignored": decision.ignored,
    }


def record(name: str) -> dict[str, Any]:
    scripts, drive = SCENARIOS[name]
    h = SagaHarness(ORDER_FULFILLMENT, scripts)
    h.start(SID, ORDER_DATA)
    drive(h)
    return {
        "scenario": name,
        "definition": list(ORDER_FULFILLMENT.key),
        "final_status": h.state(SID).status.value,
        "steps": [
            {
                "at": to_ms(a.at),
                "event": event_to_dict(a.event),
                "decision": decision_to_dict(a.decision, full_history=i == len(h.log) - 1),
            }
            for i, a in enumerate(h.log)
        ],
    }


def write_recording(name: str) -> str:
    """Records the scenario into its file; says whether that changed the file."""
    path = HISTORIES / f"{name}.json"
    fresh = orjson.dumps(record(name), option=orjson.OPT_INDENT_2) + b"\n"
    before = path.read_bytes() if path.exists() else None
    HISTORIES.mkdir(exist_ok=True)
    path.write_bytes(fresh)
    if before is None:
        return f"recorded {path} (new)"
    return f"recorded {path} ({'changed' if before != fresh else 'unchanged'})"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_recorded_history_replays_identically(name: str) -> None:
    if RECORD:
        # Never replayed against what was just written: that would pass whatever decide does.
        pytest.fail(
            f"{write_recording(name)}; RECORD_HISTORIES=1 checks nothing: review the diff, "
            "then run without it",
            pytrace=False,
        )
    path = HISTORIES / f"{name}.json"
    recorded = orjson.loads(path.read_bytes())
    assert tuple(recorded["definition"]) == ORDER_FULFILLMENT.key
    state: SagaState | None = None
    for index, entry in enumerate(recorded["steps"]):
        decision = decide(
            state, event_from_dict(entry["event"]), from_ms(entry["at"]), ORDER_FULFILLMENT
        )
        last = index == len(recorded["steps"]) - 1
        fresh = orjson.loads(orjson.dumps(decision_to_dict(decision, full_history=last)))
        assert fresh == entry["decision"], f"{name}: decision {index} changed"
        state = decision.state
    assert state is not None
    assert state.status.value == recorded["final_status"]


def test_recording_writes_the_files_and_passes_no_replay(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(f"{__name__}.RECORD", True)
    monkeypatch.setattr(f"{__name__}.HISTORIES", tmp_path)
    for expected in ("new", "unchanged"):
        with pytest.raises(pytest.fail.Exception, match=f"happy_path.json \\({expected}\\)"):
            test_recorded_history_replays_identically("happy_path")
    assert orjson.loads((tmp_path / "happy_path.json").read_bytes()) == orjson.loads(
        orjson.dumps(record("happy_path"))
    )
    (tmp_path / "happy_path.json").write_bytes(b"{}")
    with pytest.raises(pytest.fail.Exception, match="changed"):
        test_recorded_history_replays_identically("happy_path")
