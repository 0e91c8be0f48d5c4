"""Recorded saga histories (events in, decisions out) replayed through decide.

A changed decision for a recorded event is a behaviour change: a running saga
started under the old code could take another path. If the change is
intended, re-record and review the diff of tests/unit/histories/*.json:

    RECORD_HISTORIES=1 .venv/bin/pytest tests/unit/test_histories.py
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


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_recorded_history_replays_identically(name: str) -> None:
    path = HISTORIES / f"{name}.json"
    if RECORD:
        HISTORIES.mkdir(exist_ok=True)
        path.write_bytes(orjson.dumps(record(name), option=orjson.OPT_INDENT_2) + b"\n")
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
