"""Workers and the CLI on a secured broker and Redis (devstack/secure.py, started here).

The broker has a SASL_SSL listener (SCRAM-SHA-512) and an SSL listener requiring a
client certificate, with a CA made at start; Redis speaks TLS only and the tests log
in as an ACL user with only what saga-worker needs (saga_worker.runtime.redis_acl).
Ports: SAGA_SECURE_KAFKA_PORT, SAGA_SECURE_KAFKA_CONTROLLER_PORT, SAGA_KAFKA_SASL_SSL_PORT,
SAGA_KAFKA_SSL_PORT, SAGA_REDIS_TLS_PORT when set, else free ones.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from devstack import secure
from saga_worker.runtime.redis_acl import acl_rule
from tests.integration.saga_support import ROOT, Run, one_error_line
from tests.ports import free_ports

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("openssl") is None,
    reason="needs redis-server and openssl",
)

ENV_PORTS = (
    "SAGA_SECURE_KAFKA_PORT",
    "SAGA_SECURE_KAFKA_CONTROLLER_PORT",
    "SAGA_KAFKA_SASL_SSL_PORT",
    "SAGA_KAFKA_SSL_PORT",
    "SAGA_REDIS_TLS_PORT",
)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[secure.Secured]:
    chosen = free_ports(len(ENV_PORTS))
    ports = [
        int(os.environ.get(name, str(free))) for name, free in zip(ENV_PORTS, chosen, strict=True)
    ]
    home = tmp_path_factory.mktemp("secure")
    found, started = secure.up(home, secure.SecurePorts(*ports))
    try:
        yield found
    finally:
        secure.down(home, started)


@pytest.fixture
async def acl_user(secured: secure.Secured, prefix: str) -> AsyncIterator[tuple[str, Path]]:
    """A Redis ACL user with exactly saga-worker's commands on this test's keys."""
    name, password = f"u-{prefix.rstrip('.')}", secrets.token_urlsafe(12)
    await _admin(
        secured, "ACL", "SETUSER", name, "reset", *acl_rule(name, password, prefix).split()[1:]
    )
    secret = secured.home / "secrets" / name
    secret.write_text(password + "\n")
    try:
        yield name, secret
    finally:
        await _admin(secured, "ACL", "DELUSER", name)
        await _forget(secured, prefix)


async def _admin(secured: secure.Secured, *command: str) -> Any:
    client = aioredis.Redis(
        host="127.0.0.1",
        port=secured.ports.redis_tls,
        username="default",
        password=secured.secret("redis-default"),
        ssl=True,
        ssl_ca_certs=str(secured.ca),
    )
    try:
        return await client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


async def _forget(secured: secure.Secured, prefix: str) -> None:
    keys = await _admin(secured, "KEYS", f"{prefix}*")
    if keys:
        await _admin(secured, "DEL", *keys)


def sasl_env(secured: secure.Secured, prefix: str, user: tuple[str, Path]) -> dict[str, str]:
    env = secured.client_env()
    env.update(
        {
            "SAGA_TOPIC_PREFIX": prefix,
            "SAGA_KEY_PREFIX": prefix,
            "REDIS_URL": secured.redis_url(user[0]),
            "REDIS_PASSWORD_FILE": str(user[1]),
            "SAGA_PARTITIONS": "2",
        }
    )
    return env


def ssl_env(secured: secure.Secured, prefix: str, user: tuple[str, Path]) -> dict[str, str]:
    env = sasl_env(secured, prefix, user)
    for name in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD_FILE"):
        del env[name]
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": secured.ssl_bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CERTFILE": str(secured.client_cert),
            "KAFKA_SSL_KEYFILE": str(secured.client_key),
        }
    )
    return env


def _clean_env(env: dict[str, str]) -> dict[str, str]:
    """The test's environment without the plain stack's settings, then `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_", "SAGA_"))}
    return {**base, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env}


async def run(
    env: dict[str, str], *args: str, module: str = "saga_worker", within: float = 90
) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=ROOT,
        env=_clean_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def _run_sagas(env: dict[str, str], log: Path) -> None:
    """Seed, `saga-worker all`, three orders, until all three are completed; then show one."""
    seeded = await run(env, "seed", module="participants")
    assert seeded.code == 0, seeded
    with log.open("wb") as out:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "saga_worker", "all", cwd=ROOT, env=_clean_env(env),
            stdout=out, stderr=out,
        )  # fmt: skip
    try:
        sent = await run(env, "orders", "--count", "3", "--rate", "50", "--fail-share", "0",
                         "--seed", "7", module="participants")  # fmt: skip
        assert sent.code == 0, sent
        deadline = asyncio.get_running_loop().time() + 90
        listed: Any = []
        while asyncio.get_running_loop().time() < deadline:
            assert worker.returncode is None, _tail(log)
            listed = (await run(env, "list", "--json")).json()
            sagas = listed["sagas"] if isinstance(listed, dict) else listed
            if len(sagas) == 3 and all(s["status"] == "completed" for s in sagas):
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError(f"sagas not completed: {listed}\n{_tail(log)}")
        shown = await run(env, "show", sagas[0]["saga_id"])
        assert shown.code == 0, shown
        assert "completed" in shown.out, shown
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 60) == 0, _tail(log)


async def test_sagas_run_over_sasl_ssl_scram_with_a_tls_redis_acl_user(
    secured: secure.Secured, prefix: str, acl_user: tuple[str, Path], tmp_path: Path
) -> None:
    await _run_sagas(sasl_env(secured, prefix, acl_user), tmp_path / "all.log")


async def test_sagas_run_over_ssl_with_a_client_certificate(
    secured: secure.Secured, prefix: str, acl_user: tuple[str, Path], tmp_path: Path
) -> None:
    await _run_sagas(ssl_env(secured, prefix, acl_user), tmp_path / "all.log")


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


def _worker_error(result: Run) -> str:
    """A worker logs to stderr too: its last line is the error, its exit code 2."""
    assert result.code == 2, result
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: "), result.err
    return last


async def test_a_wrong_password_an_unknown_ca_and_no_client_certificate_are_one_line(
    secured: secure.Secured, prefix: str, acl_user: tuple[str, Path], tmp_path: Path
) -> None:
    sasl, tls = sasl_env(secured, prefix, acl_user), ssl_env(secured, prefix, acl_user)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    other_ca = secure.make_ca(tmp_path / "other", cn="someone else's CA")
    no_cert = {
        k: v for k, v in tls.items() if not k.startswith("KAFKA_SSL_") or k == "KAFKA_SSL_CAFILE"
    }
    cases = [
        ({**sasl, "KAFKA_SASL_PASSWORD_FILE": str(wrong)}, "refused the SASL login of user 'saga'"),
        ({**sasl, "KAFKA_SSL_CAFILE": str(other_ca)}, "TLS certificate is not trusted"),
        ({**tls, "KAFKA_SSL_CAFILE": str(other_ca)}, "TLS certificate is not trusted"),
        (no_cert, "requires a client certificate"),
    ]
    for env, expected in cases:
        result = await run(env, "stats")
        assert result.code == 2, (expected, result)
        line = one_error_line(result, 2)  # the CLI: one line only
        assert expected in line, line
        assert "not-the-password" not in line
        line = _worker_error(await run(env, "orchestrator", within=120))
        assert expected in line, line


async def test_a_redis_user_without_a_needed_command_gets_a_clear_line(
    secured: secure.Secured, prefix: str, acl_user: tuple[str, Path]
) -> None:
    env = sasl_env(secured, prefix, acl_user)
    await _admin(secured, "ACL", "SETUSER", acl_user[0], "-hincrby")
    line = _worker_error(await run(env, "orchestrator", within=120))
    assert "may not run HINCRBY" in line, line
    await _admin(secured, "ACL", "SETUSER", acl_user[0], "resetkeys", "~someone-else:*")
    line = one_error_line(await run(env, "show", "ord-1"), 2)
    assert "may not do what saga-worker needs" in line, line
    wrong = secured.home / "secrets" / "wrong-redis"
    wrong.write_text("nope\n")
    line = one_error_line(await run({**env, "REDIS_PASSWORD_FILE": str(wrong)}, "show", "ord-1"), 2)
    assert "Redis refused the login" in line, line


async def test_the_devstack_client_env_names_files_not_secrets(secured: secure.Secured) -> None:
    text = (secured.home / "client.env").read_text()
    for name in ("kafka-saga", "redis-saga"):
        assert secured.secret(name) not in text
    assert "KAFKA_SASL_PASSWORD_FILE=" in text
    assert "REDIS_PASSWORD_FILE=" in text
    assert orjson.dumps(secured.client_env())  # plain strings
