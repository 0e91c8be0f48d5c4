"""What operators ask Kafka: which partitions a topic has, and how far behind each group is.

Read-only: the consumer used here has no group, so it never commits and never
joins a rebalance of the workers it is looking at.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from saga_worker.runtime.kafka_clients import KafkaConnection


@dataclass(frozen=True)
class GroupLag:
    """Records on a group's topics that it has not committed yet.

    A partition the group never committed counts from its first record, which
    is where the workers (auto_offset_reset=earliest) would start.
    """

    group: str
    lag: int
    partitions: int
    committed_partitions: int  # 0: the group never ran (or its offsets expired)


@contextlib.asynccontextmanager
async def kafka_admin(conn: KafkaConnection) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**conn.options())
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def reader(conn: KafkaConnection) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer without a group: reads offsets and records, never commits."""
    consumer = AIOKafkaConsumer(**conn.options(), enable_auto_commit=False)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def partitions_of(conn: KafkaConnection, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the topics that exist; missing topics are left out."""
    async with kafka_admin(conn) as admin:
        described = await admin.describe_topics(sorted(set(topics)))
    return [
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if d["error_code"] == 0
        for p in d["partitions"]
    ]


async def offset_ranges(
    conn: KafkaConnection, partitions: list[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The first offset and the next offset to be written, per partition."""
    async with reader(conn) as consumer:
        return await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)


async def consumer_lag(
    conn: KafkaConnection, groups: Mapping[str, Sequence[str]]
) -> list[GroupLag]:
    """Lag of each group (name -> the physical topics it consumes), in the order given."""
    partitions = await partitions_of(conn, (t for topics in groups.values() for t in topics))
    first, end = await offset_ranges(conn, partitions) if partitions else ({}, {})
    lags = []
    async with kafka_admin(conn) as admin:
        for group, topics in groups.items():
            mine = [tp for tp in partitions if tp.topic in set(topics)]
            committed = (
                await admin.list_consumer_group_offsets(group, partitions=mine) if mine else {}
            )
            done = {tp: c.offset for tp, c in committed.items() if c.offset >= 0}
            lag = sum(max(0, end[tp] - done.get(tp, first[tp])) for tp in mine)
            lags.append(GroupLag(group, lag, len(mine), len(done)))
    return lags
