"""For comparison only: the orchestrator the textbook template gives you.

`python -m benchmarks.naive_orchestrator`, settings from the environment. One
message at a time: GET the saga as JSON from Redis, change it, SET it back,
`send_and_wait` the next command, commit that one offset. Happy path only (a
failed step ends the saga FAILED, no compensation). It talks to the real
participants with the commands saga-worker sends, and uses the project's
codec (orjson) and clients, so the gap it shows is the one-at-a-time shape,
not a slower JSON library.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from benchmarks.passthrough import STEPS, command
from participants.app import saga_id_for_order
from saga_worker.engine.decide import completed_message_id, failed_message_id
from saga_worker.observability.logs import configure_logging
from saga_worker.runtime.consumer_loop import Record
from saga_worker.runtime.kafka_clients import make_consumer, make_producer
from saga_worker.settings import Settings, load_settings
from saga_worker.wire import make_headers
from schemas import topics as t


class NaiveOrchestrator:
    def __init__(self, settings: Settings, redis: Redis, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._topics = settings.topics
        self._redis = redis
        self._producer = producer

    def key(self, saga_id: str) -> str:
        return f"{self._settings.saga_key_prefix}naive:{saga_id}"

    async def handle(self, record: Record) -> None:
        logical = self._topics.logical(record.topic)
        body = orjson.loads(record.value or b"{}")
        if logical == t.ORDER_CREATED:
            saga_id = saga_id_for_order(str(body["order_id"]))
            data = {k: v for k, v in body.items() if k != "message_id"}
            saga = {"saga_id": saga_id, "status": "pending", "step": 0, "data": data}
            await self._save_and_send(saga)
            return
        raw = await self._redis.get(self.key(str(body["saga_id"])))
        if raw is None:
            return
        saga = orjson.loads(raw)
        if saga["status"] != "pending" or body["step_name"] != STEPS[saga["step"]][0]:
            return  # late or repeated reply
        if logical == t.STEP_FAILED:
            saga["status"] = "failed"
            saga["error"] = body.get("error", "step failed")
        else:
            results = saga["data"].setdefault("results", {})
            results[body["step_name"]] = body.get("result", {})
            saga["step"] += 1
            if saga["step"] == len(STEPS):
                saga["status"] = "completed"
        await self._save_and_send(saga)

    async def _save_and_send(self, saga: dict[str, Any]) -> None:
        saga_id = str(saga["saga_id"])
        await self._redis.set(self.key(saga_id), orjson.dumps(saga))
        data = {**saga["data"], "saga_id": saga_id}
        if saga["status"] == "pending":
            topic, key, body = command(saga["step"], saga_id, saga["data"])
        elif saga["status"] == "completed":
            topic, key, body = t.FULFILLMENT_COMPLETED, saga_id, data
            body["message_id"] = completed_message_id(saga_id)
        else:
            topic, key, body = t.FULFILLMENT_FAILED, saga_id, {**data, "error": saga["error"]}
            body["message_id"] = failed_message_id(saga_id)
        await self._producer.send_and_wait(
            self._topics.physical(topic),
            orjson.dumps(body),
            key=key.encode(),
            headers=make_headers(topic, key),
        )


async def run(settings: Settings) -> None:
    topics = settings.topics
    inbound = (t.ORDER_CREATED, t.STEP_COMPLETED, t.STEP_FAILED)
    consumer: AIOKafkaConsumer = make_consumer(
        settings.kafka,
        *(topics.physical(n) for n in inbound),
        group_id=settings.group_id("naive-orchestrator"),
    )
    producer = make_producer(settings.kafka)
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    orchestrator = NaiveOrchestrator(settings, redis, producer)
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, main.cancel)
    await producer.start()
    await consumer.start()
    try:
        async for record in consumer:
            await orchestrator.handle(record)
            await consumer.commit()
    except asyncio.CancelledError:
        pass  # SIGTERM: the message in hand was committed or will be replayed
    finally:
        await consumer.stop()
        await producer.stop()
        await redis.aclose()


def main() -> None:
    configure_logging()
    asyncio.run(run(load_settings()))


if __name__ == "__main__":
    main()
