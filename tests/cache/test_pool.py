"""The bounded pool, on a real Redis: a burst waits for connections instead of failing."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from cache import BoundedConnectionPool, PoolTimeoutError


def client(redis_url: str, *, size: int, timeout: float) -> Redis:
    return Redis.from_pool(
        BoundedConnectionPool.from_url(redis_url, max_connections=size, timeout=timeout)
    )


async def test_burst_larger_than_the_pool_waits_and_all_succeed(
    server_urls: tuple[str, str],
) -> None:
    redis = client(server_urls[1], size=2, timeout=5)
    pool = redis.connection_pool
    assert isinstance(pool, BoundedConnectionPool)
    seen: list[int] = []

    async def one(i: int) -> bytes | str | None:
        await redis.set(f"cs-pool-test:{i}", i, ex=10)
        seen.append(pool.in_use)
        return await redis.get(f"cs-pool-test:{i}")

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert results == [str(i).encode() for i in range(200)]
    assert max(seen) <= 2
    assert pool.in_use == 0
    await redis.aclose()


async def test_wait_is_bounded_by_the_timeout(server_urls: tuple[str, str]) -> None:
    redis = client(server_urls[1], size=1, timeout=0.1)
    holder = asyncio.ensure_future(redis.blpop(["cs-pool-test:never"], timeout=0.5))
    await asyncio.sleep(0.05)  # the only connection is now blocked in BLPOP
    started = time.monotonic()
    with pytest.raises(PoolTimeoutError):
        await redis.get("x")
    assert 0.08 <= time.monotonic() - started < 0.4
    await holder
    assert await redis.get("cs-pool-test:absent") is None  # the slot came back
    assert redis.connection_pool.in_use == 0  # type: ignore[attr-defined]
    await redis.aclose()


async def test_failed_connect_frees_its_slot() -> None:
    redis = client("redis://127.0.0.1:1/0", size=1, timeout=0.1)  # nothing listens there
    for _ in range(3):  # a leaked slot would turn the later attempts into pool timeouts
        with pytest.raises(Exception) as info:
            await redis.get("x")
        assert not isinstance(info.value, PoolTimeoutError)
    await redis.aclose()
