"""Many orchestrators on a Redis Cluster, under fire (issue 15).

Three orchestrator processes and two of each participant share 12 partitions of a
run on the test services' Redis Cluster (`make test-cluster`; skipped on a single
Redis). Mid-load one orchestrator is killed with SIGKILL and not brought back (its
partitions move to the others: a rebalance), a fourth orchestrator joins later (a
second rebalance), and a Redis primary is killed with SIGKILL, so its replica takes
over. Every saga must end, completed or failed as planned, with stock and money
conserved, no outbox left and no dead letter: nothing lost, nothing doubled.
SAGA_REDIS_REPLICAS is left unset (adaptive, runtime/replica_wait.py): every batch
WAITs for one replica on every primary it wrote, which the primaries' own WAIT counts
prove, and the promoted replica, which has no replica of its own until the killed
node is back, goes on taking writes unwaited rather than stopping its slots.

The killed primary is started again at the end (it rejoins as a replica) when it was
started by devstack (`.runtime/redis-cluster/<port>/redis.pid`).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from participants.app import NAMES, saga_id_for_order
from participants.order_mix import plan_orders
from participants.order_sender import send_orders
from participants.seed import load_seed
from saga_worker.runtime.kafka_clients import ensure_topics, make_producer
from saga_worker.runtime.redis_client import cluster_url, redis_from_url
from saga_worker.runtime.store import RedisSagaStore
from saga_worker.runtime.worker_processes import WorkerProcess, saga_workers
from saga_worker.settings import Settings, load_settings
from schemas import topics as t
from tests.chaos.private_stack import ROOT
from tests.chaos.test_chaos import (
    PLENTY,
    _until_finished,
    _violations,
    assert_every_saga_ended,
)
from tests.integration.saga_support import read_topic
from tests.services import Services

SAGAS = int(os.environ.get("SAGA_CLUSTER_CHAOS_SAGAS", "300"))
SEED = int(os.environ.get("SAGA_CHAOS_SEED", str(random.SystemRandom().randrange(10**6))))
PARTITIONS = 12
RATE = 50  # orders a second
# "0": the same run with the replica wait off, to see what a failover loses without it
# (printed; not asserted: whether a write dies with its primary is luck).
REPLICAS = os.environ.get("SAGA_CLUSTER_CHAOS_REPLICAS")


def _is_cluster(url: str) -> bool:
    return cluster_url(url)[1] or os.environ.get("SAGA_REDIS_CLUSTER") == "1"


@pytest.mark.timeout(900 + SAGAS)
async def test_three_orchestrators_a_kill_a_rebalance_and_a_failover_lose_nothing(
    services: Services, prefix: str, tmp_path: Path
) -> None:
    if not _is_cluster(services.redis_url):
        pytest.skip("needs a Redis Cluster (make test-cluster)")
    print(f"\ncluster chaos seed {SEED} ({SAGAS} sagas); replay with SAGA_CHAOS_SEED={SEED}")
    rng = random.Random(SEED)
    redis = redis_from_url(services.redis_url)
    assert isinstance(redis, RedisCluster)
    settings = load_settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        redis_url=services.redis_url,
        saga_topic_prefix=prefix,
        saga_key_prefix=prefix,
        saga_partitions=PARTITIONS,
        saga_outbox_sweep_after_s=2.0,
        saga_redis_replicas=int(REPLICAS) if REPLICAS else None,
    )
    log_dir = tmp_path / "logs"
    workers = _workers(settings, log_dir)
    late = WorkerProcess(
        "orchestrator-4", ("orchestrator",), dict(workers[0].env), log_dir / "orchestrator-4.log"
    )
    killed_primary: int | None = None
    try:
        await ensure_topics(
            settings.kafka,
            [settings.topics.physical(n) for n in t.ALL_TOPICS],
            partitions=PARTITIONS,
        )
        seeded = await load_seed(redis, settings.saga_key_prefix, PLENTY)
        orders = plan_orders(SAGAS, 0.2, rng)
        saga_ids = [saga_id_for_order(o.order_id) for o in orders]
        store = RedisSagaStore(redis, settings.keys)
        waits_before = await _waits_by_node(redis)
        for worker in workers:
            worker.start()
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            sending = asyncio.create_task(send_orders(producer, settings.topics, orders, rate=RATE))
            load_s = SAGAS / RATE
            await asyncio.sleep(0.25 * load_s)
            victim = rng.choice([w for w in workers if w.name.startswith("orchestrator")])
            victim.kill()  # SIGKILL, and not restarted: its partitions move on
            await asyncio.sleep(0.15 * load_s)
            killed_primary = await _kill_a_primary(redis, rng)
            await asyncio.sleep(0.15 * load_s)
            late.start()  # another rebalance, while orders still come in
            await sending
        finally:
            await producer.stop()
        finished = await _until_finished(store, saga_ids)
        for worker in [*workers, late]:
            worker.stop()
        problems = await _violations(redis, settings, seeded, store, saga_ids)  # type: ignore[arg-type]
        waits_after = await _waits_by_node(redis)
        dead_letters = await read_topic(
            settings.kafka, settings.topics.physical(t.DEAD_LETTER), expect=1, within=2
        )
    finally:
        for worker in [*workers, late]:
            worker.kill()
        await redis.aclose()
        if killed_primary is not None:
            await asyncio.to_thread(_restart_node, killed_primary)
    print(
        f"cluster chaos summary: seed {SEED}, sagas {SAGAS}, replica wait "
        f"{REPLICAS or 'default'}, final {dict(finished)}, killed orchestrator "
        f"{victim.name}, killed primary on port {killed_primary}, "
        f"dead letters {len(dead_letters)}, violations {len(problems)}: {problems[:5]}"
    )
    if REPLICAS == "0":
        return  # the summary above says what was lost, if anything
    assert_every_saga_ended(finished, SAGAS, problems, dead_letters)
    waited = {n: c - waits_before.get(n, 0) for n, c in waits_after.items()}
    assert any(n > 0 for n in waited.values()), f"no primary ran WAIT: {waited}"


async def _waits_by_node(redis: RedisCluster) -> dict[str, int]:
    """How many WAITs each primary has run (INFO commandstats)."""
    found = await redis.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
    return {
        node: int(stats.get("cmdstat_wait", {}).get("calls", 0)) for node, stats in found.items()
    }


def _workers(settings: Settings, log_dir: Path) -> list[WorkerProcess]:
    base = saga_workers(settings, log_dir, NAMES, {"SAGA_LOG_LEVEL": "WARNING"})
    workers = list(base)
    for n in (2, 3):
        env = dict(base[0].env)
        workers.append(
            WorkerProcess(f"orchestrator-{n}", ("orchestrator",), env, log_dir / f"o{n}.log")
        )
    for participant in base[1:]:
        name = f"{participant.name}-2"
        workers.append(
            WorkerProcess(name, participant.args, dict(participant.env), log_dir / f"{name}.log")
        )
    return workers


async def _kill_a_primary(redis: RedisCluster, rng: random.Random) -> int:
    """SIGKILL of one primary's process (its pid from INFO): its replica takes over."""
    primaries = sorted(redis.get_primaries(), key=lambda n: n.port)
    node = rng.choice(primaries)
    direct = Redis(host=node.host, port=int(node.port))
    try:
        info = await direct.info("server")
    finally:
        await direct.aclose()
    os.kill(int(info["process_id"]), signal.SIGKILL)
    return int(node.port)


def _restart_node(port: int) -> None:
    """Starts the killed node again if devstack runs this cluster (it rejoins as a
    replica), in a process of its own as `make up` would: the node outlives it."""
    from devstack import cluster  # noqa: PLC0415

    if cluster.enabled() and port in cluster.ports():
        subprocess.run(
            [sys.executable, "-m", "devstack", "up"],
            cwd=ROOT,
            capture_output=True,
            timeout=240,
            check=True,
        )
