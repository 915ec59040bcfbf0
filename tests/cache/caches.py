"""A read-through cache over one Redis as one process has it."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from cache import CachePolicy, CacheStats, KeyScheme, LeaseStore, PolicyTable, ReadThroughCache


def read_through(
    redis: Redis, scheme: KeyScheme, policy: CachePolicy | None = None, **options: Any
) -> tuple[ReadThroughCache, CacheStats]:
    """A cache over ``redis`` as one process has it: its own leases, stats and single-flight.

    Two of them over one Redis stand for two processes.
    """
    stats = CacheStats(redis, scheme)
    policies = PolicyTable(policy or CachePolicy())
    return ReadThroughCache(LeaseStore(redis, scheme), stats, policies, **options), stats
