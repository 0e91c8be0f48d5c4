"""Setup problems end in one clear line and exit code 2, never a traceback or a hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_stack(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "SAGA_RUNTIME_DIR": str(tmp_path / "runtime"),
        "SAGA_CACHE_DIR": str(tmp_path / "cache"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_in_use_is_one_clear_line(tmp_path: Path, busy_port: int) -> None:
    done = run_stack(tmp_path, "up", SAGA_REDIS_PORT=str(busy_port))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert f"port {busy_port} needed for Redis is already in use" in done.stderr


def test_missing_java_or_maven_is_one_clear_line(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    done = run_stack(tmp_path, "fetch", PATH=str(bare))
    assert done.returncode == 2
    assert done.stderr.startswith("error: java not found: install OpenJDK 17")
    assert done.stderr.count("\n") == 1


def test_unknown_command_says_what_exists(tmp_path: Path) -> None:
    done = run_stack(tmp_path, "upp")
    assert done.returncode == 2
    assert "use up, down, status, fetch or run" in done.stderr
