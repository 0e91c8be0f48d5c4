"""End to end, as a user runs it: the orchestrator and the four real participants as
separate processes, orders and operator commands through the CLI, Kafka in between.

Every path of OrderFulfillment ends in the state it must, and the participants' own
data agrees: nothing held by a failed order, one effect of each kind per completed
one, stock and money conserved.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from participants.app import NAMES, saga_id_for_order
from participants.conservation import conservation_violations
from participants.inspection import DomainSnapshot, snapshot
from participants.inventory import INVENTORY
from participants.seed import SeedData, load_seed
from saga_worker.engine.state import SagaState
from saga_worker.runtime.worker_processes import (
    WorkerProcess,
    settings_env,
    until_ready,
    with_health_ports,
)
from saga_worker.settings import Settings
from tests.eventually import assert_eventually
from tests.integration.kafka_state import wait_assigned, wait_caught_up
from tests.integration.saga_support import (
    SagaReader,
    cli,
    operator_retries_until_failed,
    order,
    prepare_topics,
    role_of,
    send_orders,
    settings_for,
)
from tests.services import Services

BEANS = [{"sku": "sku-espresso-beans", "quantity": 2, "unit_price": 2490}]


def shop_order(order_id: str, **changes: object) -> dict[str, object]:
    """An order the demo seed can serve: a known customer, stocked beans."""
    return order(order_id, **{"customer_id": "cust-001", "items": BEANS, **changes})


# The timeout of what a test keeps silent. Every other step and compensation has one
# no test run reaches (saga_support.PATIENT), so nothing else depends on speed.
SHORT_MS = 1500


@dataclass
class System:
    settings: Settings
    redis: Redis
    seeded: SeedData
    reader: SagaReader
    workers: dict[str, WorkerProcess]

    async def ends(self, order_id: str, status: str, within: float = 90) -> SagaState:
        return await self.reader.wait_status(order_id, status, within=within)

    async def data(self) -> DomainSnapshot:
        return await snapshot(self.redis, self.settings.saga_key_prefix)

    async def conserved(self, completed: list[str], failed: list[str]) -> list[str]:
        return conservation_violations(
            self.seeded,
            await self.data(),
            {saga_id_for_order(o) for o in completed},
            {saga_id_for_order(o) for o in failed},
        )

    async def ready(self, *names: str) -> None:
        """Until the named workers answer /readyz and hold every partition of their group."""
        workers = [self.workers[n] for n in names]
        try:
            await until_ready(workers, within_s=90)
        except RuntimeError as exc:
            tails = "\n".join(w.log.read_text()[-2000:] for w in workers if w.log.exists())
            raise AssertionError(f"{exc}\n{tails}") from exc
        groups = {self.settings.group_id(role_of(n)): 1 for n in names}
        await wait_assigned(self.settings.kafka, groups)


@contextlib.asynccontextmanager
async def system(
    services: Services,
    prefix: str,
    redis: Redis,
    tmp_path: Path,
    *,
    silent_steps: Sequence[str] = (),
    silent_compensations: bool = False,
    attempts: int = 2,
    knobs: Mapping[str, str] | None = None,
) -> AsyncIterator[System]:
    """The orchestrator and the four participants as processes, ready before it yields.
    `silent_steps` (and the compensations, if `silent_compensations`) time out after
    SHORT_MS: the test keeps them unanswered."""
    settings = settings_for(services, prefix)
    await prepare_topics(settings)
    seeded = await load_seed(redis, prefix)
    env = {**settings_env(settings), "SAGA_PARTICIPANT_SEED": "7", **(knobs or {})}
    timeouts = {
        "TEST_STEP_ATTEMPTS": str(attempts),
        "TEST_STEP_TIMEOUTS_MS": ",".join(f"{step}={SHORT_MS}" for step in silent_steps),
    }
    if silent_compensations:
        timeouts["TEST_COMPENSATION_TIMEOUT_MS"] = str(SHORT_MS)
    workers = {
        "orchestrator": WorkerProcess(
            "orchestrator",
            (),
            {**env, **timeouts},
            tmp_path / "orchestrator.log",
            module="tests.integration.fast_orchestrator",
        ),
        **{
            name: WorkerProcess(name, ("participant", name), env, tmp_path / f"{name}.log")
            for name in NAMES
        },
    }
    with_health_ports(list(workers.values()))
    running = System(settings, redis, seeded, SagaReader(redis, settings), workers)
    try:
        for worker in workers.values():
            worker.start()
        await running.ready(*workers)
        yield running
    finally:
        for worker in workers.values():
            worker.stop()


@pytest.mark.timeout(240)
async def test_orders_from_the_cli_complete_or_fail_for_their_reason(
    services: Services, prefix: str, redis_client: Redis, tmp_path: Path
) -> None:
    async with system(services, prefix, redis_client, tmp_path) as s:
        sent = await cli(
            services,
            prefix,
            "orders",
            "--count",
            "40",
            "--rate",
            "0",
            "--fail-share",
            "0.4",
            "--seed",
            "3",
            "--json",
            module="participants",
        )
        plans = {row["order_id"]: row["plan"] for row in sent.json()}
        finals = {
            o: (await s.ends(o, "completed" if p == "completes" else "failed"))
            for o, p in plans.items()
        }
        problems = await s.conserved(
            [o for o, p in plans.items() if p == "completes"],
            [o for o, p in plans.items() if p != "completes"],
        )
    codes = {
        "out of stock": "insufficient_stock",
        "declined payment": "payment_declined",
        "unsupported address": "unsupported_destination",
        "insufficient funds": "insufficient_funds",
    }
    for order_id, plan in plans.items():
        if plan != "completes":
            assert codes[plan] in (finals[order_id].error or ""), finals[order_id].error
    assert not problems, problems


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("participant", "failed_step"),
    [
        ("inventory", "reserve_inventory"),
        ("payment", "process_payment"),
        ("shipping", "create_shipment"),
    ],
)
async def test_a_step_that_never_answers_times_out_and_everything_is_undone(
    services: Services,
    prefix: str,
    redis_client: Redis,
    tmp_path: Path,
    participant: str,
    failed_step: str,
) -> None:
    knobs = {f"SAGA_{participant.upper()}_HANG_RATE": "1"}
    async with system(
        services, prefix, redis_client, tmp_path, silent_steps=[failed_step], knobs=knobs
    ) as s:
        await send_orders(s.settings.kafka, prefix, [shop_order("e-hang")])
        state = await s.ends("e-hang", "failed")
        problems = await s.conserved([], ["e-hang"])
        data = await s.data()
    assert f"step {failed_step}: attempt 2 timed out" in (state.error or "")
    # The hung step's own compensation went out too (its outcome was unknown).
    assert state.steps[failed_step].status.value == "compensated"
    assert not problems, problems
    assert saga_id_for_order("e-hang") not in data.shipments


@pytest.mark.timeout(240)
async def test_unexpected_errors_are_retried_until_actions_and_compensations_succeed(
    services: Services, prefix: str, redis_client: Redis, tmp_path: Path
) -> None:
    knobs = {"SAGA_INVENTORY_ERROR_RATE": "0.3", "SAGA_PAYMENT_ERROR_RATE": "0.3"}
    orders = [order(f"e-err-{i}", customer_id=f"cust-{i + 1:03d}", items=BEANS) for i in range(6)]
    declined = [
        order(
            f"e-dec-{i}",
            customer_id=f"cust-{i + 11:03d}",
            items=BEANS,
            payment_method="declined_card",
        )
        for i in range(4)
    ]
    # Unexpected errors are retryable: with 8 attempts a step gives up once in 0.3**8.
    async with system(services, prefix, redis_client, tmp_path, attempts=8, knobs=knobs) as s:
        await send_orders(s.settings.kafka, prefix, orders + declined)
        done = [await s.ends(o["order_id"], "completed") for o in orders]
        undone = [await s.ends(o["order_id"], "failed") for o in declined]
        problems = await s.conserved(
            [o["order_id"] for o in orders], [o["order_id"] for o in declined]
        )
    retried = [st for st in done + undone if any(x.attempt > 1 for x in st.steps.values())]
    assert retried, "the error knob never forced a retry"
    assert not problems, problems


@pytest.mark.timeout(240)
async def test_a_compensation_that_gives_up_waits_for_an_operator_then_resumes(
    services: Services, prefix: str, redis_client: Redis, tmp_path: Path
) -> None:
    async with system(
        services,
        prefix,
        redis_client,
        tmp_path,
        silent_steps=["reserve_inventory"],
        silent_compensations=True,
    ) as s:
        inventory = s.workers["inventory"]
        inventory.kill()  # neither the reservation nor its release is answered
        await send_orders(s.settings.kafka, prefix, [shop_order("e-op")])
        stuck = await s.ends("e-op", "needs_operator")
        inventory.start()  # the service is back; its queued commands settle
        await s.ready("inventory")
        inventory_topics = [s.settings.topics.physical(n) for n in INVENTORY.topics]
        await wait_caught_up(
            s.settings.kafka, {s.settings.group_id("participant.inventory"): inventory_topics}
        )

        state = await operator_retries_until_failed(services, prefix, s.reader, "e-op")
        problems = await s.conserved([], ["e-op"])
    assert "compensation" in (stuck.operator_reason or stuck.error or "")
    assert any(h.detail == "resumed by operator" for h in state.history)
    assert not problems, problems


@pytest.mark.timeout(240)
async def test_abort_of_a_running_saga_compensates_it_in_every_participant(
    services: Services, prefix: str, redis_client: Redis, tmp_path: Path
) -> None:
    knobs = {"SAGA_SHIPPING_HANG_RATE": "1"}
    async with system(services, prefix, redis_client, tmp_path, knobs=knobs) as s:
        await send_orders(s.settings.kafka, prefix, [shop_order("e-abort")])

        async def waiting_on_shipping() -> bool:
            state = await s.reader.state("e-abort")
            return state is not None and state.steps.get("create_shipment") is not None

        await assert_eventually(waiting_on_shipping, within=60)
        aborted = await cli(services, prefix, "abort", "e-abort", "--reason", "customer called")
        assert aborted.code == 0, aborted.err
        state = await s.ends("e-abort", "failed")
        problems = await s.conserved([], ["e-abort"])
    assert "customer called" in (state.error or "")
    assert not problems, problems
