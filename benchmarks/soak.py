"""The soak: sagas whose confirmation always fails, for an hour, on the real Kafka and Redis.

    python -m benchmarks.soak [--start-minutes 25] [--rate 0.1] [--deadline-minutes 75]

Starts the orchestrator and the `confirmer` participant of benchmarks.soak_app as
processes, sends `rate` SoakStarted per second for `start-minutes`, then waits until
every saga is in `needs_operator` (or the deadline passes). Every `sample-s` it
records how many sagas are in each status, the longest history, the largest saga
hash (MEMORY USAGE), every key of the run's prefix (count and bytes), Redis's
used_memory and each worker's resident memory.

What must hold, else the exit code is 1:
- every saga ends in `needs_operator`, after the engine's bound on unlimited retries;
- no saga's history passes the engine's bound;
- a saga in `needs_operator` does not grow: its bytes at the end equal its bytes
  when first seen there;
- no worker exits.

The figures go to benchmarks/results/soak-<UTC time>.json and, as a table, to stdout.
The run's keys and topics are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from redis.asyncio import Redis

from benchmarks.soak_app import CONFIRMER, SOAKS, STARTED, SoakStarted
from benchmarks.systems import rss_mb
from saga_worker import (
    WorkerProcess,
    discard,
    encode,
    load_settings,
    make_headers,
    make_producer,
    saga_workers,
    until_ready,
    with_health_ports,
)
from saga_worker.engine.decide import HISTORY_HEAD, HISTORY_TAIL, UNLIMITED_ATTEMPTS
from saga_worker.settings import Settings

RESULTS = Path(__file__).parent / "results"
QUIET = {"SAGA_LOG_LEVEL": "WARNING"}
MAX_HISTORY = HISTORY_HEAD + 1 + HISTORY_TAIL


@dataclass
class Sample:
    minute: float
    sent: int
    by_status: dict[str, int]
    longest_history: int
    largest_saga_bytes: int
    keys: int
    key_bytes: int
    redis_used_bytes: int
    worker_rss_mb: dict[str, float]


@dataclass
class Report:
    started_at: str
    rate_per_s: float
    start_minutes: float
    unlimited_attempts: int
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    status: str
    bytes: int
    hist: int
    reason: str


async def _saga_rows(redis: Redis, settings: Settings, saga_ids: list[str]) -> list[Row]:
    async with redis.pipeline(transaction=False) as pipe:
        for sid in saga_ids:
            key = settings.keys.saga(sid)
            pipe.hget(key, "s")
            pipe.memory_usage(key, samples=0)
        raw = await pipe.execute()
    rows: list[Row] = []
    for state, size in zip(raw[::2], raw[1::2], strict=True):
        if state is None:
            rows.append(Row("missing", 0, 0, ""))
            continue
        d = orjson.loads(state)
        rows.append(Row(d["status"], int(size or 0), len(d["hist"]), d.get("op_reason", "")))
    return rows


async def _prefix_footprint(redis: Redis, prefix: str) -> tuple[int, int]:
    count = total = 0
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        count += 1
        total += int(await redis.memory_usage(key, samples=0) or 0)
    return count, total


async def run(args: argparse.Namespace) -> Report:
    run_id = uuid.uuid4().hex[:8]
    settings = load_settings(
        saga_app="benchmarks.soak_app:app",
        saga_topic_prefix=f"soak-{run_id}.",
        saga_key_prefix=f"soak-{run_id}:",
    )
    log_dir = Path(".runtime") / f"soak-{run_id}"
    workers = with_health_ports(saga_workers(settings, log_dir, [CONFIRMER], QUIET))
    report = Report(
        datetime.now(UTC).isoformat(timespec="seconds"),
        args.rate,
        args.start_minutes,
        UNLIMITED_ATTEMPTS,
    )
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    producer = make_producer(settings.kafka)
    saga_ids: list[str] = []
    first_bytes: dict[str, int] = {}
    began = time.monotonic()
    try:
        for w in workers:
            w.start()
        await until_ready(workers)
        await producer.start()
        topic = settings.topics.physical(STARTED)
        start_until = began + args.start_minutes * 60
        deadline = began + args.deadline_minutes * 60
        next_sample = began
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now < start_until and len(saga_ids) < (now - began) * args.rate:
                soak_id = f"soak-{len(saga_ids)}"
                await producer.send_and_wait(
                    topic,
                    encode(SoakStarted(soak_id=soak_id)),
                    key=soak_id.encode(),
                    headers=make_headers(STARTED, soak_id),
                )
                saga_ids.append(SOAKS.saga_id(soak_id))
            if now >= next_sample:
                next_sample = now + args.sample_s
                done = await _sample(
                    report,
                    redis=redis,
                    settings=settings,
                    saga_ids=saga_ids,
                    first_bytes=first_bytes,
                    began=began,
                    workers=workers,
                )
                if done and now >= start_until:
                    break
            await asyncio.sleep(0.05)
        await _verdict(report, redis, settings, saga_ids, first_bytes)
    finally:
        await producer.stop()
        for w in workers:
            w.stop()
        await discard(settings, redis)
        await redis.aclose()
    return report


async def _sample(
    report: Report,
    *,
    redis: Redis,
    settings: Settings,
    saga_ids: list[str],
    first_bytes: dict[str, int],
    began: float,
    workers: list[WorkerProcess],
) -> bool:
    rows = await _saga_rows(redis, settings, saga_ids)
    by_status: dict[str, int] = {}
    for sid, row in zip(saga_ids, rows, strict=True):
        by_status[row.status] = by_status.get(row.status, 0) + 1
        if row.status == "needs_operator":
            first_bytes.setdefault(sid, row.bytes)
    keys, key_bytes = await _prefix_footprint(redis, settings.saga_key_prefix)
    info = await redis.info("memory")
    sample = Sample(
        minute=round((time.monotonic() - began) / 60, 1),
        sent=len(saga_ids),
        by_status=by_status,
        longest_history=max((r.hist for r in rows), default=0),
        largest_saga_bytes=max((r.bytes for r in rows), default=0),
        keys=keys,
        key_bytes=key_bytes,
        redis_used_bytes=int(info["used_memory"]),
        worker_rss_mb={w.name: round(rss_mb(w.pid), 1) for w in workers if w.alive and w.pid},
    )
    report.samples.append(sample)
    print(json.dumps(asdict(sample)), flush=True)
    dead = [w.name for w in workers if not w.alive]
    if dead:
        report.problems.append(f"workers exited: {', '.join(dead)}")
        raise RuntimeError(report.problems[-1])
    return bool(saga_ids) and by_status.get("needs_operator", 0) == len(saga_ids)


async def _verdict(
    report: Report,
    redis: Redis,
    settings: Settings,
    saga_ids: list[str],
    first_bytes: dict[str, int],
) -> None:
    rows = await _saga_rows(redis, settings, saga_ids)
    for sid, row in zip(saga_ids, rows, strict=True):
        if row.status != "needs_operator":
            report.problems.append(f"saga {sid} ended the soak {row.status}")
        elif f"after {UNLIMITED_ATTEMPTS} attempts" not in row.reason:
            report.problems.append(f"saga {sid} needs an operator for another reason: {row.reason}")
        if row.hist > MAX_HISTORY:
            report.problems.append(f"saga {sid} has {row.hist} history entries")
        first = first_bytes.get(sid)
        if first is not None and row.bytes != first:
            report.problems.append(f"saga {sid} grew in needs_operator: {first} -> {row.bytes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.1, help="sagas started per second")
    parser.add_argument("--start-minutes", type=float, default=25.0)
    parser.add_argument("--deadline-minutes", type=float, default=75.0)
    parser.add_argument("--sample-s", type=float, default=60.0)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    RESULTS.mkdir(exist_ok=True)
    stamp = report.started_at.replace(":", "").replace("+0000", "Z")
    out = RESULTS / f"soak-{stamp}.json"
    out.write_text(json.dumps(asdict(report), indent=2) + "\n")
    last = report.samples[-1] if report.samples else None
    print(f"\nsoak: {last.sent if last else 0} sagas, final {last.by_status if last else {}}")
    print(f"figures: {out}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    raise SystemExit(1 if report.problems or last is None else 0)


if __name__ == "__main__":
    main()
