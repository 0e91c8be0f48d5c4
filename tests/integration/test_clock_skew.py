"""Timers keep Redis's time, not an instance's (issue 12, clocks).

Two orchestrators in one group whose clocks disagree by 30 s: one saves a step's
timeout, the other claims timers. Whichever is off, the timeout must not fire before
its real due time, so a participant that answers in time completes the saga.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from participants.app import saga_id_for_order
from saga_worker.engine.state import StepStatus
from saga_worker.runtime.clock import utcnow
from saga_worker.settings import Settings
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.saga_support import (
    SagaReader,
    ScriptedParticipants,
    fast_fulfillment,
    order,
    produce,
    reply_for,
    running_orchestrator,
    send_orders,
    settings_for,
)
from tests.services import Services

# Long enough that the held reply, sent a few seconds in, is in time even across the
# rebalance the second instance causes; far shorter than the skew.
DEFINITION = fast_fulfillment(timeout=timedelta(seconds=10))
SKEW = timedelta(seconds=30)
ON_TIME = timedelta(0)


def clock_off_by(offset: timedelta) -> Callable[[], datetime]:
    return lambda: utcnow() + offset


def running(settings: Settings, offset: timedelta) -> Any:
    return running_orchestrator(settings, DEFINITION, clock=clock_off_by(offset))


def hold_reservations(topic: str, cmd: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every participant answers at once, but inventory: the test answers it."""
    return [] if topic == t.RESERVE_ITEMS else [reply_for(topic, cmd)]


@pytest.mark.parametrize(
    ("writer", "claimer"),
    [(ON_TIME, SKEW), (-SKEW, ON_TIME)],
    ids=["a clock 30 s ahead claims", "a clock 30 s behind saves"],
)
async def test_a_step_timeout_never_fires_before_its_due_time_whatever_the_clocks(
    services: Services,
    prefix: str,
    redis_client: Redis,
    writer: timedelta,
    claimer: timedelta,
) -> None:
    settings = settings_for(services, prefix)
    participants = ScriptedParticipants(settings.kafka, prefix, hold_reservations)
    saga_id = saga_id_for_order("o-1")
    reader = SagaReader(redis_client, settings)

    async def reservations() -> list[dict[str, Any]]:
        return [c for topic, c in participants.commands if topic == t.RESERVE_ITEMS]

    async with running(settings, writer), participants.running():  # it creates the topics
        await send_orders(settings.kafka, prefix, [order("o-1")])
        # The only instance so far started the saga and saved the 10 s timeout.
        (command, *_) = await assert_eventually(reservations, message="ReserveItems sent")
        async with running(settings, claimer):
            # Both instances poll timers every 50 ms: give them a second of polls.
            await asyncio.sleep(1)
            state = await reader.state("o-1")
            assert state is not None
            reserve = state.step("reserve_inventory")
            assert (reserve.status, reserve.attempt) == (StepStatus.PENDING, 1), state.history
            # Inventory answers, seconds before the timeout is really due.
            topic, body = reply_for(t.RESERVE_ITEMS, command)
            await produce(settings.kafka, prefix + topic, orjson.dumps(body), saga_id.encode())
            done = await reader.wait_status("o-1", "completed")
    assert [e.detail for e in done.history if "timed out" in (e.detail or "")] == []
    assert {c["attempt"] for c in await reservations()} == {1}
