"""`python -m tests.integration.fast_orchestrator`: the real orchestrator process, with
test-sized retries, configured from the environment like `saga-worker orchestrator`.

TEST_STEP_TIMEOUT_MS sets every step's timeout (default: saga_support.PATIENT, which no
test run reaches), TEST_STEP_TIMEOUTS_MS overrides it per step (`create_shipment=800,...`,
for the step a test keeps silent), TEST_COMPENSATION_TIMEOUT_MS the compensations'
(default: the steps'), TEST_STEP_ATTEMPTS the attempts of steps and compensations."""

import os
from datetime import timedelta

from saga_worker.cli.commands import run_worker
from saga_worker.runtime.orchestrator import Orchestrator
from tests.integration.saga_support import PATIENT, fast_fulfillment, order_app


def milliseconds(name: str) -> timedelta | None:
    raw = os.environ.get(name)
    return timedelta(milliseconds=int(raw)) if raw else None


def per_step(raw: str) -> dict[str, timedelta]:
    pairs = (item.split("=") for item in raw.split(",") if item)
    return {step: timedelta(milliseconds=int(ms)) for step, ms in pairs}


if __name__ == "__main__":
    definition = fast_fulfillment(
        milliseconds("TEST_STEP_TIMEOUT_MS") or PATIENT,
        int(os.environ.get("TEST_STEP_ATTEMPTS", "2")),
        timeouts=per_step(os.environ.get("TEST_STEP_TIMEOUTS_MS", "")),
        compensation_timeout=milliseconds("TEST_COMPENSATION_TIMEOUT_MS"),
    )
    run_worker(None, lambda _app, settings: Orchestrator(settings, order_app(definition)))
