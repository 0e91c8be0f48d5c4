"""The operator CLI run for real (`python -m saga_worker ...`) against sagas of the real
orchestrator on the real broker and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from saga_worker.settings import Settings
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.saga_support import (
    SHORT,
    SagaReader,
    ScriptedParticipants,
    cli,
    fail_reply,
    fast_fulfillment,
    one_error_line,
    operator_retries_until_failed,
    order,
    produce,
    read_topic,
    reply_for,
    running_orchestrator,
    send_orders,
    settings_for,
)
from tests.services import Services

Reply = list[tuple[str, dict[str, Any]]]


async def test_a_saga_whose_compensation_never_answers_is_listed_retried_and_ends_failed(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    answering = asyncio.Event()

    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        if topic == t.PROCESS_PAYMENT and cmd["order_id"] == "o-stuck":
            return [fail_reply(cmd, "card declined", retryable=False)]
        if topic == t.RELEASE_RESERVATION and not answering.is_set():
            return []
        return [reply_for(topic, cmd)]

    settings = settings_for(services, prefix)
    reader = SagaReader(redis_client, settings)
    # Only compensations, which the test keeps silent, time out; every step has all the
    # time it needs.
    silent_compensations = fast_fulfillment(compensation_timeout=SHORT)
    async with (
        running_orchestrator(settings, silent_compensations),
        ScriptedParticipants(settings.kafka, prefix, script).running(),
    ):
        await send_orders(settings.kafka, prefix, [order("o-stuck"), order("o-fine")])
        stuck = await reader.wait_status("o-stuck", "needs_operator")
        await reader.wait_status("o-fine", "completed")

        listed = (await cli(services, prefix, "list", "--state", "needs_operator", "--json")).json()
        assert [s["saga_id"] for s in listed["sagas"]] == [stuck.saga_id]
        assert listed["sagas"][0]["business_key"] == "o-stuck"
        assert listed["next_offset"] is None
        table = await cli(services, prefix, "list", "-s", "needs_operator")
        assert stuck.saga_id in table.out
        assert "needs_operator" in table.out

        answering.set()
        resumed = await cli(services, prefix, "retry", "o-stuck")
        assert resumed.code == 0, resumed.err
        assert f"resumed saga {stuck.saga_id}: now compensating" in resumed.out

        failed = await operator_retries_until_failed(services, prefix, reader, "o-stuck")

    assert any(h.detail == "resumed by operator" for h in failed.history)
    again = await cli(services, prefix, "retry", stuck.saga_id)
    assert "refused: saga is failed" in one_error_line(again, 1)


async def test_abort_compensates_a_saga_waiting_on_a_silent_step(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        return [] if topic == t.PROCESS_PAYMENT else [reply_for(topic, cmd)]

    settings = settings_for(services, prefix)
    reader = SagaReader(redis_client, settings)
    scripted = ScriptedParticipants(settings.kafka, prefix, script)
    async with running_orchestrator(settings), scripted.running():
        await send_orders(settings.kafka, prefix, [order("o-abort")])
        waiting = await reader.wait_status("o-abort", "pending")
        await assert_eventually(
            lambda: reader.state("o-abort"),
            lambda s: s is not None and s.step("process_payment").status.value == "pending",
            message="waiting on process_payment",
        )

        aborted = await cli(services, prefix, "abort", "o-abort", "--reason", "customer called")
        assert aborted.code == 0, aborted.err
        assert f"aborted saga {waiting.saga_id}: now compensating" in aborted.out
        failed = await reader.wait_status("o-abort", "failed")

    assert "customer called" in (failed.error or "")
    # The payment may have happened unheard: it is refunded too, then the reservation.
    after_abort = scripted.topics_for(waiting.saga_id)[2:]
    assert after_abort[:2] == [t.REFUND_PAYMENT, t.RELEASE_RESERVATION]
    refused = await cli(services, prefix, "abort", "o-abort")
    assert "refused: saga is failed" in one_error_line(refused, 1)
    missing = await cli(services, prefix, "abort", "o-nobody")
    assert one_error_line(missing, 1) == "error: no saga with id or business key 'o-nobody'"


async def test_show_list_pages_and_stats_of_completed_sagas(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix)
    reader = SagaReader(redis_client, settings)
    orders = ["o-1", "o-2", "o-3"]
    async with (
        running_orchestrator(settings),
        ScriptedParticipants(settings.kafka, prefix).running(),
    ):
        await send_orders(settings.kafka, prefix, [order(o) for o in orders])
        for o in orders:
            await reader.wait_status(o, "completed")
        stats = await assert_eventually(
            lambda: _stats(services, prefix),
            lambda s: _lag(s, settings, "orchestrator")["lag"] == 0,
            message="orchestrator caught up",
        )

    assert stats["sagas"]["completed"] == 3
    assert stats["backlog"]["completed_last_60s"] == 3
    assert stats["backlog"]["failed_last_60s"] == 0
    assert _lag(stats, settings, "orchestrator")["committed_partitions"] > 0
    assert _lag(stats, settings, "participant.inventory")["committed_partitions"] == 0

    shown = await cli(services, prefix, "show", "o-2")
    assert shown.code == 0, shown.err
    for expected in ("completed", "StartSaga", "StepSucceeded", "send_confirmation", "+0."):
        assert expected in shown.out
    view = (await cli(services, prefix, "show", "o-2", "--json")).json()
    assert (view["saga_type"], view["business_key"]) == ("OrderFulfillment", "o-2")
    assert [h["to"] for h in view["history"]][-1] == "completed"
    assert view["history"][0]["after_ms"] == 0
    assert view["steps"]["create_shipment"]["status"] == "succeeded"

    first = await cli(services, prefix, "list", "--state", "completed", "--limit", "2", "--json")
    second = await cli(services, prefix, "list", "-s", "completed", "--offset", "2", "--json")
    page1, page2 = first.json(), second.json()
    assert page1["next_offset"] == 2
    assert page2["next_offset"] is None
    assert sorted(s["business_key"] for s in page1["sagas"] + page2["sagas"]) == orders
    older = await cli(services, prefix, "list", "--older-than", "1h", "--json")
    assert older.json()["sagas"] == []

    missing = await cli(services, prefix, "show", "o-404")
    assert one_error_line(missing, 1) == "error: no saga with id or business key 'o-404'"


async def test_dlq_lists_a_bad_record_and_replays_its_original_bytes(
    services: Services, prefix: str
) -> None:
    settings = settings_for(services, prefix)
    source = prefix + t.ORDER_CREATED
    bad = b'{"order_id": "o-bad", oops'
    async with running_orchestrator(settings):
        await produce(settings.kafka, source, bad, key=b"o-bad", headers=[("origin", b"shop")])
        letters = await assert_eventually(
            lambda: _dlq(services, prefix),
            lambda found: len(found) == 1,
            message="one dead letter",
        )

    letter = letters[0]
    assert (letter["source_topic"], letter["source_offset"], letter["code"]) == (
        source,
        0,
        "not_json",
    )
    assert letter["reason"]
    assert letter["preview"] == bad.decode()
    table = await cli(services, prefix, "dlq", "list")
    assert "not_json" in table.out
    assert letter["id"] in table.out

    replayed = await cli(services, prefix, "dlq", "replay", "--offset", letter["id"])
    assert replayed.code == 0, replayed.err
    assert replayed.out.strip() == f"replayed 1 dead letters (1 to {source})"
    original, again = await read_topic(settings.kafka, source, expect=2)
    assert (again.key, again.value) == (original.key, original.value) == (b"o-bad", bad)
    # The record's own headers go back, plus where it was replayed from and how often.
    assert list(again.headers) == [
        ("origin", b"shop"),
        ("dlq.replayed_from", letter["id"].encode()),
        ("dlq.replays", b"1"),
    ]

    by_code = await cli(services, prefix, "dlq", "replay", "--code", "too_large")
    assert by_code.out.strip() == "replayed 0 dead letters"
    unknown = await cli(services, prefix, "dlq", "replay", "--offset", "0:999")
    assert "1 of the given dead letters were not replayed" in one_error_line(unknown, 1)


async def test_bad_usage_and_bad_settings_are_one_line_with_exit_2(
    services: Services, prefix: str
) -> None:
    cases = [
        (("list", "--older-than", "ten minutes"), {}, "--older-than"),
        (("list", "--state", "stuck"), {}, "unknown state 'stuck'"),
        (("list", "--limit", "0"), {}, "--limit must be at least 1"),
        (("dlq", "replay"), {}, "--offset PARTITION:OFFSET, --code CODE or --all"),
        (("dlq", "replay", "--offset", "7"), {}, "PARTITION:OFFSET"),
        (("stats",), {"SAGA_PARTITIONS": "0"}, "SAGA_PARTITIONS"),
    ]
    for args, env, expected in cases:
        assert expected in one_error_line(await cli(services, prefix, *args, **env), 2)


async def test_an_unreachable_redis_is_one_line_without_its_password(
    services: Services, prefix: str
) -> None:
    run = await cli(services, prefix, "list", REDIS_URL="redis://:hunter2@127.0.0.1:1/0")
    line = one_error_line(run, 1)
    assert line.startswith("error: Redis:")
    assert "hunter2" not in run.err + run.out


async def _stats(services: Services, prefix: str) -> Any:
    return (await cli(services, prefix, "stats", "--json")).json()


async def _dlq(services: Services, prefix: str) -> Any:
    return (await cli(services, prefix, "dlq", "list", "--json")).json()


def _lag(stats: Any, settings: Settings, role: str) -> Any:
    group = settings.group_id(role)
    return next(g for g in stats["lag"] if g["group"] == group)
