"""Metrics, health endpoints and trace context, against the real Kafka and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis.asyncio as aioredis
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import saga_worker
from participants.app import app as sample_app
from participants.app import saga_id_for_order
from participants.inventory import INVENTORY
from participants.seed import DEMO_SEED, load_seed
from saga_worker.participant.runtime import ParticipantWorker
from saga_worker.runtime.run import Runnable, all_workers
from saga_worker.wire import TRACEPARENT, header_value
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.http_probe import http_get
from tests.integration.saga_support import (
    SagaReader,
    ScriptedParticipants,
    fail_reply,
    order,
    produce,
    read_topic,
    reply_for,
    running_orchestrator,
    running_participants,
    sample,
    send_orders,
    settings_for,
)
from tests.services import Services

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
DEFINITION = "OrderFulfillment"


def scripted(topic: str, cmd: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Answers by order id: `declined` and `stuck` fail payment, `retry` fails it once,
    `hang` never hears back from inventory."""
    kind = cmd["order_id"].split("-")[1]
    if topic == t.RESERVE_ITEMS and kind == "hang":
        return []
    if topic == t.PROCESS_PAYMENT and kind in {"declined", "stuck"}:
        return [fail_reply(cmd, "card declined", retryable=False)]
    if topic == t.PROCESS_PAYMENT and kind == "retry" and cmd["attempt"] == 1:
        return [fail_reply(cmd, "gateway busy", retryable=True)]
    if topic == t.RELEASE_RESERVATION and kind == "stuck":
        return [fail_reply(cmd, "warehouse offline", retryable=True)]
    if topic == t.RESERVE_ITEMS and kind == "dup":
        return [reply_for(topic, cmd)] * 2  # the copy changes nothing
    return [reply_for(topic, cmd)]


async def test_metrics_endpoint_serves_counters_that_move_as_sagas_run(
    services: Services, prefix: str
) -> None:
    # The sweeper measures the backlogs every half sweep threshold: 0.5 s here.
    settings = settings_for(services, prefix, saga_health_port=0, saga_outbox_sweep_after_s=1.0)
    participants = ScriptedParticipants(settings.kafka, prefix, scripted)
    orders = [order(f"m-{kind}-1") for kind in ("ok", "retry", "dup", "declined", "stuck", "hang")]
    async with running_orchestrator(settings) as worker:
        health = worker.health
        assert health is not None
        await health.start()  # port 0 in settings means "off"; bind an ephemeral one here
        try:

            async def metrics() -> str:
                status, body = await http_get(health.port, "/metrics")
                assert status == 200
                return body.decode()

            before = await metrics()
            assert sample(before, "saga_worker_sagas_started_total", definition=DEFINITION) == 0
            async with participants.running():
                await send_orders(settings.kafka, prefix, orders)
                await produce(settings.kafka, prefix + t.ORDER_CREATED, b"not json", b"k")
                text = await assert_eventually(
                    metrics,
                    lambda m: (
                        sample(m, "saga_worker_sagas_completed_total", definition=DEFINITION) == 3
                        and sample(m, "saga_worker_sagas_failed_total", definition=DEFINITION) == 1
                        and sample(
                            m, "saga_worker_sagas_needing_operator_total", definition=DEFINITION
                        )
                        == 1
                    ),
                    within=30,
                    message="three sagas completed, one failed, one needs an operator",
                )
            # The hanging saga's step timeout is the one timer left.
            swept = await assert_eventually(
                metrics, lambda m: sample(m, "saga_worker_timer_backlog") == 1, within=10
            )
        finally:
            await health.stop()

    def count(name: str, **labels: str) -> float:
        return sample(text, name, **labels)

    assert count("saga_worker_sagas_started_total", definition=DEFINITION) == 6
    completed = {"definition": DEFINITION, "status": "completed"}
    assert count("saga_worker_saga_duration_seconds_count", **completed) == 3
    assert (
        count("saga_worker_saga_duration_seconds_count", definition=DEFINITION, status="failed")
        == 1
    )
    assert count("saga_worker_saga_duration_seconds_sum", **completed) > 0
    reserved = {"definition": DEFINITION, "step": "reserve_inventory"}
    assert count("saga_worker_step_duration_seconds_count", **reserved, outcome="succeeded") == 5
    paid = {"definition": DEFINITION, "step": "process_payment"}
    assert count("saga_worker_step_duration_seconds_count", **paid, outcome="failed") == 3
    assert count("saga_worker_step_duration_seconds_count", **reserved, outcome="compensated") == 1
    assert count("saga_worker_step_retries_total", **paid) == 1
    assert count("saga_worker_compensation_retries_total", **reserved) == 1
    assert count("saga_worker_events_ignored_total") >= 1
    assert count("saga_worker_dead_letters_total", worker="orchestrator", code="not_json") == 1
    assert count("saga_worker_batch_records_count", worker="orchestrator") >= 1
    assert count("saga_worker_timers_fired_total") >= 2  # the two retry backoffs
    assert sample(swept, "saga_worker_outbox_backlog") == 0
    # The Redis-wide gauges name the instance that measured them.
    me = worker.instance
    assert sample(swept, "saga_worker_timer_backlog", measured_by=me) == 1
    assert sample(swept, "saga_worker_sagas", status="completed", measured_by=me) == 3
    assert sample(swept, "saga_worker_sagas", status="needs_operator", measured_by=me) == 1
    assert sample(text, "saga_worker_build_info", version=saga_worker.__version__) == 1
    assert 0 <= sample(text, "saga_worker_seconds_since_last_batch", worker="orchestrator") < 30


async def test_a_traceparent_on_order_created_reaches_every_command_reply_and_outcome(
    services: Services, prefix: str, redis_client: aioredis.Redis
) -> None:
    settings = settings_for(services, prefix)
    await load_seed(redis_client, prefix, DEMO_SEED)
    body = order(
        "trace-1",
        customer_id="cust-001",
        items=[{"sku": "sku-ceramic-mug", "quantity": 1, "unit_price": 1490}],
    )
    async with (
        running_orchestrator(settings),
        running_participants(settings) as workers,
    ):
        await produce(
            settings.kafka,
            prefix + t.ORDER_CREATED,
            orjson.dumps(body),
            b"trace-1",
            headers=[(TRACEPARENT, TRACE.encode())],
        )
        await SagaReader(redis_client, settings).wait_status("trace-1", "completed")
    commands = (t.RESERVE_ITEMS, t.PROCESS_PAYMENT, t.CREATE_SHIPMENT, t.SEND_ORDER_CONFIRMATION)
    expected = {**dict.fromkeys(commands, 1), t.STEP_COMPLETED: 4, t.FULFILLMENT_COMPLETED: 1}
    for topic, n in expected.items():
        records = await read_topic(settings.kafka, prefix + topic, expect=n)
        assert len(records) == n, topic
        for record in records:
            assert header_value(record.headers, TRACEPARENT) == TRACE, topic
            assert orjson.loads(record.value)["saga_id"] == saga_id_for_order("trace-1")
    handled = {
        (w.participant.name, topic)
        for w in workers
        for topic in commands
        if sample(
            w.metrics.render().decode(),
            "saga_worker_participant_commands_total",
            participant=w.participant.name,
            topic=topic,
            outcome="completed",
        )
        == 1
    }
    assert handled == {
        ("inventory", t.RESERVE_ITEMS),
        ("payment", t.PROCESS_PAYMENT),
        ("shipping", t.CREATE_SHIPMENT),
        ("notification", t.SEND_ORDER_CONFIRMATION),
    }


async def test_the_users_own_span_around_order_created_is_the_parent_of_every_saga_span(
    services: Services,
    prefix: str,
    redis_client: aioredis.Redis,
    recorded_spans: InMemorySpanExporter,
) -> None:
    """The process sets an SDK tracer provider (in memory here, OTLP in production) and
    produces OrderCreated inside a span of its own, through the OpenTelemetry API alone:
    the orchestrator's and the participants' spans are children of that span."""
    settings = settings_for(services, prefix)
    await load_seed(redis_client, prefix, DEMO_SEED)
    body = order(
        "otel-1",
        customer_id="cust-001",
        items=[{"sku": "sku-ceramic-mug", "quantity": 1, "unit_price": 1490}],
    )
    shop = trace.get_tracer("the-users-shop")
    async with (
        running_orchestrator(settings),
        running_participants(settings),
    ):
        with shop.start_as_current_span("place order") as placing:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            await produce(
                settings.kafka,
                prefix + t.ORDER_CREATED,
                orjson.dumps(body),
                b"otel-1",
                headers=[(k, v.encode()) for k, v in carrier.items()],
            )
        await SagaReader(redis_client, settings).wait_status("otel-1", "completed")
    users = placing.get_span_context()
    spans = recorded_spans.get_finished_spans()

    def scope(span: ReadableSpan) -> str:
        return span.instrumentation_scope.name if span.instrumentation_scope else ""

    assert [s.name for s in spans if scope(s) == "the-users-shop"] == ["place order"]
    ours = [s for s in spans if scope(s) == "saga_worker"]
    for span in ours:
        assert span.parent is not None, span.name
        assert span.parent.span_id == users.span_id, span.name
        assert span.context.trace_id == users.trace_id, span.name
    saga_spans = [s for s in ours if s.name == f"saga {DEFINITION}"]
    # One per saved write: the start and at least one per step's reply (batches may merge).
    assert len(saga_spans) >= 2
    assert saga_spans[-1].attributes is not None
    assert saga_spans[-1].attributes["status"] == "completed"
    assert saga_spans[-1].attributes["saga_id"] == saga_id_for_order("otel-1")
    assert {s.name for s in ours} - {f"saga {DEFINITION}"} == {
        f"inventory {t.RESERVE_ITEMS}",
        f"payment {t.PROCESS_PAYMENT}",
        f"shipping {t.CREATE_SHIPMENT}",
        f"notification {t.SEND_ORDER_CONFIRMATION}",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(worker: Runnable) -> AsyncIterator[None]:
    """`worker` runs in this process until the block ends, then drains and stops."""
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def test_a_participant_serves_health_readiness_and_metrics_on_its_port(
    services: Services, prefix: str
) -> None:
    port = free_port()
    settings = settings_for(services, prefix, saga_health_port=port)
    worker = ParticipantWorker(INVENTORY, settings)
    async with running(worker):
        await asyncio.wait_for(worker.wait_started(), 30)
        assert await http_get(port, "/healthz") == (200, b"ok\n")
        assert await http_get(port, "/readyz") == (200, b"ok\n")
        await produce(settings.kafka, prefix + t.RESERVE_ITEMS, b"not json", b"s1")

        async def dead_letters() -> float:
            status, body = await http_get(port, "/metrics")
            assert status == 200
            labels = {"worker": "participant.inventory", "code": "not_json"}
            return sample(body.decode(), "saga_worker_dead_letters_total", **labels)

        await assert_eventually(dead_letters, lambda n: n == 1, within=20)
        worker.stop()
        assert (await http_get(port, "/readyz"))[0] == 503
    batches = sample(
        worker.metrics.render().decode(),
        "saga_worker_batch_records_count",
        worker="participant.inventory",
    )
    assert batches >= 1


async def test_redis_wide_gauges_are_exported_by_one_orchestrator_of_several(
    services: Services, prefix: str
) -> None:
    """Replicas measure the same Redis: one of them exports the backlogs and sagas per
    status, labelled with its name; when it stops, another takes over. They measure as
    they sweep outboxes: every half second here."""
    settings = settings_for(services, prefix, saga_outbox_sweep_after_s=1.0)
    async with (
        running_orchestrator(settings) as first,
        running_orchestrator(settings, members=2) as second,
    ):

        async def exporters() -> list[str]:
            return [
                w.instance
                for w in (first, second)
                if "saga_worker_timer_backlog{" in w.metrics.render().decode()
            ]

        await assert_eventually(exporters, lambda e: len(e) == 1, within=10)
        for _ in range(10):  # several sweeps of both
            await asyncio.sleep(0.3)
            assert await exporters() == [first.instance]
        text = first.metrics.render().decode()
        assert f'saga_worker_sagas{{measured_by="{first.instance}",status="pending"}} 0.0' in text
    # Both stopped: the lease lapses and the next orchestrator measures.
    async with running_orchestrator(settings) as third:

        async def third_exports() -> str:
            return third.metrics.render().decode()

        await assert_eventually(
            third_exports,
            lambda m: f'measured_by="{third.instance}"' in m,
            within=10,
            message="the lease of a stopped orchestrator lapses and another takes over",
        )


async def test_saga_worker_all_serves_every_workers_metrics_on_one_port(
    services: Services, prefix: str
) -> None:
    port = free_port()
    settings = settings_for(services, prefix, saga_health_port=port)
    together = all_workers(sample_app, settings)
    async with running(together):

        async def ready() -> int:
            try:
                return (await http_get(port, "/readyz"))[0]
            except OSError:
                return 0

        await assert_eventually(ready, lambda status: status == 200, within=60)
        await produce(settings.kafka, prefix + t.PROCESS_PAYMENT, b"not json", b"s1")

        async def metrics() -> str:
            return (await http_get(port, "/metrics"))[1].decode()

        text = await assert_eventually(
            metrics,
            lambda m: (
                sample(m, "saga_worker_dead_letters_total", worker="participant.payment") == 1
            ),
            within=20,
        )
    workers = ["orchestrator", *(f"participant.{n}" for n in sample_app.participant_names)]
    for worker in workers:
        assert f'saga_worker_seconds_since_last_batch{{worker="{worker}"}}' in text, worker
    assert text.count("saga_worker_build_info{") == 1
    assert text.count("# TYPE saga_worker_batch_records histogram") == 1
