"""The result of a run: per-system figures, the headline keys of latest.json, the targets."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from benchmarks.stats import summary_ms, variation

HEADLINE = (
    "sagas_per_s",
    "floor_sagas_per_s",
    "naive_sagas_per_s",
    "idle_p50_ms",
    "idle_p99_ms",
    "loaded_p50_ms",
    "loaded_p99_ms",
    "loaded_p999_ms",
    "steady_cv",
    "orchestrator_rss_mb",
    "redis_bytes_per_saga",
)


@dataclass
class SystemRun:
    """What one system did; latencies in seconds, throughput in sagas per second bucket."""

    name: str
    sagas_per_s: float = 0.0
    completed: int = 0
    failed: int = 0
    throughput: list[int] = field(default_factory=list)
    warmup_s: float = 0.0
    idle: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    loaded_rate: float = 0.0
    orchestrator_rss_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def steady_cv(self) -> float:
        """Coefficient of variation of the completed count per second after warm-up."""
        return variation(self.throughput[int(self.warmup_s) :])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sagas_per_s": round(self.sagas_per_s, 1),
            "steady_cv": round(self.steady_cv, 3),
            "completed": self.completed,
            "failed": self.failed,
            "warmup_s": self.warmup_s,
            "throughput_per_s": self.throughput,
            "orchestrator_rss_mb": round(self.orchestrator_rss_mb, 1),
        }
        if self.idle:
            out["idle_ms"] = {"sagas": len(self.idle), **summary_ms(self.idle)}
        if self.loaded:
            out["loaded_ms"] = {
                "sagas": len(self.loaded),
                "rate": round(self.loaded_rate, 1),
                **summary_ms(self.loaded),
            }
        return {**out, **self.extra}


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    figure: str
    met: bool


def headline(runs: dict[str, SystemRun], redis_bytes_per_saga: float) -> dict[str, float]:
    """The keys latest.json must have, from the three systems' runs."""
    main = runs["saga-worker"]
    idle, loaded = summary_ms(main.idle), summary_ms(main.loaded)
    floor_idle = summary_ms(runs["floor"].idle)
    return {
        "sagas_per_s": round(main.sagas_per_s, 1),
        "floor_sagas_per_s": round(runs["floor"].sagas_per_s, 1),
        "naive_sagas_per_s": round(runs["naive"].sagas_per_s, 1),
        "idle_p50_ms": idle["p50"],
        "idle_p95_ms": idle["p95"],
        "idle_p99_ms": idle["p99"],
        "floor_idle_p50_ms": floor_idle["p50"],
        "loaded_rate": round(main.loaded_rate, 1),
        "loaded_p50_ms": loaded["p50"],
        "loaded_p95_ms": loaded["p95"],
        "loaded_p99_ms": loaded["p99"],
        "loaded_p999_ms": loaded["p99.9"],
        "steady_cv": round(main.steady_cv, 3),
        "orchestrator_rss_mb": round(main.orchestrator_rss_mb, 1),
        "redis_bytes_per_saga": round(redis_bytes_per_saga),
    }


def targets(h: dict[str, float]) -> list[Target]:
    """Issue 14's targets, judged on the headline figures (NaN is never met)."""
    rate, floor = h["sagas_per_s"], h["floor_sagas_per_s"]
    idle, floor_idle, loaded = h["idle_p50_ms"], h["floor_idle_p50_ms"], h["loaded_p99_ms"]
    return [
        Target(
            "vs floor",
            ">= 0.5 x floor",
            f"{rate / floor:.2f} x" if floor else "-",
            rate >= floor / 2 and floor > 0,
        ),
        Target("steady_cv", "<= 0.15", f"{h['steady_cv']}", h["steady_cv"] <= 0.15),
        Target(
            "idle_p50 vs floor",
            "<= 1.25 x floor",
            f"{idle / floor_idle:.2f} x" if floor_idle else "-",
            idle <= 1.25 * floor_idle,
        ),
        Target(
            "loaded_p99_ms",
            "<= 3 x idle p50, <= 100",
            f"{loaded} ({loaded / idle:.1f} x)" if idle else f"{loaded}",
            loaded <= 3 * idle and loaded <= 100,
        ),
        Target(
            "redis_bytes_per_saga",
            "<= 3072",
            f"{h['redis_bytes_per_saga']:.0f}",
            h["redis_bytes_per_saga"] <= 3072,
        ),
        Target(
            "orchestrator_rss_mb",
            "<= 200",
            f"{h['orchestrator_rss_mb']}",
            h["orchestrator_rss_mb"] <= 200,
        ),
    ]


def validate(result: dict[str, Any]) -> None:
    """Raises ValueError unless `result` has every headline key as a number, and the machine."""
    missing = [k for k in HEADLINE if not isinstance(result.get(k), int | float)]
    if missing:
        raise ValueError(f"result lacks numeric {', '.join(missing)}")
    machine = result.get("machine")
    if not isinstance(machine, dict) or "cores" not in machine:
        raise ValueError("result lacks the machine")


def machine(redis_version: str) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "aiokafka": metadata.version("aiokafka"),
        "redis_py": metadata.version("redis"),
        "kafka": _kafka_version(),
        "redis": redis_version,
    }


def write(path: Path, result: dict[str, Any]) -> None:
    validate(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


def _cpu_model() -> str:
    with_name = (
        [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        if Path("/proc/cpuinfo").exists()
        else []
    )
    return with_name[0] if with_name else platform.processor()


def _kafka_version() -> str:
    # The broker devstack runs; its pin is the one place the version is written down.
    pins = Path(__file__).resolve().parent.parent / "devstack" / "versions.env"
    for line in pins.read_text().splitlines() if pins.exists() else []:
        if line.startswith("KAFKA_VERSION="):
            return line.split("=", 1)[1].strip()
    return "unknown"
