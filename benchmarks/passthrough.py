"""The floor: the saga topology with every worker reduced to "read a record, write the next".

`python -m benchmarks.passthrough orchestrator|inventory|payment|shipping|notification`
runs one role with settings from the environment. No state, no validation: the
orchestrator role turns OrderCreated into ReserveItems and each SagaStepCompleted
into the next command or OrderFulfillmentCompleted; a participant role turns its
command into a SagaStepCompleted. Messages have the shapes saga-worker sends,
keyed by saga id. Being stateless, the orchestrator learns the saga's data from
the reply, which echoes the command it answers (so floor replies are larger than
real ones). Batching is the product's: the same ConsumerLoop (getmany, commit per
batch once its sends are acknowledged, the next batch handled meanwhile) and producer
settings.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from participants.app import saga_id_for_order
from saga_worker.engine.decide import command_id, completed_message_id
from saga_worker.observability.logs import configure_logging
from saga_worker.runtime.consumer_loop import ConsumerLoop, Record, Tail
from saga_worker.runtime.kafka_clients import make_consumer, make_producer
from saga_worker.settings import Settings, load_settings
from saga_worker.wire import SCHEMA_VERSION, make_headers
from schemas import topics as t

# (step name, command topic, participant role), in saga order.
STEPS = (
    ("reserve_inventory", t.RESERVE_ITEMS, "inventory"),
    ("process_payment", t.PROCESS_PAYMENT, "payment"),
    ("create_shipment", t.CREATE_SHIPMENT, "shipping"),
    ("send_confirmation", t.SEND_ORDER_CONFIRMATION, "notification"),
)
ROLES = ("orchestrator", *(role for _, _, role in STEPS))
COMMAND_FIELDS = ("saga_id", "step_name", "command_id", "attempt", "message_id", "schema_version")

Message = tuple[str, str, dict[str, Any]]  # logical topic, key, body


def command(step_index: int, saga_id: str, data: dict[str, Any]) -> Message:
    name, topic, _ = STEPS[step_index]
    cid = command_id(saga_id, name, 1)
    body = {
        **data,
        "saga_id": saga_id,
        "step_name": name,
        "command_id": cid,
        "attempt": 1,
        "message_id": cid,
        "schema_version": SCHEMA_VERSION,
    }
    return topic, saga_id, body


def start(order: dict[str, Any]) -> Message:
    data = {k: v for k, v in order.items() if k != "message_id"}
    return command(0, saga_id_for_order(str(order["order_id"])), {**data, "results": {}})


def reply(cmd: dict[str, Any]) -> Message:
    body = {k: cmd[k] for k in COMMAND_FIELDS}
    body["message_id"] = f"{cmd['command_id']}:completed"
    body["result"] = {"ref": cmd["command_id"]}
    body["command"] = cmd
    return t.STEP_COMPLETED, str(cmd["saga_id"]), body


def advance(done: dict[str, Any]) -> Message:
    cmd = done["command"]
    saga_id = str(cmd["saga_id"])
    data = {k: v for k, v in cmd.items() if k not in COMMAND_FIELDS}
    data["results"] = {**data["results"], cmd["step_name"]: done["result"]}
    index = next(i for i, (name, _, _) in enumerate(STEPS) if name == cmd["step_name"]) + 1
    if index < len(STEPS):
        return command(index, saga_id, data)
    message_id = completed_message_id(saga_id)
    outcome = {**data, "saga_id": saga_id, "message_id": message_id}
    return t.FULFILLMENT_COMPLETED, saga_id, {**outcome, "schema_version": SCHEMA_VERSION}


def transform(role: str, logical_topic: str, body: dict[str, Any]) -> Message:
    if role != "orchestrator":
        return reply(body)
    return start(body) if logical_topic == t.ORDER_CREATED else advance(body)


def inputs(role: str) -> tuple[str, ...]:
    if role == "orchestrator":
        return t.ORDER_CREATED, t.STEP_COMPLETED
    return tuple(topic for _, topic, r in STEPS if r == role)


async def run(role: str, settings: Settings) -> None:
    topics = settings.topics
    producer = make_producer(settings.kafka)
    consumer = make_consumer(
        settings.kafka,
        group_id=settings.group_id(f"passthrough.{role}"),
        max_poll_records=settings.saga_batch_size,
    )

    async def handle(records: Sequence[Record]) -> Tail:
        futures = []
        for record in records:
            logical = topics.logical(record.topic)
            topic, key, body = transform(role, logical, orjson.loads(record.value or b"{}"))
            futures.append(
                await producer.send(
                    topics.physical(topic),
                    orjson.dumps(body),
                    key=key.encode(),
                    headers=make_headers(topic, key),
                )
            )
        return asyncio.gather(*futures)  # acknowledged before the commit, as saga-worker's

    loop = ConsumerLoop(
        consumer,
        [topics.physical(n) for n in inputs(role)],
        handle,
        max_records=settings.saga_batch_size,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, loop.stop)
    await producer.start()
    await consumer.start()
    try:
        await loop.subscribe()
        await loop.run()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in ROLES:
        raise SystemExit(f"usage: python -m benchmarks.passthrough {'|'.join(ROLES)}")
    configure_logging()
    asyncio.run(run(sys.argv[1], load_settings()))


if __name__ == "__main__":
    main()
