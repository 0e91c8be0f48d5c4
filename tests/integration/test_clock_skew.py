"""Timers keep Redis's time, not an instance's (issue 12, clocks).

Two orchestrators of one group whose clocks disagree by an hour: one saves a step's
timeout, then the other, alone, claims timers. Whichever is off, the timeout must not
fire before its real due time, so a participant that answers in time completes the saga.
"""

from __future__ import annotations

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
    PATIENT,
    SagaReader,
    ScriptedParticipants,
    fail_reply,
    order,
    prepare_topics,
    produce,
    reply_for,
    running_orchestrator,
    send_orders,
    settings_for,
)
from tests.services import Services

# Far more than the step timeout (PATIENT), which no test run reaches: an instance that
# judged due times by its own clock would fire the timeout at once.
SKEW = 12 * PATIENT
ON_TIME = timedelta(0)
HELD = saga_id_for_order("o-1")  # the saga whose reservation the test answers itself
MARKER = saga_id_for_order("o-marker")  # a saga whose retry the claimer must fire


def clock_off_by(offset: timedelta) -> Callable[[], datetime]:
    return lambda: utcnow() + offset


def running(settings: Settings, offset: timedelta) -> Any:
    return running_orchestrator(settings, clock=clock_off_by(offset))


def script(topic: str, cmd: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every participant answers at once, but inventory: the held saga's reservation
    the test answers; the marker's first fails retryably and its second is held."""
    if topic != t.RESERVE_ITEMS:
        return [reply_for(topic, cmd)]
    if cmd["saga_id"] == MARKER and cmd["attempt"] == 1:
        return [fail_reply(cmd, "warehouse busy", retryable=True)]
    return []


@pytest.mark.parametrize(
    ("writer", "claimer"),
    [(ON_TIME, SKEW), (-SKEW, ON_TIME)],
    ids=["a clock an hour ahead claims", "a clock an hour behind saves"],
)
async def test_a_step_timeout_never_fires_before_its_due_time_whatever_the_clocks(
    services: Services,
    prefix: str,
    redis_client: Redis,
    writer: timedelta,
    claimer: timedelta,
) -> None:
    settings = settings_for(services, prefix)
    await prepare_topics(settings)
    participants = ScriptedParticipants(settings.kafka, prefix, script)
    reader = SagaReader(redis_client, settings)

    async def sent(saga_id: str) -> list[str]:
        return participants.by_saga(saga_id)

    async with participants.running():
        async with running(settings, writer):
            await send_orders(settings.kafka, prefix, [order("o-1")])
            # The writer started the saga and saved its timeout with its state.
            await assert_eventually(lambda: sent(HELD), lambda s: s == [f"{t.RESERVE_ITEMS}#1"])
        async with running(settings, claimer):
            # The claimer, alone now, fires a retry it scheduled itself: its timer task
            # has polled since, when a claim by its own clock would have taken the held
            # saga's timeout too.
            await send_orders(settings.kafka, prefix, [order("o-marker")])
            await assert_eventually(
                lambda: sent(MARKER),
                lambda s: f"{t.RESERVE_ITEMS}#2" in s,
                message="the claimer fired the marker's retry",
            )
            state = await reader.state("o-1")
            assert state is not None
            reserve = state.step("reserve_inventory")
            assert (reserve.status, reserve.attempt) == (StepStatus.PENDING, 1), state.history
            # Inventory answers, long before the timeout is really due.
            command = next(c for _, c in participants.commands if c["saga_id"] == HELD)
            topic, body = reply_for(t.RESERVE_ITEMS, command)
            await produce(settings.kafka, prefix + topic, orjson.dumps(body), HELD.encode())
            done = await reader.wait_status("o-1", "completed")
    assert [e.detail for e in done.history if "timed out" in (e.detail or "")] == []
    assert participants.by_saga(HELD) == [
        f"{t.RESERVE_ITEMS}#1",
        f"{t.PROCESS_PAYMENT}#1",
        f"{t.CREATE_SHIPMENT}#1",
        f"{t.SEND_ORDER_CONFIRMATION}#1",
    ]
