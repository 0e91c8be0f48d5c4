"""The three systems under test, each in its own topic and key prefix, as OS processes.

- saga-worker: `python -m saga_worker orchestrator` and the four real participants;
- floor: five `benchmarks.passthrough` processes;
- naive: `benchmarks.naive_orchestrator` and the four real participants;
- saga-worker-x2, the scaling run: saga-worker with two processes of each worker, on
  12 partitions (closed loop only; recorded, not judged: 2 cores cannot show scaling).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.passthrough import ROLES
from participants.app import NAMES
from participants.order_mix import GOOD_CUSTOMERS
from participants.seed import DEMO_CATALOGUE, SeedData, load_seed
from saga_worker.runtime.cleanup import discard as discard_deployment
from saga_worker.runtime.kafka_clients import ensure_topics
from saga_worker.runtime.redis_client import RedisClient
from saga_worker.runtime.worker_processes import WorkerProcess, saga_workers
from saga_worker.settings import Settings
from schemas import topics as t

SAGA_WORKER, FLOOR, NAIVE, SCALED = "saga-worker", "floor", "naive", "saga-worker-x2"
SYSTEMS = (SAGA_WORKER, FLOOR, NAIVE, SCALED)
SCALED_PARTITIONS = 12

# Enough that no benchmark order fails for lack of stock or money.
BENCH_SEED = SeedData(
    catalogue=DEMO_CATALOGUE,
    stock={item.sku: 10**12 for item in DEMO_CATALOGUE},
    balances=dict.fromkeys(GOOD_CUSTOMERS, 10**14),
)
QUIET = {"SAGA_LOG_LEVEL": "WARNING"}


@dataclass
class System:
    name: str
    settings: Settings
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def orchestrator(self) -> WorkerProcess:
        return self.workers[0]

    def topic_names(self) -> list[str]:
        return [self.settings.topics.physical(n) for n in t.ALL_TOPICS]


def build(name: str, base: Settings, run_id: str, log_dir: Path) -> System:
    """The system `name` in fresh topic and key prefixes, its processes not yet started."""
    update: dict[str, object] = {
        "saga_topic_prefix": f"bench-{run_id}-{name}.",
        "saga_key_prefix": f"bench-{run_id}-{name}:",
    }
    if name == SCALED:
        update["saga_partitions"] = SCALED_PARTITIONS
    settings = base.model_copy(update=update)
    logs = log_dir / name
    workers = saga_workers(settings, logs, NAMES, QUIET)
    env: Mapping[str, str] = workers[0].env
    if name == SCALED:  # each worker twice, in one consumer group per role
        workers = [
            WorkerProcess(f"{w.name}-{n}", w.args, env, logs / f"{w.name}-{n}.log")
            for w in workers
            for n in (1, 2)
        ]
    elif name == FLOOR:
        workers = [
            WorkerProcess(role, (role,), env, logs / f"{role}.log", module="benchmarks.passthrough")
            for role in ROLES
        ]
    elif name == NAIVE:
        naive = WorkerProcess(
            "orchestrator",
            (),
            env,
            logs / "orchestrator.log",
            module="benchmarks.naive_orchestrator",
        )
        workers = [naive, *(w for w in workers if w.name in NAMES)]
    return System(name, settings, workers)


async def prepare(system: System, redis: RedisClient) -> None:
    """Creates the topics (leaders elected) and seeds the participants' stock and money."""
    s = system.settings
    await ensure_topics(s.kafka, system.topic_names(), partitions=s.saga_partitions)
    await load_seed(redis, s.saga_key_prefix, BENCH_SEED)


def check_alive(system: System) -> None:
    dead = [w for w in system.workers if not w.alive]
    if dead:
        names = ", ".join(f"{w.name} (see {w.log})" for w in dead)
        raise RuntimeError(f"{system.name}: worker exited: {names}")


def rss_mb(pid: int) -> float:
    """Resident set size of a live process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stop(system: System) -> None:
    # SIGTERM to every worker first, so they drain in parallel rather than in turn.
    for worker in system.workers:
        if worker.alive and worker.proc is not None:
            worker.proc.terminate()
    for worker in system.workers:
        worker.stop()


async def discard(system: System, redis: RedisClient) -> None:
    """Deletes the system's keys and topics: a run leaves no data behind."""
    await discard_deployment(system.settings, redis)
