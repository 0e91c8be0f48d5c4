"""How the operator commands present sagas, stats and dead letters: JSON views and rich tables.

Saga data, errors and dead-letter bodies come from outside, so they are printed
as plain `Text`, never parsed as rich markup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from saga_worker.cli.dlq import Letter
from saga_worker.cli.operations import Child, Page
from saga_worker.engine.decide import TIMEOUT, timer_id
from saga_worker.engine.definition import SagaDefinition
from saga_worker.engine.state import SagaState, SagaStatus, StepState, StepStatus, from_ms, to_ms
from saga_worker.runtime.kafka_admin import GroupLag

PREVIEW_CHARS = 80

STATUS_STYLE = {
    SagaStatus.STARTED: "cyan",
    SagaStatus.PENDING: "cyan",
    SagaStatus.COMPENSATING: "yellow",
    SagaStatus.COMPLETED: "green",
    SagaStatus.FAILED: "red",
    SagaStatus.NEEDS_OPERATOR: "bold magenta",
}

console = Console(highlight=False)


# -- sagas ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """Where a saga stands among sagas: what its waits wait for, who started it, and
    the child sagas it started."""

    definition: SagaDefinition
    parent: SagaState | None = None
    children: list[Child] = field(default_factory=list)


def waits_view(state: SagaState, definition: SagaDefinition) -> dict[str, Any]:
    """Each wait step that is waiting (with its deadline) or keeps an early event."""
    waits: dict[str, Any] = {}
    for step in definition.waits:
        st = state.step(step.name)
        if st.status is StepStatus.PENDING:
            due = state.timers.get(timer_id(TIMEOUT, step.name, st.attempt))
            waits[step.name] = {
                "topic": step.command_topic,
                "deadline": due.isoformat() if due else None,
            }
        elif st.early is not None:
            waits[step.name] = {"topic": step.command_topic, "early_event": st.early}
    return waits


def child_view(child: Child) -> dict[str, Any]:
    return {
        "step": child.step,
        "saga_id": child.saga_id,
        "compensation": child.compensation,
        "saga_type": child.state.definition_name if child.state else None,
        "status": child.state.status.value if child.state else None,
        "children": [child_view(c) for c in child.children],
    }


def family_view(state: SagaState, family: Family) -> dict[str, Any]:
    parent = state.parent
    return {
        "waits": waits_view(state, family.definition),
        "parent": None
        if parent is None
        else {
            "saga_id": parent.saga_id,
            "step": parent.step,
            "compensation": parent.compensation,
            "status": family.parent.status.value if family.parent else None,
        },
        "children": [child_view(c) for c in family.children],
    }


def saga_view(state: SagaState, business_key: str | None) -> dict[str, Any]:
    """Everything about a saga, with readable names and ISO times."""
    return {
        "saga_id": state.saga_id,
        "saga_type": state.definition_name,
        "business_key": business_key,
        "status": state.status.value,
        "definition": {"name": state.definition_name, "version": state.definition_version},
        "created_at": state.created_at.isoformat(),
        "updated_at": state.updated_at.isoformat(),
        "error": state.error,
        "operator_reason": state.operator_reason,
        "data": state.data,
        "steps": {name: _step_view(step) for name, step in state.steps.items()},
        "history": [
            {
                "at": h.at.isoformat(),
                "after_ms": to_ms(h.at) - to_ms(state.created_at),
                "event": h.event,
                "from": h.from_status.value if h.from_status else None,
                "to": h.to_status.value,
                "step": h.step,
                "detail": h.detail,
            }
            for h in state.history
        ],
    }


def saga_summary(state: SagaState, now: datetime, business_key: str | None) -> dict[str, Any]:
    last = state.history[-1] if state.history else None
    return {
        "saga_id": state.saga_id,
        "saga_type": state.definition_name,
        "business_key": business_key,
        "status": state.status.value,
        "last_step": last.step if last else None,
        "updated_at": state.updated_at.isoformat(),
        "age_s": round((now - state.updated_at).total_seconds(), 3),
        "reason": state.operator_reason or state.error,
    }


def _step_view(step: StepState) -> dict[str, Any]:
    return {**asdict(step), "status": step.status.value}


def print_saga(state: SagaState, business_key: str | None, family: Family | None = None) -> None:
    head = Table.grid(padding=(0, 2))
    head.add_row("saga", Text(state.saga_id))
    head.add_row("key", Text(business_key or "-"))
    head.add_row("status", _status(state.status))
    head.add_row("definition", f"{state.definition_name} v{state.definition_version}")
    head.add_row("started", f"{state.created_at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC")
    head.add_row("updated", _since(state.updated_at - state.created_at))
    if state.error:
        head.add_row("error", Text(state.error))
    if state.operator_reason:
        head.add_row("needs operator", Text(state.operator_reason))
    if family is not None:
        _family_rows(head, state, family)
    console.print(head)
    console.print("\n[bold]data[/bold]")
    console.print(JSON.from_data(state.data, default=str))
    console.print(_steps_table(state))
    if family is not None and family.children:
        console.print(_tree(state, family.children))
    console.print(_timeline(state))


def _family_rows(head: Table, state: SagaState, family: Family) -> None:
    if state.parent is not None:
        status = family.parent.status.value if family.parent else "expired"
        role = "compensation of" if state.parent.compensation else "child of"
        head.add_row("parent", Text(f"{role} {state.parent.saga_id} step {state.parent.step}"
                                    f" ({status})"))  # fmt: skip
    for name, wait in waits_view(state, family.definition).items():
        if "deadline" in wait:
            text = f"{name}: waiting on {wait['topic']} until {wait['deadline'] or '-'}"
        else:
            text = f"{name}: an event on {wait['topic']} is kept for when the saga gets there"
        head.add_row("wait", Text(text))


def _tree(state: SagaState, children: Sequence[Child]) -> Text:
    """The saga and the child sagas it started, one line each, indented by depth."""
    lines = Text("child sagas\n", style="bold")
    lines.append(f"{state.definition_name} {state.saga_id} ")
    lines.append(state.status.value, style=STATUS_STYLE[state.status])
    lines.append("\n")

    def add(nodes: Sequence[Child], indent: str) -> None:
        for n, child in enumerate(nodes):
            last = n == len(nodes) - 1
            role = "compensation" if child.compensation else "step"
            lines.append(f"{indent}{'└── ' if last else '├── '}{role} {child.step}: ")
            if child.state is None:
                lines.append(f"{child.saga_id} (not started, or expired)\n", style="dim")
            else:
                lines.append(f"{child.state.definition_name} {child.saga_id} ")
                lines.append(child.state.status.value, style=STATUS_STYLE[child.state.status])
                lines.append("\n")
            add(child.children, indent + ("    " if last else "│   "))

    add(children, "")
    return lines


def _steps_table(state: SagaState) -> Table:
    table = Table(title="steps", title_justify="left")
    table.add_column("step", no_wrap=True)
    for column in ("status", "attempts", "compensations", "result / error"):
        table.add_column(column)
    for name, step in state.steps.items():
        flags = [f for f, on in (("uncertain", step.uncertain), ("stuck", step.stuck)) if on]
        status = step.status.value + (f" ({', '.join(flags)})" if flags else "")
        outcome = step.error if step.error is not None else _compact(step.result)
        table.add_row(name, status, str(step.attempt), str(step.comp_attempt), Text(outcome or ""))
    return table


def _timeline(state: SagaState) -> Text:
    """One line per transition, its detail indented below: reads at any terminal width."""
    lines = Text("timeline\n", style="bold")
    for h in state.history:
        before = h.from_status.value if h.from_status else "-"
        moved = h.to_status.value if before == h.to_status.value else f"{before} -> {h.to_status}"
        lines.append(f"{_since(h.at - state.created_at):>9}  {h.event:<24} ")
        lines.append(f"{moved:<26}", style=STATUS_STYLE[h.to_status])
        lines.append(f" {h.step or ''}\n")
        if h.detail:
            lines.append(f"{'':11}{h.detail}\n", style="dim")
    return lines


def print_page(page: Page, now: datetime, business_key: Callable[[SagaState], str | None]) -> None:
    table = Table()
    table.add_column("saga", overflow="fold")  # whole, to be copied
    table.add_column("status", no_wrap=True)
    for column in ("type", "key", "updated", "reason"):
        table.add_column(column)
    for state in page.sagas:
        s = saga_summary(state, now, business_key(state))
        table.add_row(
            Text(s["saga_id"]),
            _status(state.status),
            Text(s["saga_type"]),
            Text(s["business_key"] or ""),
            _ago(now - state.updated_at),
            Text(s["reason"] or ""),
        )
    console.print(table)
    more = f"; next page: --offset {page.next_offset}" if page.next_offset is not None else ""
    console.print(f"{_count(len(page.sagas), 'saga')}{more}")


def _status(status: SagaStatus) -> Text:
    return Text(status.value, style=STATUS_STYLE[status])


# -- the system -----------------------------------------------------------------------


def print_stats(
    counts: Mapping[str, int], backlog: Mapping[str, int], lags: Sequence[GroupLag]
) -> None:
    sagas = Table(title="sagas by state", title_justify="left")
    sagas.add_column("state")
    sagas.add_column("sagas", justify="right")
    for status in SagaStatus:
        sagas.add_row(_status(status), str(counts.get(status.value, 0)))
    console.print(sagas)
    work = Table(title="last minute and backlog", title_justify="left")
    work.add_column("measure")
    work.add_column("value", justify="right")
    for name, value in backlog.items():
        work.add_row(name.replace("_", " "), str(value))
    console.print(work)
    lag = Table(title="consumer lag", title_justify="left")
    for column in ("group", "lag", "partitions", "committed"):
        lag.add_column(column, justify="left" if column == "group" else "right")
    for g in lags:
        committed = str(g.committed_partitions) if g.committed_partitions else "never"
        lag.add_row(g.group, str(g.lag), str(g.partitions), committed)
    console.print(lag)


# -- dead letters ---------------------------------------------------------------------


def letter_view(letter: Letter) -> dict[str, Any]:
    r = letter.record
    return {
        "id": letter.id,
        "dlq_partition": letter.partition,
        "dlq_offset": letter.offset,
        "time": from_ms(letter.timestamp_ms).isoformat(),
        "source_topic": r.source_topic if r else None,
        "source_partition": r.partition if r else None,
        "source_offset": r.offset if r else None,
        "code": r.error_code if r else "unreadable",
        "reason": r.reason if r else letter.problem,
        "worker": r.worker if r else None,
        "failed_at": r.failed_at.isoformat() if r else None,
        "replays": letter.replays,  # its message had been sent back this often before failing
        "replayed_from": letter.lineage.replayed_from if letter.lineage else None,
        "replayed": letter.replayed,  # how often this letter has been sent back since
        "value_bytes": len(r.value) if r and r.value is not None else None,
        "preview": preview(r.value if r else None),
    }


def print_letters(letters: Sequence[Letter]) -> None:
    table = Table()
    table.add_column("id", no_wrap=True)
    for column in ("time", "source", "code", "reason", "replays", "value"):
        table.add_column(column)
    for letter in letters:
        v = letter_view(letter)
        source = f"{v['source_topic']}[{v['source_partition']}]@{v['source_offset']}"
        table.add_row(
            letter.id,
            v["time"][:19].replace("T", " "),
            Text(source if letter.record else "?"),
            Text(str(v["code"] or "")),
            Text(v["reason"] or ""),
            Text(_replays(letter)),
            Text(v["preview"]),
        )
    console.print(table)
    console.print(_count(len(letters), "dead letter"))


def _replays(letter: Letter) -> str:
    """`replay 2, from 0:7`: its message failed again on its second replay, of the
    letter 0:7; `sent back 1x`: this letter has been replayed since."""
    parts = []
    if letter.lineage is not None:
        parts.append(f"replay {letter.lineage.replays}, from {letter.lineage.replayed_from}")
    if letter.replayed:
        parts.append(f"sent back {letter.replayed}x")
    return ", ".join(parts)


def preview(value: bytes | None) -> str:
    """The start of a value as one printable line."""
    if value is None:
        return "(no value)"
    text = value[:PREVIEW_CHARS].decode("utf-8", errors="backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text + ("..." if len(value) > PREVIEW_CHARS else "")


# -- formatting -----------------------------------------------------------------------


def _since(delta: timedelta) -> str:
    """A time after the saga started: +0.412s, +3m05s, +2h10m."""
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"+{seconds:.3f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"+{minutes}m{secs:02d}s"
    return f"+{minutes // 60}h{minutes % 60:02d}m"


def _ago(delta: timedelta) -> str:
    whole = timedelta(seconds=int(delta.total_seconds()))
    return _since(whole).removeprefix("+").replace(".000s", "s") + " ago"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _compact(value: Mapping[str, Any] | None) -> str:
    if value is None:
        return ""
    text = ", ".join(f"{k}={v}" for k, v in value.items())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."
