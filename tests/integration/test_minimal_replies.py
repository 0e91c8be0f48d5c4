"""Minimal replies (no command_id, no attempt) on the real broker and Redis."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from participants.app import saga_id_for_order
from saga_worker.engine.state import StepStatus
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.saga_support import (
    SagaReader,
    ScriptedParticipants,
    fast_fulfillment,
    order,
    reply_for,
    running_orchestrator,
    send_orders,
    settings_for,
)
from tests.services import Services

Reply = list[tuple[str, dict[str, Any]]]


async def test_a_redelivered_minimal_failure_still_gets_its_step_compensated(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    # The payment participant speaks the minimal contract. Attempt 1 fails, retryably;
    # attempts 2 and 3 charge the card, but all the orchestrator hears after each of
    # them is attempt 1's failure again, byte for byte (no message_id to dedupe on).
    first_failure: dict[str, dict[str, Any]] = {}

    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        if topic == t.PROCESS_PAYMENT:
            first_failure.setdefault(
                cmd["saga_id"],
                {
                    "saga_id": cmd["saga_id"],
                    "step_name": cmd["step_name"],
                    "error": "payment gateway busy",
                    "retryable": True,
                },
            )
            return [(t.STEP_FAILED, first_failure[cmd["saga_id"]])]
        return [reply_for(topic, cmd)]

    # three attempts, and timeouts no test run reaches: only the replies decide
    definition = fast_fulfillment(attempts=3)
    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix, script)
    saga_id = saga_id_for_order("o-minimal")
    async with running_orchestrator(settings, definition), scripted.running():
        await send_orders(settings.kafka, prefix, [order("o-minimal")])
        state = await SagaReader(redis_client, settings).wait_status("o-minimal", "failed")

        async def sent() -> list[str]:
            return scripted.by_saga(saga_id)

        await assert_eventually(sent, lambda s: f"{t.SEND_CANCELLATION_NOTICE}#1" in s)
    payment = state.step("process_payment")
    assert (payment.attempt, payment.status, payment.uncertain) == (
        3,
        StepStatus.COMPENSATED,
        True,
    )
    assert state.step("reserve_inventory").status is StepStatus.COMPENSATED
    assert scripted.by_saga(saga_id) == [
        f"{t.RESERVE_ITEMS}#1",
        f"{t.PROCESS_PAYMENT}#1",
        f"{t.PROCESS_PAYMENT}#2",
        f"{t.PROCESS_PAYMENT}#3",
        f"{t.REFUND_PAYMENT}#1",  # attempt 3 may have charged: refunded
        f"{t.RELEASE_RESERVATION}#1",
        f"{t.SEND_CANCELLATION_NOTICE}#1",
    ]
    refund = next(c for topic, c in scripted.commands if topic == t.REFUND_PAYMENT)
    assert refund["original_command_id"] == f"{saga_id}:process_payment:a3"
    assert "minimal reply: may be an earlier attempt's" in (state.error or "")
