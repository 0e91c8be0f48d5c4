"""`make bench`: saga-worker against a pass-through floor and a naive orchestrator.

    python -m benchmarks.run [--quick] [--duration S] [--in-flight N] [--systems a,b]

Per system, in fresh topics and keys: create the topics, seed the participants,
start the workers, prove the pipeline with one saga, then a closed loop of
`--in-flight` sagas (warm-up, then the steady window that is measured), drain,
and idle latency (one saga at a time; not for the scaling run, saga-worker-x2).
saga-worker also gets an open loop at half its measured rate, and its
orchestrator's RSS and Redis footprint are read before its workers stop. Every
process started is stopped and every key and topic deleted, on errors and Ctrl-C
too. Writes benchmarks/results/latest.json and latest.png, prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import footprint, report, results
from benchmarks.cpu import CpuSnapshot, cpu_per_saga, service_pids
from benchmarks.driver import Driver, Observed, OrderStream
from benchmarks.results import SystemRun
from benchmarks.stats import per_second, steady_rate
from benchmarks.systems import (
    BENCH_SEED,
    FLOOR,
    NAIVE,
    SAGA_WORKER,
    SCALED,
    SYSTEMS,
    System,
    build,
    check_alive,
    discard,
    prepare,
    rss_mb,
    stop,
)
from participants.app import saga_id_for_order
from saga_worker.runtime.redis_client import RedisClient, is_cluster, make_redis
from saga_worker.settings import Settings, load_settings

RESULTS = Path("benchmarks/results")
LOGS = Path(".runtime/bench")
ORDER_SEED = 2026  # every system gets the same orders
FIRST_SAGA_WITHIN_S = 90.0  # workers start, join their groups, and finish one saga
DRAIN_WITHIN_S = 60.0


@dataclass(frozen=True)
class Options:
    duration_s: float = 60.0  # the measured steady window, per system
    warmup_s: float = 15.0
    in_flight: int = 1000
    idle_sagas: int = 200  # saga-worker; the others get half
    loaded_s: float = 30.0
    systems: tuple[str, ...] = SYSTEMS


QUICK = Options(duration_s=8.0, warmup_s=4.0, in_flight=200, idle_sagas=30, loaded_s=6.0)


async def bench_system(
    name: str, *, base: Settings, run_id: str, opts: Options, redis: RedisClient, console: Console
) -> tuple[SystemRun, dict[str, Any]]:
    system = build(name, base, run_id, LOGS / run_id)
    run = SystemRun(name, warmup_s=opts.warmup_s)
    storage: dict[str, Any] = {}
    try:
        await prepare(system, redis)
        memory_before = await footprint.used_memory(redis)
        for worker in system.workers:
            worker.start()
        started = ", ".join(f"{w.name} {w.pid}" for w in system.workers)
        console.print(f"[bold]{name}[/]: started {started}; logs in {LOGS / run_id / name}")
        async with Driver(system.settings, OrderStream(BENCH_SEED, ORDER_SEED)) as driver:
            first = await driver.idle(1, FIRST_SAGA_WITHIN_S)
            _require(system, first, "the first saga")
            start = time.time()
            pids = {w.name: w.pid for w in system.workers if w.pid is not None}
            cpu = asyncio.create_task(
                _steady_cpu({**pids, "driver": os.getpid(), **service_pids()}, opts)
            )
            load = await driver.closed_loop(opts.in_flight, opts.warmup_s + opts.duration_s)
            times = load.completion_times()
            run.throughput = per_second(times, start, start + opts.warmup_s + opts.duration_s)
            run.sagas_per_s = steady_rate(
                times, start + opts.warmup_s, start + opts.warmup_s + opts.duration_s
            )
            run.completed, run.failed = len(load.completed), len(load.failed)
            before, after = await cpu
            steady = round(run.sagas_per_s * opts.duration_s)
            run.extra["cpu_ms_per_saga"] = cpu_per_saga(before, after, steady)
            console.print(
                f"  closed loop: {run.sagas_per_s:.0f} sagas/s, in flight {opts.in_flight}"
            )
            await driver.drain(DRAIN_WITHIN_S)
            if name != SCALED:  # the scaling run records throughput alone
                idle_count = (
                    opts.idle_sagas if name == SAGA_WORKER else max(1, opts.idle_sagas // 2)
                )
                idle = await driver.idle(idle_count, DRAIN_WITHIN_S)
                _require(system, idle, "the idle sagas")
                run.idle = idle.latencies()
            if name == SAGA_WORKER:
                run.loaded_rate = run.sagas_per_s / 2
                loaded = await driver.open_loop(run.loaded_rate, opts.loaded_s)
                await driver.drain(DRAIN_WITHIN_S)
                _require(system, loaded, "the open-loop sagas")
                run.loaded = loaded.latencies()
        run.orchestrator_rss_mb = rss_mb(_pid(system))
        if name == SAGA_WORKER:
            storage = await _storage(system, redis, load, memory_before)
        console.print(f"  orchestrator RSS {run.orchestrator_rss_mb:.0f} MB")
    finally:
        stop(system)
        await discard(system, redis)
    return run, storage


async def _steady_cpu(pids: dict[str, int], opts: Options) -> tuple[CpuSnapshot, CpuSnapshot]:
    await asyncio.sleep(opts.warmup_s)
    before = CpuSnapshot.take(pids)
    await asyncio.sleep(opts.duration_s)
    return before, CpuSnapshot.take(pids)


def _require(system: System, observed: Observed, what: str) -> None:
    check_alive(system)
    missing = len(observed.expected) - len(observed.completed)
    if missing:
        raise RuntimeError(
            f"{system.name}: {missing} of {len(observed.expected)} of {what} did not complete "
            f"({len(observed.failed)} failed); see the logs of {system.name}"
        )


def _pid(system: System) -> int:
    pid = system.orchestrator.pid
    if pid is None or not system.orchestrator.alive:
        raise RuntimeError(f"{system.name}: the orchestrator is not running")
    return pid


async def _storage(
    system: System, redis: RedisClient, load: Observed, memory_before: int
) -> dict[str, Any]:
    saga_ids = [saga_id_for_order(o) for o in load.completed]
    kept = await footprint.saga_bytes(redis, system.settings.keys, saga_ids)
    grown = await footprint.used_memory(redis) - memory_before
    kept["used_memory_delta_per_saga"] = round(grown / kept["finished"]) if kept["finished"] else 0
    return kept


async def main(opts: Options, console: Console) -> dict[str, Any]:
    base = load_settings()
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    redis = make_redis(base)
    # On a Redis Cluster (`make bench REDIS=cluster`) the results are named apart, so the
    # single Redis's stay the headline: `latest-cluster.json` and `.png`.
    stem = "latest-cluster" if is_cluster(redis) else "latest"
    runs: dict[str, SystemRun] = {}
    storage: dict[str, Any] = {}
    try:
        info = await footprint.server_info(redis)
        for name in opts.systems:
            runs[name], kept = await bench_system(
                name, base=base, run_id=run_id, opts=opts, redis=redis, console=console
            )
            storage = storage or kept
    finally:
        await redis.aclose()
    for missing in {SAGA_WORKER, FLOOR, NAIVE} - set(runs):
        runs[missing] = SystemRun(missing, sagas_per_s=float("nan"))
    head = results.headline(runs, storage.get("total", float("nan")))
    judged = results.targets(head)
    result = {
        **head,
        "run_id": run_id,
        "options": dict(vars(opts)),
        "redis_storage": storage,
        "scaled_sagas_per_s": round(runs[SCALED].sagas_per_s, 1) if SCALED in runs else None,
        "systems": {name: runs[name].to_dict() for name in opts.systems},
        "targets": [vars(t) for t in judged],
        "machine": results.machine(str(info.get("redis_version", "unknown"))),
        "redis": "cluster" if is_cluster(redis) else "single",
    }
    results.write(RESULTS / f"{stem}.json", result)
    report.draw(RESULTS / f"{stem}.png", [runs[n] for n in opts.systems])
    report.print_tables(console, [runs[n] for n in opts.systems], judged)
    console.print(f"wrote {RESULTS / f'{stem}.json'} and {RESULTS / f'{stem}.png'}")
    return result


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (CI)")
    parser.add_argument(
        "--duration", type=float, help="seconds of steady state measured per system"
    )
    parser.add_argument("--warmup", type=float, help="seconds of load before measuring")
    parser.add_argument("--in-flight", type=int, help="sagas kept in flight by the closed loop")
    parser.add_argument("--systems", help=f"comma-separated subset of {','.join(SYSTEMS)}")
    args = parser.parse_args(argv)
    opts = QUICK if args.quick else Options()
    if args.duration is not None:
        opts = replace(opts, duration_s=args.duration)
    if args.warmup is not None:
        opts = replace(opts, warmup_s=args.warmup)
    if args.in_flight is not None:
        opts = replace(opts, in_flight=args.in_flight)
    if args.systems:
        chosen = tuple(s.strip() for s in args.systems.split(","))
        unknown = set(chosen) - set(SYSTEMS)
        if unknown:
            parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
        opts = replace(opts, systems=chosen)
    return opts


def cli() -> None:
    opts = parse()
    # The watcher's first offset lookups can race leader elections on fresh topics; aiokafka
    # retries them but logs each at ERROR. A real loss shows as sagas that never complete.
    logging.getLogger("aiokafka.consumer.fetcher").setLevel(logging.CRITICAL)
    console = Console()

    async def guarded() -> None:
        task = asyncio.current_task()
        assert task is not None
        # SIGTERM unwinds like Ctrl-C: through the finally blocks that stop the workers.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await main(opts, console)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(guarded())


if __name__ == "__main__":
    cli()
