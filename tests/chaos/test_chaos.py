"""Sagas under fire: workers killed with SIGKILL, Redis killed, the broker restarted.

`make test` runs a short form; `make chaos` the long one. The random schedule's
seed is printed and replayable: SAGA_CHAOS_SEED=<seed> make chaos. `make test-cluster`
runs the short form again with a Redis Cluster of its own (SAGA_REDIS_MODE=cluster),
whose every node is killed at once.

    SAGA_CHAOS_SAGAS      orders sent (default 300)
    SAGA_CHAOS_SEED       seed of the kill schedule and the order mix (default: random)
    SAGA_CHAOS_KILL_EVERY mean seconds between worker kills (default 3)
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from participants.app import NAMES, saga_id_for_order
from participants.conservation import conservation_violations
from participants.inspection import snapshot
from participants.order_mix import BROKE_CUSTOMER, SCARCE_SKU, plan_orders
from participants.order_sender import send_orders
from participants.seed import DEMO_SEED, SeedData, load_seed
from saga_worker.runtime.kafka_clients import ensure_topics, make_producer
from saga_worker.runtime.store import RedisSagaStore
from saga_worker.runtime.worker_processes import WorkerProcess, saga_workers
from saga_worker.settings import Settings, load_settings
from schemas import topics as t
from tests.chaos.private_stack import PrivateStack
from tests.integration.kafka_state import read_to_end
from tests.services import redis_client_for

SAGAS = int(os.environ.get("SAGA_CHAOS_SAGAS", "300"))
SEED = int(os.environ.get("SAGA_CHAOS_SEED", str(random.SystemRandom().randrange(10**6))))
KILL_EVERY_S = float(os.environ.get("SAGA_CHAOS_KILL_EVERY", "3"))
FINISH_WITHIN_S = 240 + SAGAS * 0.1


# Enough stock and money that orders fail only as planned (the scarce SKU stays scarce).
PLENTY = dataclasses.replace(
    DEMO_SEED,
    stock={sku: n if sku == SCARCE_SKU else n * 100 for sku, n in DEMO_SEED.stock.items()},
    balances={c: n if c == BROKE_CUSTOMER else n * 100 for c, n in DEMO_SEED.balances.items()},
)


@dataclass
class ChaosLog:
    kills: Counter[str] = field(default_factory=Counter)
    redis_kills: int = 0
    broker_restarts: int = 0


async def terminal_counts(store: RedisSagaStore, saga_ids: list[str]) -> Counter[str]:
    try:
        loaded = await store.load({s: [] for s in saga_ids})
    except Exception:
        return Counter({"unknown": len(saga_ids)})
    return Counter(r.state.status.value if r.state else "missing" for r in loaded.values())


async def keep_alive(workers: list[WorkerProcess], stop: asyncio.Event) -> None:
    """A process supervisor: whatever died is started again."""
    while not stop.is_set():
        for worker in workers:
            if not worker.alive:
                worker.start()
        await asyncio.sleep(0.5)


async def kill_workers(
    workers: list[WorkerProcess], rng: random.Random, log: ChaosLog, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.5, 1.5) * KILL_EVERY_S)
        victim = rng.choice(workers)
        if victim.alive:
            victim.kill()
            log.kills[victim.name.split("-")[0]] += 1


@pytest.mark.timeout(900 + SAGAS)
async def test_sagas_survive_killed_workers_redis_and_broker(tmp_path: Path) -> None:
    print(f"\nchaos seed {SEED} ({SAGAS} sagas); replay with SAGA_CHAOS_SEED={SEED}")
    rng = random.Random(SEED)
    stack = PrivateStack(tmp_path / "stack")
    await asyncio.to_thread(stack.up)
    redis = redis_client_for(stack.redis_url)
    log = ChaosLog()
    stop = asyncio.Event()
    settings = load_settings(
        kafka_bootstrap_servers=stack.bootstrap,
        redis_url=stack.redis_url,
        saga_topic_prefix="chaos.",
        saga_key_prefix="chaos:",
        saga_outbox_sweep_after_s=2.0,
    )
    workers = _workers(settings, tmp_path / "logs")
    try:
        await ensure_topics(
            settings.kafka, [settings.topics.physical(n) for n in t.ALL_TOPICS], partitions=6
        )
        seeded = await load_seed(redis, settings.saga_key_prefix, PLENTY)
        orders = plan_orders(SAGAS, 0.2, rng)
        saga_ids = [saga_id_for_order(o.order_id) for o in orders]
        store = RedisSagaStore(redis, settings.keys)
        chaos = [
            asyncio.create_task(keep_alive(workers, stop)),
            asyncio.create_task(kill_workers(workers, rng, log, stop)),
        ]
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            sending = asyncio.create_task(send_orders(producer, settings.topics, orders, rate=50))
            await _outage(
                stack, log, rng, redis_after=0.3 * SAGAS / 50, broker_after=0.6 * SAGAS / 50
            )
            await sending
        finally:
            await producer.stop()
        finished = await _until_finished(store, saga_ids)
        stop.set()
        await asyncio.gather(*chaos)
        for worker in workers:
            worker.stop()  # returns once the process exited: all it sent is in Kafka
        problems = await _violations(redis, settings, seeded, store, saga_ids)
        dead_letters = await read_to_end(settings.kafka, settings.topics.physical(t.DEAD_LETTER))
    finally:
        stop.set()
        for worker in workers:
            worker.kill()
        await redis.aclose()
        await asyncio.to_thread(stack.down)
    print(
        f"chaos summary: seed {SEED}, sagas {SAGAS}, redis "
        f"{'cluster' if stack.cluster else 'single'}, final {dict(finished)}, "
        f"worker kills {dict(log.kills)} (restarts {sum(w.starts - 1 for w in workers)}), "
        f"redis kills {log.redis_kills}, broker restarts {log.broker_restarts}, "
        f"dead letters {len(dead_letters)}, violations {len(problems)}"
    )
    assert_every_saga_ended(finished, SAGAS, problems, dead_letters)
    assert sum(log.kills.values()) >= max(1, SAGAS // 1000)  # the short form runs ~20 s
    assert log.redis_kills == 1
    assert log.broker_restarts == 1


def assert_every_saga_ended(
    finished: Counter[str], sagas: int, problems: list[str], dead_letters: list[Any]
) -> None:
    """Every saga completed or failed as planned, conservation held, nothing dead-lettered."""
    assert set(finished) <= {"completed", "failed"}, finished
    assert sum(finished.values()) == sagas
    assert not problems, "\n".join(problems[:20])
    assert not dead_letters, [r.headers for r in dead_letters[:5]]


def _workers(settings: Settings, log_dir: Path) -> list[WorkerProcess]:
    base = saga_workers(settings, log_dir, NAMES, {"SAGA_LOG_LEVEL": "WARNING"})
    second = WorkerProcess(
        "orchestrator-2", ("orchestrator",), dict(base[0].env), log_dir / "orchestrator-2.log"
    )
    workers = [*base, second]
    for worker in workers:
        # Static membership: a restarted worker takes its partitions back at once.
        worker.env = {**worker.env, "SAGA_INSTANCE_ID": worker.name + "-chaos"}
    return workers


async def _outage(
    stack: PrivateStack, log: ChaosLog, rng: random.Random, redis_after: float, broker_after: float
) -> None:
    await asyncio.sleep(redis_after * rng.uniform(0.8, 1.2))
    stack.kill_redis()
    log.redis_kills += 1
    await asyncio.sleep(1.0)
    await asyncio.to_thread(stack.up)  # starts what is not running: Redis, from its AOF
    await asyncio.sleep(max(0.0, broker_after - redis_after))
    await asyncio.to_thread(stack.stop_kafka)
    log.broker_restarts += 1
    await asyncio.to_thread(stack.up)


async def _until_finished(store: RedisSagaStore, saga_ids: list[str]) -> Counter[str]:
    deadline = asyncio.get_running_loop().time() + FINISH_WITHIN_S
    counts = Counter[str]()
    while asyncio.get_running_loop().time() < deadline:
        counts = await terminal_counts(store, saga_ids)
        if counts["completed"] + counts["failed"] == len(saga_ids):
            break
        await asyncio.sleep(1.0)
    return counts


async def _violations(
    redis: aioredis.Redis,
    settings: Settings,
    seeded: SeedData,
    store: RedisSagaStore,
    saga_ids: list[str],
) -> list[str]:
    loaded = await store.load({s: [] for s in saga_ids})
    completed = {s for s, r in loaded.items() if r.state and r.state.status.value == "completed"}
    failed = {s for s, r in loaded.items() if r.state and r.state.status.value == "failed"}
    problems = conservation_violations(
        seeded, await snapshot(redis, settings.saga_key_prefix), completed, failed
    )
    try:
        # every saga's own outbox, not the hints (a stale hint is harmless, store.py)
        full = await store.holding_outbox_entries(saga_ids)
        if full:
            problems.append(f"{len(full)} outboxes not empty")
        live = [s for s, r in loaded.items() if r.state and r.state.timers]
        if live:
            problems.append(f"{len(live)} finished sagas still hold timers")
    except RedisError as exc:
        problems.append(f"redis unreadable after the run: {exc}")
    return problems
