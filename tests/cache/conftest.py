from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest

from cache import CachePolicy, CacheStats, KeyScheme, LeaseStore, PolicyTable, ReadThroughCache


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()


@pytest.fixture
def scheme() -> KeyScheme:
    return KeyScheme("t")


def read_through(  # type: ignore[no-untyped-def]
    redis, scheme: KeyScheme, policy: CachePolicy | None = None, **options: Any
) -> tuple[ReadThroughCache, CacheStats]:
    """A cache over ``redis`` as one process has it: its own leases, stats and single-flight.

    Two of them over one Redis stand for two processes.
    """
    stats = CacheStats(redis, scheme)
    policies = PolicyTable(policy or CachePolicy())
    return ReadThroughCache(LeaseStore(redis, scheme), stats, policies, **options), stats
