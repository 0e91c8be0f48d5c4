"""A saga's history as bars on a time axis, for the console's Gantt-like timeline: one
bar per step attempt and per compensation attempt.

The history records when a reply, a timeout or a retry was applied, not when a command
went out, so where a bar starts is inferred: a retry when its backoff timer fired
(`attempt N`, `compensation N`) or an operator resumed it; otherwise a step's attempt
starts when its stage did (the end of the previous stage, or the saga's start), and a
compensation when the saga turned to compensating or the compensation before it ended.
Pure: states in, bars out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from saga_worker.engine.definition import SagaDefinition
from saga_worker.engine.state import SagaState, SagaStatus, Transition

Kind = Literal["action", "compensation", "wait", "child"]

_RETRY = re.compile(r"(attempt|compensation) (\d+)")  # a retry's timer fired: it starts


@dataclass(frozen=True)
class Bar:
    step: str
    kind: Kind
    attempt: int
    start: datetime
    end: datetime
    outcome: str  # what ended it (the event, or its detail), or "running"


@dataclass(frozen=True)
class Row:
    """One line of the chart: a step's bars, as shares (0..1) of the time axis."""

    label: str
    bars: list[tuple[float, float, Bar]]  # left, width, bar


def bars(state: SagaState, definition: SagaDefinition, now: datetime) -> list[Bar]:
    """Every attempt of every step and compensation the history shows, in order."""
    stage_of = {step.name: n for n, group in enumerate(definition.groups) for step in group}
    action_kind: dict[str, Kind] = {
        name: "wait" if step.wait is not None else "child" if step.child is not None else "action"
        for name, step in definition.steps.items()
    }
    stage_end: dict[int, datetime] = {}
    compensations_from = state.created_at
    running: dict[tuple[str, bool], tuple[int, datetime]] = {}
    done: list[Bar] = []

    def count(step: str, compensation: bool) -> int:
        return sum(1 for b in done if b.step == step and (b.kind == "compensation") == compensation)

    for h in state.history:
        if h.from_status is not SagaStatus.COMPENSATING and h.to_status is SagaStatus.COMPENSATING:
            compensations_from = h.at
        if h.step is None:
            continue
        compensation = _is_compensation(h)
        kind: Kind = "compensation" if compensation else action_kind.get(h.step, "action")
        key = (h.step, compensation)
        retry = _RETRY.fullmatch(h.detail or "")
        if key in running:
            attempt, start = running.pop(key)
            done.append(Bar(h.step, kind, attempt, start, h.at, h.detail or h.event))
        elif not (retry or h.event in ("StartSaga", "OperatorRetry")):
            # It ended an attempt whose start the history does not show: infer it.
            if compensation:
                start = compensations_from
            else:
                start = stage_end.get(stage_of.get(h.step, 0) - 1, state.created_at)
            attempt = count(h.step, compensation) + 1
            done.append(Bar(h.step, kind, attempt, start, h.at, h.detail or h.event))
        if retry or h.event in ("StartSaga", "OperatorRetry"):
            attempt = int(retry[2]) if retry else count(h.step, compensation) + 1
            running[key] = (attempt, h.at)
        if compensation:
            compensations_from = h.at
        else:
            stage = stage_of.get(h.step, 0)
            stage_end[stage] = max(stage_end.get(stage, h.at), h.at)
    end = now if not state.finished else state.updated_at
    for (step, compensation), (attempt, start) in running.items():
        kind = "compensation" if compensation else action_kind.get(step, "action")
        done.append(Bar(step, kind, attempt, start, max(end, start), "running"))
    return sorted(done, key=lambda b: (b.start, b.end))


def rows(found: Sequence[Bar], start: datetime, end: datetime) -> list[Row]:
    """The bars laid out one row per step (its compensations on a row of their own)."""
    span = max((end - start).total_seconds(), 0.001)
    laid: dict[str, Row] = {}
    for bar in found:
        label = f"{bar.step} (undo)" if bar.kind == "compensation" else bar.step
        left = (bar.start - start).total_seconds() / span
        width = max((bar.end - bar.start).total_seconds() / span, 0.004)
        laid.setdefault(label, Row(label, [])).bars.append((left, min(width, 1 - left), bar))
    return list(laid.values())


def _is_compensation(h: Transition) -> bool:
    if h.event.startswith("Compensation"):
        return True
    if h.event.startswith("Step"):
        return False
    if h.detail and _RETRY.match(h.detail):
        return h.detail.startswith("compensation")
    return h.to_status is SagaStatus.COMPENSATING and h.from_status in (
        SagaStatus.COMPENSATING,
        SagaStatus.NEEDS_OPERATOR,
    )
