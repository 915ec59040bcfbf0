"""Stale-while-revalidate, stale-if-error, early refresh and hard expiry, on fakeredis."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from cache import (
    CachePolicy,
    CacheState,
    Invalidator,
    KeyScheme,
    Loaded,
    ReadThroughCache,
)
from cache.codec import decode
from tests.cache.caches import read_through


class Source:
    """A loader whose answer and failure can be changed between calls; counts its calls."""

    def __init__(self, body: bytes, tags: tuple[str, ...] = ("row",)) -> None:
        self.body, self.tags, self.calls = body, tags, 0
        self.error: Exception | None = None
        self.expires_at: float | None = None

    async def __call__(self) -> Loaded:
        self.calls += 1
        await asyncio.sleep(0.005)
        if self.error is not None:
            raise self.error
        return Loaded(self.body, self.tags, expires_at=self.expires_at)


async def settle(cache: ReadThroughCache) -> None:
    """Let background refreshes finish."""
    for _ in range(50):
        await asyncio.sleep(0.01)
        if not cache._refreshes:
            return


SWR = CachePolicy(ttl_seconds=0.05, jitter_ratio=0, stale_while_revalidate_seconds=5)


async def test_expired_entry_is_answered_stale_and_refreshed_once(
    redis: Redis, scheme: KeyScheme
) -> None:
    cache, stats = read_through(redis, scheme, SWR)
    key = scheme.namespace("n").key("a")
    source = Source(b"v1")
    assert (await cache.get_or_load(key, source)).state is CacheState.MISS
    await asyncio.sleep(0.06)
    source.body = b"v2"

    answers = await asyncio.gather(*(cache.get_or_load(key, source) for _ in range(20)))
    assert {(a.state, a.body, a.fresh_for_seconds) for a in answers} == {
        (CacheState.STALE, b"v1", 0)
    }
    await settle(cache)
    assert source.calls == 2  # one initial load, one refresh for twenty stale answers
    after = await cache.get_or_load(key, source)
    assert (after.state, after.body) == (CacheState.HIT, b"v2")
    snap = await stats.snapshot()
    assert (snap["stale"], snap["refreshes"]) == (20, 1)


async def test_a_refresh_leased_elsewhere_is_not_repeated(redis: Redis, scheme: KeyScheme) -> None:
    """Two processes (two caches on one Redis) see the stale entry: one refreshes."""
    first, _ = read_through(redis, scheme, SWR)
    second, _ = read_through(redis, scheme, SWR)
    key = scheme.namespace("n").key("a")
    source = Source(b"v1")
    await first.get_or_load(key, source)
    await asyncio.sleep(0.06)
    await asyncio.gather(first.get_or_load(key, source), second.get_or_load(key, source))
    await settle(first)
    await settle(second)
    assert source.calls == 2


async def test_invalidation_ends_stale_serving_at_once(redis: Redis, scheme: KeyScheme) -> None:
    cache, _ = read_through(redis, scheme, SWR)
    key = scheme.namespace("n").key("a")
    source = Source(b"v1")
    await cache.get_or_load(key, source)
    await asyncio.sleep(0.06)
    source.body = b"v2"
    await Invalidator(redis, scheme).invalidate_tags(["row"])
    answer = await cache.get_or_load(key, source)
    assert (answer.state, answer.body) == (CacheState.MISS, b"v2")


async def test_failed_load_answers_stale_within_stale_if_error(
    redis: Redis, scheme: KeyScheme
) -> None:
    policy = CachePolicy(ttl_seconds=0.05, jitter_ratio=0, stale_if_error_seconds=0.3)
    cache, stats = read_through(redis, scheme, policy)
    key = scheme.namespace("n").key("a")
    source = Source(b"v1")
    await cache.get_or_load(key, source)
    await asyncio.sleep(0.06)
    source.error = ConnectionError("database down")

    answer = await cache.get_or_load(key, source)
    assert (answer.state, answer.body) == (CacheState.STALE, b"v1")
    assert (await stats.snapshot())["stale_if_error"] == 1
    await asyncio.sleep(0.3)  # past the stale-if-error bound: the error shows
    with pytest.raises(ConnectionError):
        await cache.get_or_load(key, source)
    source.error = None
    recovered = await cache.get_or_load(key, source)
    assert (recovered.state, recovered.body) == (CacheState.MISS, b"v1")


async def test_expires_at_bounds_fresh_and_stale_life(redis: Redis, scheme: KeyScheme) -> None:
    policy = CachePolicy(ttl_seconds=300, stale_while_revalidate_seconds=300)
    cache, _ = read_through(redis, scheme, policy)
    key = scheme.namespace("n").key("a")
    source = Source(b"v1")
    source.expires_at = time.time() + 0.1
    await cache.get_or_load(key, source)
    assert 0 < await redis.pttl(key.redis_key) <= 100
    await asyncio.sleep(0.11)
    assert await redis.exists(key.redis_key) == 0
    source.expires_at = time.time() - 1  # already past: answered, not stored
    answer = await cache.get_or_load(key, source)
    assert answer.state is CacheState.MISS and await redis.exists(key.redis_key) == 0


async def test_early_refresh_replaces_an_entry_before_it_expires(
    redis: Redis, scheme: KeyScheme
) -> None:
    # The load takes ~5 ms and beta is huge: the rule fires on the first hit (P > 0.9999).
    policy = CachePolicy(ttl_seconds=0.2, jitter_ratio=0, early_refresh_beta=1e6)
    cache, stats = read_through(redis, scheme, policy)
    key = scheme.namespace("n").key("a")
    source = Source(b"v1")
    await cache.get_or_load(key, source)
    stored = await redis.get(key.redis_key)
    assert isinstance(stored, bytes) and decode(stored).load_ms >= 5
    source.body = b"v2"
    hit = await cache.get_or_load(key, source)
    assert (hit.state, hit.body) == (CacheState.HIT, b"v1")
    await settle(cache)
    assert (await cache.get_or_load(key, source)).body == b"v2"
    assert (await stats.snapshot())["refreshes"] >= 1


async def test_no_early_refresh_without_beta(redis: Redis, scheme: KeyScheme) -> None:
    cache, _ = read_through(redis, scheme, CachePolicy(ttl_seconds=0.2, jitter_ratio=0))
    key = scheme.namespace("n").key("a")
    source = Source(b"v1")
    await cache.get_or_load(key, source)
    for _ in range(20):
        await cache.get_or_load(key, source)
    await settle(cache)
    assert source.calls == 1
