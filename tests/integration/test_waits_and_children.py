"""Wait steps and child sagas on the real broker and Redis (apps: long_running.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from participants.app import NAMES, saga_id_for_order
from saga_worker import SagaState, SagaStatus, StepStatus, WorkerProcess
from saga_worker.runtime.kafka_clients import KafkaConnection
from saga_worker.runtime.worker_processes import settings_env
from saga_worker.settings import Settings
from saga_worker.wire import DLQ_ERROR_CODE, DLQ_REASON, header_value
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.long_running import (
    CUSTOMER_PAYMENTS,
    DEFAULT_DECISION,
    all_of_a_customer,
    approvals,
    defaulting,
    expiring,
    families,
    one_per_customer,
)
from tests.integration.saga_support import (
    ROOT,
    SagaReader,
    ScriptedParticipants,
    cli,
    fail_reply,
    order,
    prepare_topics,
    produce,
    read_topic,
    reply_for,
    role_of,
    running_orchestrator,
    send_orders,
    settings_for,
    started,
    worker_env,
)
from tests.readme import run_block
from tests.services import Services

Reply = list[tuple[str, dict[str, Any]]]
LARGE = [{"sku": "sku-1", "quantity": 2, "unit_price": 60_000}]  # above the threshold


def large(order_id: str) -> dict[str, Any]:
    return order(order_id, items=LARGE)


async def decide(settings: Settings, order_id: str, approved: bool, **extra: Any) -> bytes:
    """A manager's decision on OrderApprovals; returns the bytes sent, to send again."""
    body = orjson.dumps({"order_id": order_id, "approved": approved, **extra})
    await send_decision(settings, order_id, body)
    return body


async def send_decision(settings: Settings, key: str, body: bytes) -> None:
    topic = settings.topics.physical(t.ORDER_APPROVALS)
    await produce(settings.kafka, topic, body, key=key.encode())


async def at_wait(reader: SagaReader, order_id: str) -> SagaState:
    async def probe() -> SagaState | None:
        return await reader.state(order_id)

    state = await assert_eventually(
        probe,
        lambda s: s is not None and s.step("approval").status is StepStatus.PENDING,
        within=30,
        message=f"saga of {order_id} waits for approval",
    )
    assert state is not None
    return state


async def dead_letters(conn: KafkaConnection, prefix: str, expect: int) -> list[Any]:
    letters = await read_topic(conn, prefix + t.DEAD_LETTER, expect=expect, within=30)
    assert len(letters) == expect, [header_value(r.headers, DLQ_REASON) for r in letters]
    return letters


async def test_an_approval_before_during_or_twice_has_one_effect_and_strangers_dead_letter(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    held: list[dict[str, Any]] = []

    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        if topic == t.RESERVE_ITEMS and cmd["order_id"] == "early":
            held.append(cmd)  # answered by the test, after the approval came
            return []
        return [reply_for(topic, cmd)]

    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix, script)
    reader = SagaReader(redis_client, settings)
    async with running_orchestrator(settings, app=approvals), scripted.running():
        await send_orders(settings.kafka, prefix, [large(o) for o in ("early", "during", "twice")])
        await send_orders(settings.kafka, prefix, [order("small"), large("refused")])

        # before: the saga holds the stock request open, the decision is kept
        await assert_eventually(lambda: _held(held), lambda n: n == 1, within=30)
        await decide(settings, "early", True, approver="ann")
        kept = await assert_eventually(
            lambda: reader.state("early"),
            lambda s: s is not None and s.step("approval").early is not None,
            within=30,
        )
        assert kept is not None
        assert kept.step("approval").status is StepStatus.NOT_STARTED
        topic, body = reply_for(t.RESERVE_ITEMS, held[0])
        await produce(
            settings.kafka, prefix + topic, orjson.dumps(body), key=body["saga_id"].encode()
        )

        # during: the saga already waits
        await at_wait(reader, "during")
        await decide(settings, "during", True)

        # twice: the same decision twice, then a stranger behind them on their partition
        await at_wait(reader, "twice")
        same = await decide(settings, "twice", True)
        await send_decision(settings, "twice", same)
        stranger = orjson.dumps({"order_id": "nobody", "approved": True})
        await send_decision(settings, "twice", stranger)

        # a rejection compensates
        await at_wait(reader, "refused")
        await decide(settings, "refused", False, reason="over budget")

        for order_id in ("early", "during", "twice", "small"):
            await reader.wait_status(order_id, "completed")
        refused = await reader.wait_status("refused", "failed")
        (letter,) = await dead_letters(settings.kafka, prefix, expect=1)  # read after the copy

    early = await reader.state("early")
    assert early is not None
    assert early.step("approval").result == {
        "order_id": "early",
        "approved": True,
        "approver": "ann",
    }
    twice = saga_id_for_order("twice")
    assert scripted.topics_for(twice).count(t.PROCESS_PAYMENT) == 1
    small = await reader.state("small")
    assert small is not None
    assert small.step("approval").result is None
    assert header_value(letter.headers, DLQ_ERROR_CODE) == "no_waiting_saga"
    assert "no saga waits for this event on OrderApprovals (by order_id)" in (
        header_value(letter.headers, DLQ_REASON) or ""
    )
    assert orjson.loads(letter.value) == orjson.loads(stranger)
    refused_id = saga_id_for_order("refused")
    assert t.RELEASE_RESERVATION in scripted.topics_for(refused_id)
    assert t.PROCESS_PAYMENT not in scripted.topics_for(refused_id)
    assert "rejected by the event on OrderApprovals" in (refused.error or "")


async def _held(held: list[dict[str, Any]]) -> int:
    return len(held)


async def test_a_deadline_fails_and_compensates_or_continues_with_the_default(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix)
    reader = SagaReader(redis_client, settings)
    async with running_orchestrator(settings, app=expiring), scripted.running():
        await send_orders(settings.kafka, prefix, [large("late")])
        expired = await reader.wait_status("late", "failed")
    assert "deadline passed: no event on OrderApprovals" in (expired.error or "")
    assert expired.step("reserve_inventory").status is StepStatus.COMPENSATED
    assert t.PROCESS_PAYMENT not in scripted.topics_for(saga_id_for_order("late"))

    async with running_orchestrator(settings, app=defaulting), scripted.running():
        await send_orders(settings.kafka, prefix, [large("lenient")])
        lenient = await reader.wait_status("lenient", "completed")
    assert lenient.step("approval").result == DEFAULT_DECISION


async def test_child_sagas_complete_fail_and_are_compensated_by_their_parent(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        if topic == t.RESERVE_ITEMS and cmd["order_id"] == "no-stock":
            return [fail_reply(cmd, "out of stock", retryable=False)]
        if topic == t.CREATE_SHIPMENT and cmd["order_id"] == "no-ship":
            return [fail_reply(cmd, "no carrier", retryable=False)]
        if cmd["step_name"] == "release":  # Unstock's own (forward) step, on a compensation topic
            return [(t.STEP_COMPLETED, {**reply_for(topic, cmd)[1], "result": {"released": 2}})]
        return [reply_for(topic, cmd)]

    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix, script)
    family = families.saga_type("Family")
    store = SagaReader(redis_client, settings).store

    async def parent(order_id: str, status: SagaStatus) -> SagaState:
        saga_id = family.saga_id(order_id)

        async def probe() -> SagaState | None:
            return (await store.load({saga_id: []}))[saga_id].state

        found = await assert_eventually(
            probe, lambda s: s is not None and s.status is status, within=30
        )
        assert found is not None
        return found

    await prepare_topics(settings)  # the scripted participants read every sample topic
    async with running_orchestrator(settings, app=families), scripted.running():
        await send_orders(settings.kafka, prefix, [order(o) for o in ("ok", "no-stock", "no-ship")])
        ok = await parent("ok", SagaStatus.COMPLETED)
        no_stock = await parent("no-stock", SagaStatus.FAILED)
        no_ship = await parent("no-ship", SagaStatus.FAILED)
        shown = await cli(services, prefix, "show", "ok", "--json", "--app", APP)
        undone = await cli(services, prefix, "show", family.saga_id("no-ship"), "--app", APP)

    assert ok.step("stock").result == {"reserve": {"done": t.RESERVE_ITEMS}}
    assert "child_failed" in (no_stock.error or "")
    assert "out of stock" in (no_stock.error or "")
    assert no_stock.step("stock").status is StepStatus.FAILED
    assert no_ship.step("stock").status is StepStatus.COMPENSATED
    assert no_ship.step("pay").status is StepStatus.COMPENSATED
    view = shown.json()
    (child,) = view["children"]
    assert (child["saga_type"], child["status"], child["compensation"]) == (
        "Stock",
        "completed",
        False,
    )
    child_state = (await store.load({child["saga_id"]: []}))[child["saga_id"]].state
    assert child_state is not None
    assert child_state.parent is not None
    assert child_state.parent.saga_id == ok.saga_id
    assert undone.code == 0, undone.err
    assert "step stock: Stock" in undone.out
    assert "compensation stock: Unstock" in undone.out
    releases = [cmd for topic, cmd in scripted.commands if topic == t.RELEASE_RESERVATION]
    assert len(releases) == 1  # sent once, by the compensation saga
    assert releases[0]["saga_id"] == _child(undone.out, "compensation stock: Unstock ")


APP = "tests.integration.long_running:families"


def _child(shown: str, label: str) -> str:
    """The saga id `show` prints after `label` in its child tree."""
    line = next(line for line in shown.splitlines() if label in line)
    return line.split(label, 1)[1].split()[0]


async def test_an_operator_approves_from_the_terminal_and_show_prints_the_wait(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix)
    reader = SagaReader(redis_client, settings)
    app = "tests.integration.long_running:approvals"
    async with running_orchestrator(settings, app=approvals), scripted.running():
        await send_orders(settings.kafka, prefix, [large("by-hand")])
        await at_wait(reader, "by-hand")
        shown = await cli(services, prefix, "show", "by-hand", "--app", app)
        bad = await cli(
            services, prefix, "signal", "by-hand", "approval", "--data", "[1]", "--app", app
        )
        signalled = await cli(
            services,
            prefix,
            "signal",
            "by-hand",
            "approval",
            "--data",
            '{"approved": true, "approver": "ops"}',
            "--app",
            app,
        )
        done = await reader.wait_status("by-hand", "completed")
        again = await cli(services, prefix, "signal", "by-hand", "approval", "--app", app)
    assert "approval: waiting on OrderApprovals until" in shown.out
    assert bad.code == 2
    assert "--data must be a JSON object" in bad.err
    assert signalled.code == 0, signalled.err
    assert signalled.out.startswith(f"signalled saga {saga_id_for_order('by-hand')}")
    assert done.step("approval").result == {"approved": True, "approver": "ops"}
    assert again.code == 1
    assert "refused: saga is completed" in again.err


async def test_sagas_waiting_survive_a_kill_of_the_orchestrator(
    services: Services, prefix: str, redis_client: Redis, tmp_path: Path
) -> None:
    settings = settings_for(services, prefix)
    await prepare_topics(settings)
    scripted = ScriptedParticipants(settings.kafka, prefix)
    reader = SagaReader(redis_client, settings)
    worker = WorkerProcess(
        "orchestrator",
        ("orchestrator", "--app", "tests.integration.long_running:approvals"),
        {**settings_env(settings), "PYTHONPATH": str(ROOT)},
        tmp_path / "orchestrator.log",
    )
    ids = [f"w-{n}" for n in range(6)]
    async with scripted.running():
        worker.start()
        try:
            await send_orders(settings.kafka, prefix, [large(o) for o in ids])
            for order_id in ids:
                await at_wait(reader, order_id)
            await decide(settings, ids[0], True)
            await reader.wait_status(ids[0], "completed")
            worker.kill()  # SIGKILL while five sagas wait
            for order_id in ids[1:4]:
                await decide(settings, order_id, True)  # kept by Kafka meanwhile
            worker.start()
            for order_id in ids[4:]:
                await decide(settings, order_id, order_id != ids[-1])
            for order_id in ids[:-1]:
                await reader.wait_status(order_id, "completed", within=60)
            await reader.wait_status(ids[-1], "failed", within=60)
        finally:
            worker.stop()
    for order_id in ids:
        saga_id = saga_id_for_order(order_id)
        assert scripted.topics_for(saga_id).count(t.RESERVE_ITEMS) == 1
        assert scripted.topics_for(saga_id).count(t.PROCESS_PAYMENT) == (order_id != ids[-1])


async def test_the_approval_example_runs_as_the_readme_says(
    services: Services, prefix: str, redis_client: Redis, tmp_path: Path
) -> None:
    workers, seed, orders, show, signal = run_block("approval")
    assert workers == ["saga-worker", "all"]
    settings = settings_for(services, prefix)
    reader = SagaReader(redis_client, settings)
    order_id = show[-1]
    worker = WorkerProcess("all", tuple(workers[1:]), worker_env(settings), tmp_path / "all.log")
    sample = ["orchestrator", *(role_of(name) for name in NAMES)]
    async with started(settings, worker, roles=lambda _: sample):
        for command in (seed, orders):
            assert command[:3] == ["python", "-m", "participants"]
            ran = await cli(services, prefix, *command[3:], module="participants")
            assert ran.code == 0, ran.err
        await at_wait(reader, order_id)
        shown = await cli(services, prefix, *show[1:])
        signalled = await cli(services, prefix, *signal[1:])
        done = await reader.wait_status(order_id, "completed", within=60)
    assert "approval: waiting on OrderApprovals until" in shown.out
    assert signalled.code == 0, signalled.err
    assert done.step("approval").result == {"approved": True, "approver": "you"}
    assert done.step("process_payment").status is StepStatus.SUCCEEDED


async def test_an_event_naming_several_sagas_needs_many_and_an_unmatched_one_may_be_normal(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix)
    scripted = ScriptedParticipants(settings.kafka, prefix)
    reader = SagaReader(redis_client, settings)
    same_customer = [order(o, customer_id="cust-7") for o in ("a", "b")]
    topic = settings.topics.physical(CUSTOMER_PAYMENTS)
    paid = orjson.dumps({"customer_id": "cust-7", "amount": 5000})
    async with running_orchestrator(settings, app=one_per_customer), scripted.running():
        await send_orders(settings.kafka, prefix, same_customer)
        for order_id in ("a", "b"):
            await assert_eventually(
                lambda o=order_id: reader.state(o),  # type: ignore[misc]
                lambda s: s is not None and s.step("paid").status is StepStatus.PENDING,
                within=30,
            )
        # nobody's payment is normal here (ignored); the ambiguous one behind it is not
        stranger = orjson.dumps({"customer_id": "cust-0", "amount": 1})
        await produce(settings.kafka, topic, stranger, key=b"payments")
        await produce(settings.kafka, topic, paid, key=b"payments")
        (letter,) = await dead_letters(settings.kafka, prefix, expect=1)
    assert header_value(letter.headers, DLQ_ERROR_CODE) == "ambiguous_correlation"
    assert "2 sagas wait at paid" in (header_value(letter.headers, DLQ_REASON) or "")

    async with running_orchestrator(settings, app=all_of_a_customer), scripted.running():
        await produce(settings.kafka, topic, paid, key=b"payments")
        for order_id in ("a", "b"):
            done = await reader.wait_status(order_id, "completed")
            assert done.step("paid").result == {"customer_id": "cust-7", "amount": 5000}
