"""`python -m participants demo` end to end: worker processes, planned failures, a verdict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import Services

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_the_demo_finishes_every_saga_and_conserves_stock_and_money(
    services: Services, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "COLUMNS": "200",
        # The sample runs from the repository; the workers it starts import it too.
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "participants",
            "demo",
            "--orders",
            "80",
            "--rate",
            "200",
            "--hang-share",
            "0.05",
            "--timeout",
            "200",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "Sagas by plan and final state" in out
    assert "conserved:" in out
    for reason in (
        "insufficient_stock",
        "payment_declined",
        "unsupported_destination",
        "insufficient_funds",
    ):
        assert reason in out
    # Every order planned to fail failed; nothing is left unfinished.
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 5}
    for plan in ("out of stock", "declined payment", "unsupported address", "insufficient funds"):
        cells = [c.strip() for c in rows[plan].split("│")[2:5]]
        assert cells[0] == "0"  # none completed
        assert cells[2] == "0"  # none unfinished
    # The large orders waited for the demo's manager: approved ones completed, the
    # rejected ones failed, and the approvals table says how each wait ended.
    approved = [c.strip() for c in rows["approved by a manager"].split("│")[2:5]]
    rejected = [c.strip() for c in rows["rejected by a manager"].split("│")[2:5]]
    assert approved == ["6", "0", "0"]
    assert rejected == ["0", "2", "0"]
    assert "Orders that waited for approval" in out
    assert "rejected by the event on OrderApprovals" in out
