from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest

from cache import KeyScheme


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()


@pytest.fixture
def scheme() -> KeyScheme:
    return KeyScheme("t")
