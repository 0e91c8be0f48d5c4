"""Drives the real orchestrator through Kafka: orders in, scripted participants, outcomes out."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from participants.app import saga_id_for_order
from participants.inventory import INVENTORY
from participants.notification import NOTIFICATION
from participants.order_fulfillment import ORDER_FULFILLMENT
from participants.payment import PAYMENT
from participants.shipping import shipping_participant
from saga_worker import App, WorkerProcess, until_ready, with_health_ports
from saga_worker.engine.definition import Parallel, SagaDefinition, Step, StepKind
from saga_worker.engine.retry import RetryPolicy
from saga_worker.engine.state import SagaState
from saga_worker.participant.definition import Participant
from saga_worker.participant.knobs import Knobs
from saga_worker.participant.runtime import ParticipantWorker
from saga_worker.runtime.clock import utcnow
from saga_worker.runtime.kafka_clients import (
    KafkaConnection,
    ensure_topics,
    make_consumer,
    make_producer,
)
from saga_worker.runtime.keys import TIMER_SEPARATOR
from saga_worker.runtime.orchestrator import Orchestrator
from saga_worker.runtime.store import RedisSagaStore
from saga_worker.runtime.worker_processes import settings_env
from saga_worker.settings import Settings, load_settings
from schemas import OrderCreated
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.http_probe import http_get, http_status
from tests.integration.kafka_state import read_to_end, wait_assigned
from tests.ports import free_ports
from tests.services import Services

ROOT = Path(__file__).resolve().parents[2]

FAST_RETRY = RetryPolicy(
    max_attempts=2,
    initial_backoff=timedelta(milliseconds=50),
    multiplier=2.0,
    max_backoff=timedelta(milliseconds=200),
    jitter=0.0,
)
# A timeout no test run reaches: a command is answered late on a slow machine, never
# retried for it, so no command sequence depends on how fast the machine is. Tests
# about timeouts shorten it, on the steps (or compensations) that never answer.
PATIENT = timedelta(minutes=5)
SHORT = timedelta(milliseconds=800)  # for a step a test keeps silent: it times out


def fast_fulfillment(
    timeout: timedelta = PATIENT,
    attempts: int = 2,
    *,
    timeouts: Mapping[str, timedelta] | None = None,
    compensation_timeout: timedelta | None = None,
) -> SagaDefinition:
    """OrderFulfillment's shape with test-sized retries: every step times out after
    `timeout` unless `timeouts` names it, compensations after `compensation_timeout`
    (else `timeout`)."""
    retry = dataclasses.replace(FAST_RETRY, max_attempts=attempts)
    forever = dataclasses.replace(FAST_RETRY, max_attempts=None)
    per_step = dict(timeouts or {})

    def quick(step: Step) -> Step:
        policy = forever if step.kind is StepKind.RETRIABLE else retry
        return dataclasses.replace(step, timeout=per_step.pop(step.name, timeout), retry=policy)

    stages = tuple(
        quick(s) if isinstance(s, Step) else Parallel(*map(quick, s))
        for s in ORDER_FULFILLMENT.stages
    )
    if per_step:
        raise ValueError(f"no such steps: {sorted(per_step)}")
    return dataclasses.replace(
        ORDER_FULFILLMENT,
        stages=stages,
        compensation_retry=retry,
        compensation_timeout=compensation_timeout or timeout,
    )


FAST_FULFILLMENT = fast_fulfillment()


# Outbox entries are republished when Kafka has not acknowledged them for this long: on a
# slow machine 1 s would resend commands a test counts. Tests of the sweeper shorten it.
PATIENT_SWEEP_S = 30.0


def settings_for(services: Services, prefix: str, **overrides: Any) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        redis_url=services.redis_url,
        saga_topic_prefix=prefix,
        saga_key_prefix=prefix,
        saga_partitions=overrides.pop("saga_partitions", 2),
        saga_timer_poll_ms=overrides.pop("saga_timer_poll_ms", 50),
        saga_outbox_sweep_after_s=overrides.pop("saga_outbox_sweep_after_s", PATIENT_SWEEP_S),
        **overrides,
    )


def inbound(
    settings: Settings,
    *,
    orchestrator: bool = False,
    participants: Sequence[ParticipantWorker] = (),
) -> dict[str, list[str]]:
    """Consumer group -> the physical topics it reads, of the sample's orchestrator and of
    these participant workers: what `wait_caught_up` waits on."""
    groups: dict[str, list[str]] = {}
    if orchestrator:
        reads = (t.ORDER_CREATED, *t.REPLY_TOPICS)
        groups[settings.group_id("orchestrator")] = [settings.topics.physical(n) for n in reads]
    for worker in participants:
        groups[worker.group_id] = [settings.topics.physical(n) for n in worker.participant.topics]
    return groups


def role_of(worker: str) -> str:
    """The role (consumer group, see Settings.group_id) of a worker process named as
    `saga_workers` names them: the orchestrator, or a participant by its name."""
    return worker if worker == "orchestrator" else f"participant.{worker}"


def order(order_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": order_id,
        "customer_id": "cust-1",
        "items": [{"sku": "sku-1", "quantity": 2, "unit_price": 1250}],
        "payment_method": "card",
        "shipping_address": {"line1": "1 Main St", "city": "Lyon", "country": "FR"},
    }
    body.update(changes)
    return body


def order_app(definition: SagaDefinition = FAST_FULFILLMENT) -> App:
    """The sample's app, its saga swapped for `definition` (test-sized timeouts)."""
    app = App("order-fulfillment-under-test")
    app.saga(
        definition, start_topic=t.ORDER_CREATED, start_model=OrderCreated, business_key="order_id"
    )
    return app


@contextlib.asynccontextmanager
async def running_orchestrator(
    settings: Settings,
    definition: SagaDefinition = FAST_FULFILLMENT,
    clock: Callable[[], datetime] = utcnow,
    app: App | None = None,
    members: int = 1,
) -> AsyncIterator[Orchestrator]:
    """An orchestrator in this process, ready: of `app`, or of the sample with `definition`;
    `members` is how many orchestrators the group has with this one."""
    worker = Orchestrator(settings, app or order_app(definition), clock=clock)
    task = asyncio.create_task(worker.run())

    async def ready() -> bool:
        if task.done():
            task.result()
        return worker.ready

    try:
        await assert_eventually(ready, within=30, message="orchestrator ready")
        # Ready means subscribed; a reply a test sends waits for the partitions until then.
        await wait_assigned(settings.kafka, {settings.group_id("orchestrator"): members})
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)


class OrchestratorProcess:
    """The orchestrator as a separate OS process, to be killed for real; its health port
    tells when it is ready and what it counted."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        (self.port,) = free_ports(1)
        self._env = {
            **os.environ,
            **settings_env(settings),
            "SAGA_HEALTH_PORT": str(self.port),
            **(env or {}),
        }
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None

    async def wait_ready(self) -> None:
        """Until it answers /readyz (subscribed; see kafka_state for its partitions)."""

        async def ready() -> bool:
            assert self.alive, "the orchestrator process exited"
            try:
                return await http_status(self.port, "/readyz") == 200
            except OSError:
                return False

        await assert_eventually(ready, within=60, message="orchestrator process ready")

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of its /metrics, 0 when absent."""
        status, body = await http_get(self.port, "/metrics")
        assert status == 200, status
        return sample(body.decode(), name, **labels)

    def start(self) -> None:
        self.starts += 1
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.fast_orchestrator"],
            cwd=ROOT,
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout=30)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


Script = Callable[[str, dict[str, Any]], list[tuple[str, dict[str, Any]]]]


def succeed_all(topic: str, cmd: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [reply_for(topic, cmd)]


def reply_for(topic: str, cmd: dict[str, Any], **extra: Any) -> tuple[str, dict[str, Any]]:
    """The ordinary answer to a command: completed, or compensation completed."""
    body = {
        "saga_id": cmd["saga_id"],
        "step_name": cmd["step_name"],
        "command_id": cmd.get("command_id"),
        "attempt": cmd.get("attempt"),
        "message_id": f"reply:{cmd.get('command_id')}",
    }
    if topic in COMPENSATIONS:
        return t.COMPENSATION_COMPLETED, body
    return t.STEP_COMPLETED, {**body, "result": {"done": topic}, **extra}


def fail_reply(cmd: dict[str, Any], error: str, retryable: bool) -> tuple[str, dict[str, Any]]:
    return t.STEP_FAILED, {
        "saga_id": cmd["saga_id"],
        "step_name": cmd["step_name"],
        "command_id": cmd.get("command_id"),
        "attempt": cmd.get("attempt"),
        "message_id": f"reply:{cmd.get('command_id')}",
        "error": error,
        "retryable": retryable,
    }


COMPENSATIONS = {
    t.RELEASE_RESERVATION,
    t.REFUND_PAYMENT,
    t.CANCEL_SHIPMENT,
    t.SEND_CANCELLATION_NOTICE,
}


@dataclass
class ScriptedParticipants:
    """Every participant at once: records each command and answers as the script says."""

    conn: KafkaConnection
    prefix: str
    script: Script = succeed_all
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def by_saga(self, saga_id: str) -> list[str]:
        return [f"{topic}#{c['attempt']}" for topic, c in self.commands if c["saga_id"] == saga_id]

    def topics_for(self, saga_id: str) -> list[str]:
        return [topic for topic, c in self.commands if c["saga_id"] == saga_id]

    def effects(self) -> Counter[tuple[str, str]]:
        """Distinct command ids per (saga, topic): what an idempotent participant applies."""
        seen = {(c["saga_id"], topic, c["command_id"]) for topic, c in self.commands}
        return Counter((saga, topic) for saga, topic, _ in seen)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ScriptedParticipants]:
        consumer = make_consumer(
            self.conn,
            *(self.prefix + n for n in t.COMMAND_TOPICS),
            group_id=f"{self.prefix}scripted",
        )
        producer = make_producer(self.conn)
        await producer.start()
        await consumer.start()
        task = asyncio.create_task(self._serve(consumer, producer))
        # Commands sent before the group assigned the topics would wait for a rebalance,
        # and a step timeout could fire meanwhile: start answering only once assigned.
        wanted = {self.prefix + n for n in t.COMMAND_TOPICS}

        async def assigned() -> set[str]:
            return {tp.topic for tp in consumer.assignment()}

        await assert_eventually(
            assigned,
            lambda topics: topics == wanted,
            within=30,
            message="scripted participants assigned every command topic",
        )
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()
            await producer.stop()

    async def _serve(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    topic = r.topic[len(self.prefix) :]
                    cmd = orjson.loads(r.value)
                    self.commands.append((topic, cmd))
                    for reply_topic, body in self.script(topic, cmd):
                        await producer.send(
                            self.prefix + reply_topic,
                            orjson.dumps(body),
                            key=body["saga_id"].encode(),
                        )
            await producer.flush()


async def produce(
    conn: KafkaConnection,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = make_producer(conn)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def send_orders(conn: KafkaConnection, prefix: str, bodies: list[dict[str, Any]]) -> None:
    producer = make_producer(conn)
    await producer.start()
    try:
        futures = [
            await producer.send(
                prefix + t.ORDER_CREATED, orjson.dumps(b), key=b["order_id"].encode()
            )
            for b in bodies
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a metrics page, 0 when absent (a counter not yet moved)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def metric(worker: Orchestrator | ParticipantWorker, name: str, **labels: str) -> float:
    """One sample of a worker's metrics (in this process), 0 when absent."""
    return sample(worker.metrics.render().decode(), name, **labels)


async def fire_now(redis: Redis, settings: Settings, saga_id: str, timer_id: str) -> None:
    """Makes one scheduled timer of the saga due at once, as if its time had come: for a
    test that needs one timeout to fire and every other command to have all the time."""
    member = f"{saga_id}{TIMER_SEPARATOR}{timer_id}"
    timers = settings.keys.timers(settings.keys.shard(saga_id))
    changed = await redis.zadd(timers, {member: 0}, xx=True, ch=True)
    assert changed == 1, f"saga {saga_id} has no timer {timer_id} scheduled"


class SagaReader:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.store = RedisSagaStore(redis, settings.keys)

    async def state(self, order_id: str) -> SagaState | None:
        saga_id = saga_id_for_order(order_id)
        return (await self.store.load({saga_id: []}))[saga_id].state

    async def statuses(self, order_ids: list[str]) -> Counter[str]:
        ids = {saga_id_for_order(o): o for o in order_ids}
        loaded = await self.store.load({s: [] for s in ids})
        return Counter(
            row.state.status.value if row.state else "missing" for row in loaded.values()
        )

    async def wait_status(self, order_id: str, status: str, within: float = 30) -> SagaState:
        async def probe() -> SagaState | None:
            return await self.state(order_id)

        found = await assert_eventually(
            probe,
            lambda s: s is not None and s.status.value == status,
            within=within,
            message=f"saga of {order_id} {status}",
        )
        assert found is not None
        return found


async def operator_retries_until_failed(
    services: Services, prefix: str, reader: SagaReader, order_id: str
) -> SagaState:
    """`saga-worker retry` whenever the saga waits for an operator, until it failed: a
    resumed compensation with a short timeout that a slow moment lets time out again
    only waits for the operator again."""

    async def retried_when_stuck() -> SagaState | None:
        state = await reader.state(order_id)
        if state is not None and state.status.value == "needs_operator":
            resumed = await cli(services, prefix, "retry", order_id)
            assert resumed.code == 0, resumed.err
        return state

    failed = await assert_eventually(
        retried_when_stuck,
        lambda state: state is not None and state.status.value == "failed",
        within=90,
        message=f"the saga of {order_id}, resumed, failed",
    )
    assert failed is not None
    return failed


async def read_topic(
    conn: KafkaConnection, topic: str, *, expect: int, within: float = 20
) -> list[Any]:
    """Reads a topic from the beginning until `expect` records arrived (or time ran out)."""
    consumer = AIOKafkaConsumer(
        topic, **conn.options(), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + within
        while len(got) < expect and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


async def prepare_topics(settings: Settings) -> None:
    await ensure_topics(
        settings.kafka,
        [settings.topics.physical(n) for n in t.ALL_TOPICS],
        partitions=settings.saga_partitions,
    )


@contextlib.asynccontextmanager
async def running_participants(
    settings: Settings,
    participants: Sequence[Participant] | None = None,
    knobs: Mapping[str, Knobs] | None = None,
) -> AsyncIterator[list[ParticipantWorker]]:
    """Our participants in this process (all four unless told), started and then stopped."""
    chosen = participants or (INVENTORY, PAYMENT, shipping_participant(), NOTIFICATION)
    workers = [ParticipantWorker(p, settings, (knobs or {}).get(p.name)) for p in chosen]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await asyncio.wait_for(asyncio.gather(*(w.wait_started() for w in workers)), 30)
        # Started means subscribed: a command sent now could wait seconds for a rebalance.
        await wait_assigned(settings.kafka, {w.group_id: 1 for w in workers})
        yield workers
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return orjson.loads(self.out)


def cli_env(services: Services, prefix: str, **env: str) -> dict[str, str]:
    """This process's environment, pointed at the test's services and prefix."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SAGA_TOPIC_PREFIX": prefix,
        "SAGA_KEY_PREFIX": prefix,
        **env,
    }


async def cli(
    services: Services, prefix: str, *args: str, module: str = "saga_worker", **env: str
) -> Run:
    """`python -m saga_worker ARGS` (or another module: the sample's `participants`) in a
    subprocess, without blocking the test's event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=ROOT,
        # rich tables wrap long ids at its default of 80 columns
        env=cli_env(services, prefix, COLUMNS="200", **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def one_error_line(run: Run, code: int) -> str:
    assert run.code == code, run
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("error: ")
    return lines[0]


class Bus:
    """Produces commands as the orchestrator would and collects what participants send."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        reader: AIOKafkaConsumer,
        headers: Sequence[tuple[str, bytes]] = (),
    ):
        self.settings = settings
        self.producer = producer
        self.reader = reader
        self.headers = list(headers)
        self.seen: list[Any] = []

    async def send(self, logical: str, body: dict[str, Any] | bytes, key: str = "k") -> None:
        value = body if isinstance(body, bytes) else orjson.dumps(body)
        saga_key = body["saga_id"] if isinstance(body, dict) else key
        await self.producer.send_and_wait(
            self.settings.topics.physical(logical),
            value,
            key=saga_key.encode(),
            headers=self.headers,
        )

    async def replies(self, logical: str | None = None) -> list[Any]:
        batch = await self.reader.getmany(timeout_ms=100)
        for records in batch.values():
            self.seen.extend(records)
        wanted = self.settings.topics.physical(logical) if logical else None
        return [r for r in self.seen if wanted is None or r.topic == wanted]

    async def all_sent(self) -> list[Any]:
        """Every reply and dead letter in the topics, read to their end: once the workers
        are known to be done (exited, or caught up), nothing is left to arrive."""
        topics = (*t.REPLY_TOPICS, t.DEAD_LETTER)
        return await read_to_end(self.settings.kafka, *map(self.settings.topics.physical, topics))

    async def topic_exists(self, topic: str) -> bool:
        return topic in await self.reader.topics()

    async def wait_for(self, count: int, logical: str | None = None) -> list[Any]:
        return await assert_eventually(
            lambda: self.replies(logical), lambda rs: len(rs) >= count, within=30
        )


@contextlib.asynccontextmanager
async def bus(settings: Settings, headers: Sequence[tuple[str, bytes]] = ()) -> AsyncIterator[Bus]:
    """Kafka as the orchestrator sees it: send commands, read replies and dead letters."""
    conn = KafkaConnection(settings.kafka_bootstrap_servers)
    producer = make_producer(conn)
    topics = [settings.topics.physical(n) for n in (*t.REPLY_TOPICS, t.DEAD_LETTER)]
    reader = make_consumer(conn, *topics, group_id=f"{settings.saga_topic_prefix}reader")
    await producer.start()
    await reader.start()
    try:
        yield Bus(settings, producer, reader, headers)
    finally:
        await reader.stop()
        await producer.stop()


def worker_env(settings: Settings) -> dict[str, str]:
    """What a worker process reads its settings from; the repository root importable."""
    return {**settings_env(settings), "PYTHONPATH": str(ROOT)}


@contextlib.asynccontextmanager
async def started(
    settings: Settings,
    *workers: WorkerProcess,
    roles: Callable[[WorkerProcess], Sequence[str]] = lambda w: [role_of(w.name)],
) -> AsyncIterator[None]:
    """Worker processes, ready (`until_ready`) and holding their groups' partitions
    (`roles` names the consumer groups each runs), stopped (SIGTERM) at the end."""
    with_health_ports(list(workers))
    try:
        for worker in workers:
            worker.start()
        try:
            await until_ready(list(workers), within_s=60)
        except RuntimeError as exc:
            tails = "\n".join(w.log.read_text()[-2000:] for w in workers if w.log.exists())
            raise AssertionError(f"{exc}\n{tails}") from exc
        groups = [role for w in workers for role in roles(w)]
        await wait_assigned(settings.kafka, {settings.group_id(role): 1 for role in groups})
        yield
    finally:
        for worker in workers:
            worker.stop()
