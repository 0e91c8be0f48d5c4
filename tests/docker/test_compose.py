"""docker-compose.yml for real: the whole stack up on a Docker engine, orders through it,
`docker compose down` and `up` again, and what must survive did.

Selected with `-m compose` only (`make test-compose`, CI's compose step): it needs a
Docker engine, `docker compose` (v2) and the images the file names, the official ones
or those of `make images` selected by docker/local.env's settings (the Makefile passes
them). Its project name, ports and volumes are its own, and it removes them at the end.

1. `up --wait`: Kafka and Redis healthy, the seed done, every worker healthy, then
   every worker ready (`/readyz` inside its container);
2. orders sent from inside the orchestrator's container
   (`python -m participants orders --json`), of which a planned share must fail: each
   completes or fails as planned, and stock and money are conserved;
3. `down` (containers and network gone, volumes kept) and `up --wait` again: the seed
   ran but left the data alone (its mark unchanged, its log says so), the sagas are
   still there and finished, every consumer group's offsets and the stock are as
   before;
4. a second round of orders through the restarted stack: as planned, and conservation
   over both rounds against the one seed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from devstack.stack import Ports
from participants.app import saga_id_for_order
from participants.conservation import conservation_violations
from participants.inspection import DomainSnapshot, snapshot
from participants.order_mix import Plan
from participants.seed import DEMO_SEED, seeded_marker
from saga_worker import RedisSagaStore, SagaStatus, load_settings
from tests.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("orchestrator", "inventory", "payment", "shipping", "notification")
KEY_PREFIX = "saga-worker:"  # the compose file sets no prefix: the defaults
UP_TIMEOUT_S = 240
READY_PROBE = "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"

pytestmark = pytest.mark.timeout(1200)


@dataclass(frozen=True)
class Stack:
    project: str
    kafka_port: int
    redis_port: int

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SAGA_COMPOSE_KAFKA_PORT": str(self.kafka_port),
            "SAGA_COMPOSE_REDIS_PORT": str(self.redis_port),
        }

    @property
    def bootstrap(self) -> str:
        return self._ports.bootstrap

    @property
    def redis_url(self) -> str:
        return self._ports.redis_url

    @property
    def _ports(self) -> Ports:  # the host's side of the ports compose publishes
        return Ports(kafka=self.kafka_port, controller=0, redis=self.redis_port)

    def compose(self, *args: str, timeout: float = 300) -> str:
        cmd = ["docker", "compose", "-p", self.project, "-f", str(ROOT / "docker-compose.yml")]
        done = subprocess.run(
            [*cmd, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            logs = subprocess.run(
                [*cmd, "logs", "--no-color", "--tail", "40"],
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            raise AssertionError(
                f"docker compose {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout[-2000:]}{done.stderr[-3000:]}\n--- logs ---\n{logs[-6000:]}"
            )
        return done.stdout

    def up(self) -> float:
        began = time.monotonic()
        self.compose("up", "--detach", "--wait", "--wait-timeout", str(UP_TIMEOUT_S), timeout=600)
        for worker in WORKERS:
            self.wait_ready(worker)
        return time.monotonic() - began

    def wait_ready(self, worker: str, within_s: float = 120) -> None:
        deadline = time.monotonic() + within_s
        while True:
            try:
                self.compose("exec", "-T", worker, "python", "-c", READY_PROBE, timeout=30)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def send_orders(self, count: int, seed: int) -> dict[str, Plan]:
        out = self.compose(
            "exec", "-T", "orchestrator",
            "python", "-m", "participants", "orders",
            "--count", str(count), "--fail-share", "0.25", "--seed", str(seed),
            "--rate", "0", "--json",
        )  # fmt: skip
        rows = orjson.loads(out.strip().splitlines()[-1])
        return {row["order_id"]: Plan(row["plan"]) for row in rows}


@pytest.fixture
def stack() -> Iterator[Stack]:
    kafka_port, redis_port = free_ports(2)
    stack = Stack(f"saga-compose-test-{uuid.uuid4().hex[:8]}", kafka_port, redis_port)
    try:
        yield stack
    finally:
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=300)
        left = subprocess.run(
            [
                "docker",
                "ps",
                "-aq",
                "--filter",
                f"label=com.docker.compose.project={stack.project}",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        assert not left, f"containers of {stack.project} left behind: {left}"


@dataclass(frozen=True)
class Seen:
    """What the test reads from the host: sagas, domain state, the seed's mark, offsets."""

    completed: set[str]
    failed: set[str]
    unfinished: set[str]
    domain: DomainSnapshot
    seeded_at: str | None


async def look(stack: Stack, orders: dict[str, Plan]) -> Seen:
    settings = load_settings(
        kafka_bootstrap_servers=stack.bootstrap,
        redis_url=stack.redis_url,
        saga_key_prefix=KEY_PREFIX,
    )
    redis = Redis.from_url(stack.redis_url)
    try:
        store = RedisSagaStore(redis, settings.keys)
        loaded = await store.load({saga_id_for_order(o): [] for o in orders})
        states = {saga_id: row.state for saga_id, row in loaded.items()}
        completed = {s for s, st in states.items() if st and st.status is SagaStatus.COMPLETED}
        failed = {s for s, st in states.items() if st and st.status is SagaStatus.FAILED}
        unfinished = {saga_id_for_order(o) for o in orders} - completed - failed
        domain = await snapshot(redis, KEY_PREFIX)
        raw = await redis.get(seeded_marker(KEY_PREFIX))
        seeded_at = raw.decode() if isinstance(raw, bytes) else raw
    finally:
        await redis.aclose()
    return Seen(completed, failed, unfinished, domain, seeded_at)


Offsets = dict[str, dict[tuple[str, int], int]]


async def offsets(stack: Stack) -> Offsets:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        groups = sorted(g[0] for g in await admin.list_consumer_groups())
        found = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            found[group] = {(tp.topic, tp.partition): om.offset for tp, om in committed.items()}
        return found
    finally:
        await admin.close()


def until_finished(stack: Stack, orders: dict[str, Plan], within_s: float = 180) -> Seen:
    deadline = time.monotonic() + within_s
    while True:
        seen = asyncio.run(look(stack, orders))
        if not seen.unfinished or time.monotonic() > deadline:
            return seen
        time.sleep(1)


def settled_offsets(stack: Stack, quiet_s: float = 3, within_s: float = 60) -> Offsets:
    """Every group's committed offsets once they stopped moving: a worker commits its
    batch just after the state it saved, which the test may already have seen."""
    deadline = time.monotonic() + within_s
    last = asyncio.run(offsets(stack))
    still_since = time.monotonic()
    while time.monotonic() - still_since < quiet_s:
        assert time.monotonic() < deadline, "committed offsets never settled"
        time.sleep(0.5)
        now = asyncio.run(offsets(stack))
        if now != last:
            last, still_since = now, time.monotonic()
    return last


def assert_as_planned(seen: Seen, orders: dict[str, Plan]) -> None:
    assert not seen.unfinished, f"{len(seen.unfinished)} sagas unfinished"
    for order_id, plan in orders.items():
        saga_id = saga_id_for_order(order_id)
        expected = seen.completed if plan is Plan.COMPLETES else seen.failed
        assert saga_id in expected, f"order {order_id} planned {plan.value!r} ended otherwise"


@pytest.mark.compose
def test_the_compose_stack_runs_orders_and_keeps_everything_across_down_and_up(
    stack: Stack,
) -> None:
    first_up = stack.up()

    first = stack.send_orders(40, seed=17)
    assert {Plan.COMPLETES} < set(first.values())  # some planned to fail, most to complete
    before = until_finished(stack, first)
    assert_as_planned(before, first)
    assert conservation_violations(DEMO_SEED, before.domain, before.completed, before.failed) == []
    assert before.seeded_at is not None
    committed = settled_offsets(stack)
    assert committed["saga-worker.orchestrator"], "the orchestrator committed nothing"

    stack.compose("down", "--timeout", "30")
    assert stack.compose("ps", "--all", "--quiet").strip() == ""
    second_up = stack.up()

    after = until_finished(stack, first, within_s=30)
    # Sagas (Redis's AOF), the seed's data and mark, topics and offsets (Kafka's log).
    assert (after.completed, after.failed) == (before.completed, before.failed)
    assert after.seeded_at == before.seeded_at, "the seed ran again"
    assert f"already seeded at {before.seeded_at}" in stack.compose("logs", "--no-color", "seed")
    assert after.domain.stock == before.domain.stock
    assert after.domain.balances == before.domain.balances
    assert settled_offsets(stack) == committed, "committed offsets changed"

    second = stack.send_orders(20, seed=18)
    both = {**first, **second}
    end = until_finished(stack, both)
    assert_as_planned(end, both)
    assert conservation_violations(DEMO_SEED, end.domain, end.completed, end.failed) == []
    print(f"compose up {first_up:.0f}s, up again {second_up:.0f}s")
