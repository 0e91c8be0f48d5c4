"""What each page shows, from what the operations return: query parsing, the values a
template gets, and the filters that make outside data safe to read.

Saga data, errors and dead letters come from outside. Jinja2 escapes all of it; the
filters here also make control characters visible and clip very long values, so a
hostile message reads as text and cannot push the page apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.datastructures import QueryParams

from saga_worker.app import App
from saga_worker.cli.dlq import Letter, Replayed
from saga_worker.cli.operations import Operations, Outcome, Page
from saga_worker.cli.operator import parse_duration
from saga_worker.cli.views import Family, family_view, letter_view, saga_summary, saga_view
from saga_worker.console import timeline
from saga_worker.console.reads import Overview, code_of
from saga_worker.engine.state import SagaState, SagaStatus
from saga_worker.errors import UnknownSagaTypeError

CLIP = 2000  # characters of one value shown; the rest is counted
PAGE = 25  # sagas per page of the list, unless it asks for up to MAX_PAGE
MAX_PAGE = 200
ACTIVE = frozenset({SagaStatus.STARTED, SagaStatus.PENDING, SagaStatus.NEEDS_OPERATOR})


def visible(value: object, clip: int = CLIP) -> str:
    """Text with control characters shown as escapes (newlines and tabs kept), clipped."""
    text = str(value)
    shown = "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text[:clip])
    return shown + (f" … ({len(text) - clip} more characters)" if len(text) > clip else "")


def pretty(value: object) -> str:
    """A value as indented JSON (which escapes control characters), long strings clipped."""
    return orjson.dumps(_clipped(value), option=orjson.OPT_INDENT_2, default=str).decode()


def _clipped(value: object) -> object:
    if isinstance(value, str) and len(value) > CLIP:
        return f"{value[:CLIP]} … ({len(value) - CLIP} more characters)"
    if isinstance(value, Mapping):
        return {str(k): _clipped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clipped(v) for v in value]
    return value


def ago(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s ago"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s ago"
    return f"{whole // 3600}h{whole // 60 % 60:02d}m ago"


FILTERS = {"visible": visible, "pretty": pretty, "ago": ago}


# -- overview -------------------------------------------------------------------------


def overview_context(found: Overview) -> dict[str, Any]:
    chart = found.per_minute
    height, width = 160.0, 600.0
    step = width / max(len(chart.minutes) - 1, 1)

    def points(values: list[int]) -> str:
        return " ".join(
            f"{n * step:.1f},{height - v / chart.peak * height:.1f}" for n, v in enumerate(values)
        )

    return {
        "o": found,
        "states": [s.value for s in SagaStatus],
        "lines": {
            "started": points(chart.started),
            "completed": points(chart.completed),
            "failed": points(chart.failed),
        },
        "totals": {
            "started": sum(chart.started),
            "completed": sum(chart.completed),
            "failed": sum(chart.failed),
        },
        "chart": {"width": width, "height": height, "peak": chart.peak},
    }


# -- the list -------------------------------------------------------------------------


@dataclass(frozen=True)
class SagaQuery:
    """The list's filters, from the query string: state, type, age, business key, page."""

    states: list[SagaStatus]
    saga_type: str | None
    older_than: str | None
    newer_than: str | None
    key: str | None
    offset: int
    limit: int = PAGE

    @classmethod
    def parse(cls, params: QueryParams, app: App) -> SagaQuery:
        known = {s.value: s for s in SagaStatus}
        names = [n for n in params.getlist("state") if n]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown state {unknown[0]!r}")
        saga_type = params.get("type") or None
        if saga_type is not None:
            try:
                app.saga_type(saga_type)
            except UnknownSagaTypeError as exc:
                raise ValueError(str(exc)) from None
        for option in ("older_than", "newer_than"):
            if params.get(option):
                parse_duration(params[option])
        offset, limit = params.get("offset") or "0", params.get("limit") or str(PAGE)
        if not offset.isdigit():
            raise ValueError(f"offset {offset!r} is not a number")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE:
            raise ValueError(f"limit {limit!r} is not a number from 1 to {MAX_PAGE}")
        return cls(
            [known[n] for n in names],
            saga_type,
            params.get("older_than") or None,
            params.get("newer_than") or None,
            (params.get("key") or "").strip() or None,
            int(offset),
            int(limit),
        )

    async def run(self, ops: Operations) -> Page:
        if self.key is not None:
            state = await ops.find(self.key)
            return Page([state] if state is not None and self.admits(state) else [], None)
        return await ops.list(
            self.states or list(SagaStatus),
            older_than=parse_duration(self.older_than) if self.older_than else None,
            newer_than=parse_duration(self.newer_than) if self.newer_than else None,
            offset=self.offset,
            limit=self.limit,
            saga_type=self.saga_type,
        )

    def admits(self, state: SagaState) -> bool:
        return (not self.states or state.status in self.states) and self.saga_type in (
            None,
            state.definition_name,
        )

    def page(self, offset: int) -> str:
        """The query string of another page of the same list."""
        pairs = [("state", s.value) for s in self.states] + [
            (name, value)
            for name, value in (
                ("type", self.saga_type),
                ("older_than", self.older_than),
                ("newer_than", self.newer_than),
            )
            if value
        ]
        pairs += [("limit", str(self.limit)), ("offset", str(offset))]
        return urlencode(pairs)


def sagas_context(
    query: SagaQuery | None, found: Page | str, app: App, now: datetime
) -> dict[str, Any]:
    base = {"states": list(SagaStatus), "types": [s.name for s in app.sagas]}
    if query is None or isinstance(found, str):
        return {**base, "q": query, "rows": [], "problem": found, "next": None}
    return {
        **base,
        "q": query,
        "rows": [saga_summary(s, now, app.business_key(s)) for s in found.sagas],
        "problem": None,
        "next": None if found.next_offset is None else query.page(found.next_offset),
    }


# -- one saga -------------------------------------------------------------------------


async def saga_context(ops: Operations, app: App, state: SagaState) -> dict[str, Any]:
    app.saga_type_of(state)
    definition = app.registry.get(state.definition_name, state.definition_version)
    family = Family(definition, await ops.parent_of(state), await ops.children_of(state))
    now = ops.now()
    found = timeline.bars(state, definition, now)
    end = now if not state.finished else state.updated_at
    return {
        "s": saga_view(state, app.business_key(state)),
        "family": family_view(state, family),
        "rows": timeline.rows(found, state.created_at, max(end, state.created_at)),
        "span_s": max((end - state.created_at).total_seconds(), 0.0),
        "can_retry": state.status is SagaStatus.NEEDS_OPERATOR,
        "can_abort": state.status in ACTIVE,
        "waiting": [w for w, v in family_view(state, family)["waits"].items() if "deadline" in v],
    }


def signal_of(form: Any) -> tuple[str, dict[str, Any]]:
    step = str(form.get("step") or "")
    try:
        body = orjson.loads(str(form.get("data") or "{}"))
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise ValueError("the signal's data must be a JSON object")
    return step, body


def outcome_text(verb: str, saga_id: str, outcome: Outcome) -> str:
    if outcome.state is None:
        return f"{verb}: no saga {saga_id}"
    if not outcome.changed:
        return f"{verb} refused: {outcome.reason}"
    done = {"retry": "resumed", "abort": "aborted", "signal": "signalled"}[verb]
    return f"{done} saga {outcome.state.saga_id}: now {outcome.state.status.value}"


# -- dead letters ---------------------------------------------------------------------


def letters_context(letters: list[Letter], params: Mapping[str, str]) -> dict[str, Any]:
    code, topic = params.get("code") or None, params.get("topic") or None
    by_code = Counter(code_of(x) for x in letters)
    by_topic = Counter(x.record.source_topic for x in letters if x.record is not None)
    shown = [
        x
        for x in reversed(letters)  # newest first
        if code in (None, code_of(x))
        and topic in (None, x.record.source_topic if x.record else None)
    ]
    return {
        "letters": [
            {
                **letter_view(x),
                "headers": [(k, _header(v)) for k, v in (x.record.headers if x.record else ())],
            }
            for x in shown
        ],
        "by_code": sorted(by_code.items()),
        "by_topic": sorted(by_topic.items()),
        "code": code,
        "topic": topic,
        "read": len(letters),
    }


def _header(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", errors="backslashreplace")


def replay_text(result: Replayed) -> str:
    sent = result.sent.total()
    parts = [f"replayed {sent} dead letters"]
    parts += [f"{topic}: {n}" for topic, n in sorted(result.sent.items())]
    if result.already:
        parts.append(f"skipped {len(result.already)} replayed before (tick 'again' to resend)")
    parts += [f"skipped {letter}: {why}" for letter, why in result.skipped]
    return "; ".join(parts)
