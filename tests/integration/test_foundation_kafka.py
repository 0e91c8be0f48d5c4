"""The broker under everything: idempotent produce, group consume, manual commits."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from saga_worker.runtime.kafka_clients import (
    KafkaConnection,
    ensure_topics,
    make_consumer,
    make_producer,
)
from tests.services import Services


def connection(services: Services) -> KafkaConnection:
    return KafkaConnection(services.bootstrap_servers)


async def consume_until(consumer: AIOKafkaConsumer, count: int) -> list[bytes]:
    seen: list[bytes] = []
    for _ in range(100):
        batch = await consumer.getmany(timeout_ms=300)
        for records in batch.values():
            seen.extend(r.value for r in records)
        if len(seen) >= count:
            break
    return seen


async def test_topics_are_created_with_the_chosen_partition_count(
    services: Services, prefix: str
) -> None:
    conn = connection(services)
    created = await ensure_topics(conn, [f"{prefix}a", f"{prefix}b"], partitions=3)
    again = await ensure_topics(conn, [f"{prefix}a"], partitions=3)
    admin = AIOKafkaAdminClient(bootstrap_servers=services.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([f"{prefix}a", f"{prefix}b"])
    finally:
        await admin.close()
    assert created == [f"{prefix}a", f"{prefix}b"]
    assert again == []
    assert [len(t["partitions"]) for t in described] == [3, 3]


async def test_idempotent_producer_messages_are_consumed_exactly_once(
    services: Services, prefix: str
) -> None:
    conn = connection(services)
    topic = f"{prefix}orders"
    await ensure_topics(conn, [topic], partitions=4)
    producer = make_producer(conn)
    await producer.start()
    try:
        sent = [f"m{i}".encode() for i in range(200)]
        futures = [await producer.send(topic, v, key=v) for v in sent]
        for fut in futures:
            await fut
    finally:
        await producer.stop()

    consumer = make_consumer(conn, topic, group_id=f"{prefix}g")
    await consumer.start()
    try:
        got = await consume_until(consumer, len(sent))
        await consumer.commit()
        # The producer has stopped: every record it wrote is below the end offsets.
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        positions = {tp: await consumer.position(tp) for tp in partitions}
    finally:
        await consumer.stop()
    assert sorted(got) == sorted(sent)
    assert len(partitions) == 4
    assert positions == ends  # read to the end: nothing more arrives later
    assert sum(ends.values()) == len(sent)  # and each was written once


async def test_a_restarted_consumer_resumes_after_its_last_commit(
    services: Services, prefix: str
) -> None:
    conn = connection(services)
    topic = f"{prefix}resume"
    await ensure_topics(conn, [topic], partitions=1)
    producer = make_producer(conn)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"v{i}".encode())
    finally:
        await producer.stop()

    tp = TopicPartition(topic, 0)
    first = make_consumer(conn, topic, group_id=f"{prefix}g", max_poll_records=4)
    await first.start()
    try:
        batch = await first.getmany(tp, timeout_ms=5000)
        while not batch.get(tp):
            batch = await first.getmany(tp, timeout_ms=5000)
        taken = batch[tp][:4]
        await first.commit({tp: taken[-1].offset + 1})
    finally:
        await first.stop()

    second = make_consumer(conn, topic, group_id=f"{prefix}g")
    await second.start()
    try:
        rest = await consume_until(second, 10 - len(taken))
    finally:
        await second.stop()
    assert [r.value for r in taken] == [b"v0", b"v1", b"v2", b"v3"]
    assert rest == [f"v{i}".encode() for i in range(4, 10)]
