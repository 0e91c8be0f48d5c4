from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from saga_worker.runtime.cleanup import discard
from saga_worker.settings import load_settings
from tests.services import Services, provide, redis_client_for
from tests.spans import recorded_spans

__all__ = ["recorded_spans"]  # a fixture for every test


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything outside tests/unit needs the broker; mark it so `-m` can select.
    # tests/console also needs Debian's chromium (make browser).
    # tests/docker needs a Docker engine and its images: run only when `-m` names it.
    compose_selected = "compose" in (config.option.markexpr or "")
    for item in items:
        path = str(item.path)
        if "/tests/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "/tests/console/" in path:
            item.add_marker(pytest.mark.console)
        elif "/tests/chaos/" in path:
            item.add_marker(pytest.mark.chaos)
        elif "/tests/docker/" in path:
            item.add_marker(pytest.mark.compose)
            if not compose_selected:
                item.add_marker(pytest.mark.skip(reason="needs Docker: make test-compose"))


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with provide(os.environ) as found:
        yield found


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh topic and key prefix per test, so tests never see each other's data.

    Its topics and keys are deleted afterwards: thousands of leftover partitions
    would slow the broker for every later test and for the benchmark after them.
    """
    value = f"t{uuid.uuid4().hex[:10]}."
    yield value
    if "services" in request.fixturenames:
        forget(request.getfixturevalue("services"), value)


def forget(services: Services, prefix: str) -> None:
    settings = load_settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        redis_url=services.redis_url,
        saga_topic_prefix=prefix,
        saga_key_prefix=prefix,
    )

    async def run() -> None:
        client = redis_client_for(services.redis_url)
        try:
            await discard(settings, client)
        finally:
            await client.aclose()

    asyncio.run(run())


@pytest.fixture
async def redis_client(services: Services) -> AsyncIterator[aioredis.Redis]:
    client = redis_client_for(services.redis_url)
    try:
        yield client
    finally:
        await client.aclose()
