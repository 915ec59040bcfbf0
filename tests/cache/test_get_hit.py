"""``ReadThroughCache.get_hit``: the hits of ``get_or_load`` without a task, on fakeredis.

A hit is answered now from the near cache, or once Redis answers; anything else is left to
``get_or_load`` with nothing counted.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from cache import (
    CacheKey,
    CachePolicy,
    CacheState,
    CircuitBreaker,
    KeyScheme,
    Loaded,
    Lookup,
    PendingHit,
    ReadThroughCache,
)
from cache.near import NearCache
from tests.cache.caches import read_through


async def load() -> Loaded:
    return Loaded(b'{"a":1}', ["tag-a"])


#: entries fresh for 50 ms, answered stale for a minute after
SHORT = CachePolicy(ttl_seconds=0.05, stale_while_revalidate_seconds=60)


async def stored_then_stale(cache: ReadThroughCache, key: CacheKey) -> None:
    """Store the entry at ``key`` (a miss) and wait until it is past its fresh period."""
    await cache.get_or_load(key, load)
    await asyncio.sleep(0.1)


async def finished(pending: Lookup | PendingHit[Lookup] | None) -> Lookup | None:
    """Wait for a pending hit's read and return what it finishes with."""
    assert isinstance(pending, PendingHit), pending
    await asyncio.wait_for(asyncio.shield(pending.read), 5)
    return pending.finish()


async def test_a_key_redis_holds_fresh_is_a_hit_once_read(redis: Redis, scheme: KeyScheme) -> None:
    cache, stats = read_through(redis, scheme)
    key = scheme.namespace("n").key("a")
    stored = await cache.get_or_load(key, load)
    hit = await finished(cache.get_hit(key, load))
    assert hit is not None and hit.state is CacheState.HIT and not hit.near
    assert (hit.body, hit.etag) == (stored.body, stored.etag)
    snap = await stats.snapshot()
    assert (snap["hits"], snap["misses"]) == (1, 1)


async def test_a_miss_and_a_stale_entry_are_no_hit_and_count_nothing(
    redis: Redis, scheme: KeyScheme
) -> None:
    cache, stats = read_through(redis, scheme, SHORT)
    key = scheme.namespace("n").key("a")
    assert await finished(cache.get_hit(key, load)) is None
    await stored_then_stale(cache, key)
    assert await finished(cache.get_hit(key, load)) is None
    snap = await stats.snapshot()
    assert (snap["hits"], snap["misses"], snap["stale"]) == (0, 1, 0)
    assert (await cache.get_or_load(key, load)).state is CacheState.STALE


async def test_a_hit_from_redis_fills_the_near_cache_which_answers_the_next_at_once(
    redis: Redis, scheme: KeyScheme
) -> None:
    near = NearCache(100_000, lease_check=False)
    cache, stats = read_through(redis, scheme, near=near)
    key = scheme.namespace("n").key("a")
    await cache.get_or_load(key, load)  # a miss: the doorkeeper remembers the key
    first = await finished(cache.get_hit(key, load))  # read again: kept
    assert first is not None and not first.near
    at_once = cache.get_hit(key, load)
    assert isinstance(at_once, Lookup) and at_once.near and at_once.body == first.body
    snap = await stats.snapshot()
    assert (snap["hits"], snap["l1_hits"]) == (2, 1)


async def test_an_open_breaker_leaves_every_read_to_get_or_load(
    redis: Redis, scheme: KeyScheme
) -> None:
    async def probe() -> None:
        raise ConnectionError("down")

    breaker = CircuitBreaker("redis", probe)
    cache, _ = read_through(redis, scheme, breaker=breaker)
    key: CacheKey = scheme.namespace("n").key("a")
    await cache.get_or_load(key, load)
    breaker.trip()
    try:
        assert cache.get_hit(key, load) is None
    finally:
        await breaker.aclose()


async def test_get_or_load_after_a_pending_hit_answers_from_its_read(
    redis: Redis, scheme: KeyScheme
) -> None:
    cache, stats = read_through(redis, scheme, SHORT)
    key = scheme.namespace("n").key("a")
    await stored_then_stale(cache, key)
    pending = cache.get_hit(key, load)
    assert await finished(pending) is None
    await redis.delete(key.redis_key)  # gone since the read: a read now would miss
    assert isinstance(pending, PendingHit)
    answer = await cache.get_or_load(key, load, after=pending)
    assert answer.state is CacheState.STALE
    snap = await stats.snapshot()
    assert (snap["misses"], snap["stale"]) == (1, 1)
