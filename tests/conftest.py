from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tests.services import Services, provide


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything outside tests/unit needs the broker; mark it so `-m` can select.
    for item in items:
        path = str(item.path)
        if "/tests/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "/tests/chaos/" in path:
            item.add_marker(pytest.mark.chaos)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with provide(os.environ) as found:
        yield found


@pytest.fixture
def prefix() -> str:
    """A fresh topic and key prefix per test, so tests never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def redis_client(services: Services) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(services.redis_url)
    try:
        yield client
    finally:
        await client.aclose()
