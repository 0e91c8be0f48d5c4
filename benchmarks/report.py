"""The run for people: a rich table on the terminal and a PNG (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI runner or over ssh

import matplotlib.pyplot as plt
from matplotlib import ticker
from rich.console import Console
from rich.table import Table

from benchmarks.results import SystemRun, Target
from benchmarks.stats import summary_ms


def print_tables(console: Console, runs: Sequence[SystemRun], judged: Sequence[Target]) -> None:
    systems = Table(title="Systems (closed loop, steady state after warm-up)")
    for column in (
        "system",
        "sagas/s",
        "cv/s",
        "completed",
        "idle p50/p95/p99/p99.9 ms",
        "loaded p50/p95/p99/p99.9 ms",
        "orch. RSS MB",
    ):
        systems.add_column(column, justify="right")
    for run in runs:
        systems.add_row(
            run.name,
            f"{run.sagas_per_s:.0f}",
            f"{run.steady_cv:.2f}",
            str(run.completed),
            _triple(run.idle),
            f"{_triple(run.loaded)} @ {run.loaded_rate:.0f}/s" if run.loaded else "-",
            f"{run.orchestrator_rss_mb:.0f}",
        )
    console.print(systems)
    cpu = Table(title="CPU ms per completed saga, steady window (other: the rest of the machine)")
    cpu.add_column("process")
    for run in runs:
        cpu.add_column(run.name, justify="right")
    names = dict.fromkeys(n for run in runs for n in run.extra.get("cpu_ms_per_saga", {}))
    for name in names:
        cpu.add_row(name, *(_cell(run.extra.get("cpu_ms_per_saga", {}).get(name)) for run in runs))
    console.print(cpu)
    goals = Table(title="Targets (issue 14)")
    for column in ("target", "goal", "measured", "met"):
        goals.add_column(column)
    for target in judged:
        goals.add_row(
            target.name, target.goal, target.figure, "[green]yes[/]" if target.met else "[red]no[/]"
        )
    console.print(goals)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _triple(latencies: Sequence[float]) -> str:
    if not latencies:
        return "-"
    s = summary_ms(latencies)
    return f"{s['p50']:.1f} / {s['p95']:.1f} / {s['p99']:.1f} / {s['p99.9']:.1f}"


def draw(path: Path, runs: Sequence[SystemRun]) -> None:
    fig, (over_time, latency) = plt.subplots(1, 2, figsize=(13, 5))
    for index, run in enumerate(runs):
        color = f"C{index}"  # one colour per system in both panels
        over_time.plot(range(len(run.throughput)), run.throughput, color=color, label=run.name)
        over_time.axvline(run.warmup_s, color=color, linestyle=":", linewidth=0.8)
        for label, style, values in (("idle", "-", run.idle), ("loaded", "--", run.loaded)):
            if values:
                ms = sorted(v * 1000 for v in values)
                shares = [(i + 1) / len(ms) for i in range(len(ms))]
                latency.plot(ms, shares, color=color, linestyle=style, label=f"{run.name} {label}")
    over_time.set(
        title="Completed sagas per second (closed loop; dotted: end of warm-up)",
        xlabel="seconds since load start",
        ylabel="sagas/s",
    )
    over_time.legend()
    latency.set(
        title="Saga latency, OrderCreated sent to outcome read (CDF)",
        xlabel="ms (log scale)",
        ylabel="share of sagas",
        xscale="log",
    )
    latency.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    latency.grid(True, which="both", alpha=0.3)
    latency.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
