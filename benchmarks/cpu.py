"""Where the CPU went during the steady window, from /proc (Linux).

On two cores shared by the broker, Redis, every worker and the driver, sagas per
second is CPU per saga in disguise: per process CPU seconds over the window,
divided by the sagas completed in it, says who spends it. `other` is what the
machine was busy with besides: a neighbour's load shows up there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
SERVICES = {"kafka": "kafka.Kafka", "redis": "redis-server"}


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a live process; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    # Fields after the parenthesised command name; utime and stime are 14th and 15th.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) * TICK_S, sum(values) * TICK_S


def service_pids() -> dict[str, int]:
    """The broker's and Redis's pids, found by their command lines."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        for name, marker in SERVICES.items():
            if marker in cmdline and name not in found:
                found[name] = int(entry.name)
    return found


@dataclass(frozen=True)
class CpuSnapshot:
    processes: Mapping[str, float]  # name -> CPU seconds
    busy_s: float
    total_s: float

    @classmethod
    def take(cls, pids: Mapping[str, int]) -> CpuSnapshot:
        busy, total = machine_cpu_s()
        return cls({name: process_cpu_s(pid) for name, pid in pids.items()}, busy, total)


def cpu_per_saga(before: CpuSnapshot, after: CpuSnapshot, sagas: int) -> dict[str, float]:
    """CPU milliseconds per completed saga by process, plus `other` and the machine's busy share."""
    spent = {name: after.processes[name] - before.processes[name] for name in before.processes}
    busy = after.busy_s - before.busy_s
    out = {name: round(1000 * s / sagas, 3) if sagas else 0.0 for name, s in spent.items()}
    other = busy - sum(spent.values())
    out["other"] = round(1000 * other / sagas, 3) if sagas else 0.0
    out["machine_busy_share"] = round(busy / (after.total_s - before.total_s), 3)
    return out
