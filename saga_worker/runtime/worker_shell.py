"""The shell every worker runs in: clients, dependency waits, health server and shutdown.

The orchestrator and every participant worker are a body run inside a shell:

    shell = WorkerShell(settings, worker="orchestrator", group_id=..., topics=[...],
                        metrics=metrics.render)
    await shell.run(body)       # body(clients) runs once Kafka and Redis answer

The shell serves /healthz at once (alive while waiting for Kafka and Redis, so a
liveness probe does not kill a worker that is only waiting), creates the topics
the worker needs and reaches Redis, starts the producer and the consumer, runs
the body, and whatever happens closes everything in reverse order. /readyz
answers 200 once the body called `mark_ready()` and until `stop()`. /healthz
answers 503 once the worker's loops died (`live`) or the consumer loop the body
passed to `watch()` has held one batch, retrying or hanging, for longer than
SAGA_STALL_AFTER_S: then a platform restarts the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from saga_worker.runtime.consumer_loop import ConsumerLoop
from saga_worker.runtime.dependencies import wait_for_dependencies
from saga_worker.runtime.health import HealthServer
from saga_worker.runtime.kafka_clients import check_record_size, make_consumer, make_producer
from saga_worker.runtime.redis_client import RedisClient, make_redis
from saga_worker.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clients:
    redis: RedisClient
    producer: AIOKafkaProducer
    consumer: AIOKafkaConsumer


class WorkerShell:
    def __init__(
        self,
        settings: Settings,
        *,
        worker: str,
        group_id: str,
        topics: Sequence[str],
        metrics: Callable[[], bytes],
        live: Callable[[], bool] = lambda: True,
    ) -> None:
        self._settings = settings
        self.worker = worker
        self.group_id = group_id
        self._topics = list(topics)
        self.stopping = asyncio.Event()
        self._ready = False
        self._live = live
        self.health = HealthServer(
            settings.saga_health_host,
            settings.saga_health_port,
            self._alive,
            lambda: self.ready,
            metrics=metrics,
        )
        self._running = False
        self._watched: ConsumerLoop | None = None

    @property
    def ready(self) -> bool:
        return self._ready and not self.stopping.is_set()

    def mark_ready(self) -> None:
        self._ready = True

    def stop(self) -> None:
        self.stopping.set()

    def watch(self, loop: ConsumerLoop) -> None:
        """Liveness follows this loop's progress from now on (see the module docstring)."""
        self._watched = loop

    def _alive(self) -> bool:
        if self._running and not self._live():
            return False
        stalled = self._watched.stalled_for() if self._watched is not None else 0.0
        if stalled > self._settings.saga_stall_after_s:
            log.error(
                "no progress: one batch in hand for too long; liveness fails",
                extra={"worker": self.worker, "stalled_s": round(stalled, 1)},
            )
            return False
        return True

    async def run(self, body: Callable[[Clients], Awaitable[None]]) -> None:
        """Runs `body` with started clients; returns at once if stopped while waiting."""
        s = self._settings
        redis = make_redis(s)
        try:
            if s.saga_health_port:
                await self.health.start()
            if not await wait_for_dependencies(
                s.kafka,
                self._topics,
                partitions=s.saga_partitions,
                redis=redis,
                stopping=self.stopping,
                worker=self.worker,
                replication=s.saga_replication_factor,
                configs=s.topic_configs,
                key_prefix=s.saga_key_prefix,
            ):
                return
            await check_record_size(s.kafka, self._topics, s.saga_max_message_bytes)
            producer = make_producer(s.kafka, max_request_size=s.saga_max_message_bytes)
            consumer = make_consumer(
                s.kafka,
                group_id=self.group_id,
                max_poll_records=s.saga_batch_size,
                instance_id=s.saga_instance_id,
            )
            try:
                await producer.start()
                await consumer.start()
                self._running = True
                await body(Clients(redis, producer, consumer))
            finally:
                self._ready = False
                await consumer.stop()
                await producer.stop()
        finally:
            await self.health.stop()
            await redis.aclose()
            log.info("worker stopped", extra={"worker": self.worker})
