"""What Kafka itself can prove to a test, so that no test watches a topic for a while or
sleeps and hopes: every record written so far (read up to the end offsets), who holds
which partitions of a group, and how far a group has committed.

- `read_to_end` after the writer is known to be done (it exited, or its group committed
  past its input) sees everything it wrote: an absence checked there is proven.
- `wait_assigned` before sending: a worker that has only subscribed may take seconds to
  be given its partitions, time a step timeout would count.
- `wait_caught_up`: a worker commits a batch only once its effects, replies and dead
  letters are durable, so a group with no lag has written all it ever will for its input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import KafkaError

from saga_worker.runtime.kafka_admin import consumer_lag, kafka_admin, partitions_of
from saga_worker.runtime.kafka_clients import KafkaConnection
from tests.eventually import assert_eventually


async def read_to_end(conn: KafkaConnection, *topics: str, within: float = 30) -> list[Any]:
    """Every record of `topics` up to their end offsets as they are at the call (topics
    that do not exist hold none), in each partition's order."""
    partitions = await partitions_of(conn, topics)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        **conn.options(), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[Any] = []
    try:
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)

        async def behind() -> list[str]:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                got.extend(records)
            return [
                f"{tp.topic}[{tp.partition}] at {position} of {end[tp]}"
                for tp in partitions
                if (position := await consumer.position(tp)) < end[tp]
            ]

        await assert_eventually(
            behind, lambda left: not left, within=within, interval=0, message="read to the end"
        )
    finally:
        await consumer.stop()
    return got


@dataclass(frozen=True)
class Member:
    subscription: frozenset[str]
    assigned: frozenset[TopicPartition]


@dataclass(frozen=True)
class Group:
    name: str
    state: str  # "Stable" once every member holds its assignment
    members: tuple[Member, ...]


async def describe_group(conn: KafkaConnection, name: str) -> Group:
    async with kafka_admin(conn) as admin:
        responses = await admin.describe_consumer_groups([name])
    for response in responses:
        for _error, group, state, _protocol_type, _protocol, members in response.groups:
            if group != name:
                continue
            return Group(
                name,
                state,
                tuple(
                    Member(
                        frozenset(ConsumerProtocolMemberMetadata.decode(metadata).subscription)
                        if metadata
                        else frozenset(),
                        frozenset(ConsumerProtocolMemberAssignment.decode(assignment).partitions())
                        if assignment
                        else frozenset(),
                    )
                    for _id, _client, _host, metadata, assignment in members
                ),
            )
    return Group(name, "Dead", ())


async def _unassigned(conn: KafkaConnection, name: str, members: int) -> str:
    """Why the group is not yet fully assigned to `members` members; empty once it is."""
    try:
        group = await describe_group(conn, name)
    except KafkaError as exc:  # the coordinator of a new group may not be known yet
        return repr(exc)
    if group.state != "Stable" or len(group.members) != members:
        return f"{name}: {group.state} with {len(group.members)} of {members} members"
    idle = [m for m in group.members if not m.assigned]
    if idle:
        return f"{name}: {len(idle)} members hold no partition"
    topics = set().union(*(m.subscription for m in group.members))
    wanted = set(await partitions_of(conn, topics))
    held = set().union(*(m.assigned for m in group.members))
    if held != wanted:
        return f"{name}: {len(wanted - held)} partitions of {sorted(topics)} unassigned"
    return ""


async def wait_assigned(
    conn: KafkaConnection, groups: Mapping[str, int], *, within: float = 60
) -> None:
    """Until each group (name -> how many members it must have) is stable with that many
    members, each holding partitions, and together every partition of their topics."""

    async def waiting() -> list[str]:
        reasons = [await _unassigned(conn, name, n) for name, n in groups.items()]
        return [r for r in reasons if r]

    await assert_eventually(
        waiting, lambda left: not left, within=within, message="groups assigned"
    )


async def wait_caught_up(
    conn: KafkaConnection, groups: Mapping[str, Sequence[str]], *, within: float = 60
) -> None:
    """Until each group (name -> the physical topics it reads) has committed every record
    written to its topics so far."""

    async def behind() -> list[str]:
        lags = await consumer_lag(conn, groups)
        return [f"{g.group}: lag {g.lag}" for g in lags if g.lag]

    await assert_eventually(behind, lambda left: not left, within=within, message="caught up")
