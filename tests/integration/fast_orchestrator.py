"""`python -m tests.integration.fast_orchestrator`: the real orchestrator process, with
test-sized timeouts, configured from the environment like `saga-worker orchestrator`.
TEST_STEP_TIMEOUT_MS sets every step's timeout, TEST_STEP_ATTEMPTS their attempts."""

import os
from datetime import timedelta

from saga_worker.cli.commands import run_worker
from saga_worker.runtime.orchestrator import Orchestrator
from tests.integration.saga_support import fast_fulfillment, order_app

if __name__ == "__main__":
    timeout = timedelta(milliseconds=int(os.environ.get("TEST_STEP_TIMEOUT_MS", "800")))
    attempts = int(os.environ.get("TEST_STEP_ATTEMPTS", "2"))
    definition = fast_fulfillment(timeout, attempts)
    run_worker(None, lambda _app, settings: Orchestrator(settings, order_app(definition)))
