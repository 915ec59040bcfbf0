"""The read-through algorithm, leases and tag invalidation, on fakeredis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from cache import (
    CacheKey,
    CacheState,
    CacheStats,
    Invalidator,
    KeyScheme,
    Loaded,
    Lookup,
    ReadThroughCache,
)
from tests.cache.caches import read_through


def build(redis: Redis, scheme: KeyScheme) -> tuple[ReadThroughCache, Invalidator, CacheStats]:
    cache, stats = read_through(redis, scheme)
    return cache, Invalidator(redis, scheme), stats


class CountingLoader:
    """A loader that counts its calls and takes ``delay_seconds`` to answer ``loaded``."""

    def __init__(self, loaded: Loaded, delay_seconds: float = 0.0) -> None:
        self.loaded, self.delay_seconds, self.calls = loaded, delay_seconds, 0

    async def __call__(self) -> Loaded:
        self.calls += 1
        await asyncio.sleep(self.delay_seconds)
        return self.loaded


async def test_miss_stores_then_hit_returns_same_bytes(redis: Redis, scheme: KeyScheme) -> None:
    cache, _, stats = build(redis, scheme)
    key = scheme.namespace("n").key("a")
    load = CountingLoader(Loaded(b'{"a":1}', ["tag-a"]))

    first = await cache.get_or_load(key, load)
    second = await cache.get_or_load(key, load)
    assert (first.state, second.state) == (CacheState.MISS, CacheState.HIT)
    assert first.body == second.body and first.etag == second.etag
    assert load.calls == 1
    assert 0 < await redis.pttl(key.redis_key) <= 300_000
    assert await redis.smembers(scheme.tag_set("tag-a")) == {key.redis_key.encode()}
    snap = await stats.snapshot()
    assert (snap["hits"], snap["misses"]) == (1, 1)


async def test_invalidating_a_tag_deletes_its_entries_only(redis: Redis, scheme: KeyScheme) -> None:
    cache, invalidator, _ = build(redis, scheme)
    ns = scheme.namespace("n")
    await cache.get_or_load(ns.key("a"), lambda: _loaded(b"a", ["x", "shared"]))
    await cache.get_or_load(ns.key("b"), lambda: _loaded(b"b", ["y", "shared"]))
    assert await invalidator.invalidate_tags(["x"]) == 1
    assert await redis.exists(ns.key("a").redis_key) == 0
    assert await redis.exists(ns.key("b").redis_key) == 1
    assert await invalidator.invalidate_tags(["shared"]) == 1
    assert await invalidator.invalidate_tags([]) == 0


async def load_paused_around(
    cache: ReadThroughCache,
    key: CacheKey,
    loaded: Loaded,
    meanwhile: Callable[[], Awaitable[object]],
) -> Lookup:
    """Run a load that pauses after reading its source, run ``meanwhile()``, then let it store."""
    read, proceed = asyncio.Event(), asyncio.Event()

    async def load() -> Loaded:
        read.set()
        await proceed.wait()
        return loaded

    reader = asyncio.create_task(cache.get_or_load(key, load))
    await read.wait()
    await meanwhile()
    proceed.set()
    return await reader


async def test_store_after_a_concurrent_invalidation_is_refused(
    redis: Redis, scheme: KeyScheme
) -> None:
    """The stale set of Nishtala et al.: the loader read old data before the write's commit."""
    cache, invalidator, stats = build(redis, scheme)
    key = scheme.namespace("n").key("a")
    # The writer commits and invalidates while the reader holds the old row.
    answer = await load_paused_around(
        cache, key, Loaded(b"old", ["row:1"]), lambda: invalidator.invalidate_tags(["row:1"])
    )
    assert answer.body == b"old" and answer.state is CacheState.MISS
    assert await redis.exists(key.redis_key) == 0  # not stored
    assert (await stats.snapshot())["store_rejected"] == 1
    fresh = await cache.get_or_load(key, lambda: _loaded(b"new", ["row:1"]))
    assert fresh.body == b"new" and await redis.exists(key.redis_key) == 1


async def test_invalidation_of_other_tags_does_not_revoke_a_lease(
    redis: Redis, scheme: KeyScheme
) -> None:
    cache, invalidator, _ = build(redis, scheme)
    key = scheme.namespace("n").key("a")
    await load_paused_around(
        cache, key, Loaded(b"v", ["row:1"]), lambda: invalidator.invalidate_tags(["row:2"])
    )
    assert await redis.exists(key.redis_key) == 1


async def test_purge_all_revokes_leases_taken_before(redis: Redis, scheme: KeyScheme) -> None:
    cache, invalidator, _ = build(redis, scheme)
    key = scheme.namespace("n").key("a")
    await load_paused_around(cache, key, Loaded(b"v", []), lambda: invalidator.purge(None))
    assert await redis.exists(key.redis_key) == 0


async def test_concurrent_misses_share_one_load(redis: Redis, scheme: KeyScheme) -> None:
    cache, _, stats = build(redis, scheme)
    key = scheme.namespace("n").key("a")
    load = CountingLoader(Loaded(b"v"), delay_seconds=0.01)

    answers = await asyncio.gather(*(cache.get_or_load(key, load) for _ in range(100)))
    assert load.calls == 1 and {a.body for a in answers} == {b"v"}
    assert (await stats.snapshot())["coalesced"] == 99


async def test_loader_errors_reach_every_waiter_and_are_not_cached(
    redis: Redis, scheme: KeyScheme
) -> None:
    cache, _, _ = build(redis, scheme)
    key = scheme.namespace("n").key("a")

    async def fail() -> Loaded:
        await asyncio.sleep(0.01)
        raise LookupError("absent")

    results = await asyncio.gather(
        *(cache.get_or_load(key, fail) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, LookupError) for r in results)
    assert await redis.exists(key.redis_key) == 0


async def test_redis_failure_bypasses_to_the_loader(scheme: KeyScheme) -> None:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # Nothing listens on port 1; no retries, as the service configures its client.
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    cache, invalidator, stats = build(dead, scheme)
    load = CountingLoader(Loaded(b"db"), delay_seconds=0.05)

    answers = await asyncio.gather(
        *(cache.get_or_load(scheme.namespace("n").key("a"), load) for _ in range(20))
    )
    assert {(a.state, a.body) for a in answers} == {(CacheState.BYPASS, b"db")}
    assert load.calls == 1  # the outage does not multiply loads
    snap = await stats.snapshot()
    assert snap["complete"] is False and snap["bypass"] == 20
    from cache import CacheUnavailableError

    with pytest.raises(CacheUnavailableError):
        await invalidator.invalidate_tags(["x"])
    await dead.aclose()


async def _loaded(body: bytes, tags: list[str]) -> Loaded:
    return Loaded(body, tags)
