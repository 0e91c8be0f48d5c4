"""`make hops`: where a saga's latency goes, hop by hop, idle or under an open loop.

    python -m benchmarks.hops [--rate R] [--duration S] [--sagas N] [--system NAME]

Runs one system as `make bench` does (fresh topics and keys, its real processes),
then either N sagas one after the other (idle, the default) or an open loop of R
sagas/s for S seconds. It then reads back every record of the run's topics and, saga
by saga, takes the time between consecutive records by their producer timestamps:
a hop is one record's send to the next one's, so it holds the broker's delivery,
the worker's wait for its batch, and its work. It prints each hop's p50/p90/p99,
the end-to-end latencies the driver saw, and the CPU milliseconds per saga of every
process over the phase. Timestamps are whole milliseconds: a hop reads 0 to 1 ms
short or long.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table

from benchmarks.cpu import process_cpu_s, service_pids
from benchmarks.driver import Driver, Observed, OrderStream
from benchmarks.run import LOGS, ORDER_SEED
from benchmarks.stats import percentile
from benchmarks.systems import BENCH_SEED, SAGA_WORKER, SYSTEMS, build, discard, prepare, stop
from participants.app import saga_id_for_order
from saga_worker.runtime.kafka_clients import KafkaConnection
from saga_worker.runtime.redis_client import make_redis
from saga_worker.settings import load_settings
from schemas import topics as t

FIRST_SAGA_WITHIN_S = 90.0
DRAIN_WITHIN_S = 60.0


@dataclass(frozen=True)
class Sent:
    """One record of a run: the saga it belongs to, its logical topic, when it was sent."""

    saga_id: str
    topic: str
    at_ms: int


def hops(records: Iterable[Sent]) -> dict[str, list[int]]:
    """Milliseconds between consecutive records of each saga, by `from -> to` topics."""
    by_saga: dict[str, list[Sent]] = defaultdict(list)
    for record in records:
        by_saga[record.saga_id].append(record)
    found: dict[str, list[int]] = defaultdict(list)
    for sent in by_saga.values():
        sent.sort(key=lambda r: r.at_ms)
        for before, after in pairwise(sent):
            hop = f"{_short(before.topic)} -> {_short(after.topic)}"
            found[hop].append(after.at_ms - before.at_ms)
    return dict(found)


def _short(topic: str) -> str:
    return topic.rpartition(".")[2]  # InventoryService.ReserveItems: ReserveItems


def saga_of(topic: str, key: bytes | None) -> str:
    """The saga a record belongs to: start messages are keyed by their order."""
    text = (key or b"").decode(errors="replace")
    return saga_id_for_order(text) if topic == t.ORDER_CREATED else text


async def read_back(conn: KafkaConnection, physical: Mapping[str, str]) -> list[Sent]:
    """Every record of the run's topics (physical name -> logical), from the start."""
    consumer = AIOKafkaConsumer(*physical, **conn.options(), auto_offset_reset="earliest")
    await consumer.start()
    found: list[Sent] = []
    try:
        quiet = 0
        while quiet < 3:  # three empty polls in a row: read to the end
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            quiet = 0 if batch else quiet + 1
            for part in batch.values():
                for r in part:
                    topic = physical[r.topic]
                    found.append(Sent(saga_of(topic, r.key), topic, r.timestamp))
    finally:
        await consumer.stop()
    return found


async def measure(name: str, rate: float, duration_s: float, sagas: int) -> None:
    console = Console()
    base = load_settings()
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    redis = make_redis(base)
    system = build(name, base, run_id, LOGS / run_id)
    try:
        await prepare(system, redis)
        for worker in system.workers:
            worker.start()
        pids = {w.name: w.pid for w in system.workers if w.pid is not None}
        pids |= {**service_pids(), "driver": os.getpid()}
        async with Driver(system.settings, OrderStream(BENCH_SEED, ORDER_SEED)) as driver:
            await driver.idle(1, FIRST_SAGA_WITHIN_S)
            before = {n: process_cpu_s(p) for n, p in pids.items()}
            observed: Observed
            if rate > 0:
                observed = await driver.open_loop(rate, duration_s)
                await driver.drain(DRAIN_WITHIN_S)
            else:
                observed = await driver.idle(sagas, DRAIN_WITHIN_S)
            cpu = {n: process_cpu_s(p) - before[n] for n, p in pids.items()}
        physical = {system.settings.topics.physical(n): n for n in t.ALL_TOPICS}
        found = await read_back(system.settings.kafka, physical)
    finally:
        stop(system)
        await discard(system, redis)
        await redis.aclose()
    done = len(observed.completed)
    shape = f"open loop at {rate:g}/s for {duration_s:g} s" if rate > 0 else "idle"
    latencies = [s * 1000 for s in observed.latencies()]
    console.print(
        f"{name}, {shape}: {done} sagas, end to end p50 / p90 / p99 "
        + " / ".join(f"{percentile(latencies, q):.1f}" for q in (0.5, 0.9, 0.99))
        + " ms"
    )
    table = Table("hop", "count", "p50 ms", "p90 ms", "p99 ms", title="hops (send to send)")
    phase = {saga_id_for_order(order) for order in observed.expected}
    measured = hops(r for r in found if r.saga_id in phase)
    for hop, values in sorted(measured.items(), key=lambda kv: -len(kv[1])):
        if len(values) >= done // 2:  # the saga's path, not the odd retry
            table.add_row(
                hop, str(len(values)), *(f"{percentile(values, q):.0f}" for q in (0.5, 0.9, 0.99))
            )
    console.print(table)
    console.print(
        "CPU ms per saga: "
        + ", ".join(f"{n} {1000 * s / max(done, 1):.2f}" for n, s in sorted(cpu.items()))
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hops", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rate", type=float, default=0.0, help="open loop, sagas/s (0: idle)")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds of open loop")
    parser.add_argument("--sagas", type=int, default=40, help="idle sagas, one at a time")
    parser.add_argument("--system", default=SAGA_WORKER, choices=SYSTEMS)
    args = parser.parse_args(argv)
    asyncio.run(measure(args.system, args.rate, args.duration, args.sagas))


if __name__ == "__main__":
    main()
