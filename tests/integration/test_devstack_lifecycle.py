"""`up` twice is harmless, `down` leaves nothing behind, a broker that is never ready fails clearly.

Runs a second, private stack on free ports so the session's services are untouched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    kafka, controller, redis = free_ports(3)
    return {
        **os.environ,
        "SAGA_RUNTIME_DIR": str(tmp_path / "runtime"),
        "SAGA_KAFKA_PORT": str(kafka),
        "SAGA_KAFKA_CONTROLLER_PORT": str(controller),
        "SAGA_REDIS_PORT": str(redis),
    }


def stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def pids(runtime: Path) -> list[int]:
    return [int(p.read_text()) for p in runtime.glob("*/*.pid")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_twice_then_down_leaves_no_process_and_no_port(stack_env: dict[str, str]) -> None:
    ports = [
        int(stack_env[k])
        for k in ("SAGA_KAFKA_PORT", "SAGA_KAFKA_CONTROLLER_PORT", "SAGA_REDIS_PORT")
    ]
    first = stack(stack_env, "up")
    assert first.returncode == 0, first.stderr
    assert f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{ports[0]}" in first.stdout
    started = pids(Path(stack_env["SAGA_RUNTIME_DIR"]))
    second = stack(stack_env, "up")
    assert second.returncode == 0, second.stderr
    assert pids(Path(stack_env["SAGA_RUNTIME_DIR"])) == started  # nothing new started
    assert all(port_open(p) for p in ports)

    down = stack(stack_env, "down")
    assert down.returncode == 0, down.stderr
    assert len(started) == 2
    assert not any(alive(pid) for pid in started)
    assert not any(port_open(p) for p in ports)


def test_a_broker_that_is_never_ready_is_one_clear_line(stack_env: dict[str, str]) -> None:
    env = {**stack_env, "SAGA_STACK_READY_TIMEOUT": "0.3"}
    done = stack(env, "up")
    stack(env, "down")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "not ready after 0.3s" in done.stderr
    assert "SAGA_STACK_READY_TIMEOUT" in done.stderr
    assert not any(alive(pid) for pid in pids(Path(env["SAGA_RUNTIME_DIR"])))
