"""The near cache: S3-FIFO eviction by bytes, the fence, refused racing fills, and its bus on Redis.

The store and the fence are pure logic; the bus runs on the real Redis (pub/sub, ``TIME``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from redis.asyncio import Redis

from cache import CacheKey, CacheState, Invalidator, KeyScheme, Loaded
from cache.bus import InvalidationBus, _returned
from cache.codec import Entry
from cache.near import (
    ENTRY_OVERHEAD_BYTES,
    FILL_WINDOW_SECONDS,
    MAX_AGE_SECONDS,
    NearCache,
    NearStore,
    boot_clock,
    entry_size,
)
from tests.cache.caches import read_through
from tests.servers import Servers


def entry(body: bytes = b"x" * 100, fresh_for_ms: int = 60_000) -> Entry:
    return Entry(body, '"e"', 200, int(time.time() * 1000) + fresh_for_ms)


def far() -> int:
    return int(time.time() * 1000) + 60_000


# -- the store --------------------------------------------------------------------------------


def test_an_entry_counts_its_bodies_etags_key_and_the_overhead() -> None:
    e = entry(b"y" * 1000)
    assert entry_size("k", e) == 1000 + 3 + 1 + ENTRY_OVERHEAD_BYTES


def test_the_store_stays_within_its_bytes() -> None:
    store = NearStore(50_000)
    for i in range(1000):
        store.put(f"k{i}", entry(b"z" * random.randint(10, 2000)), far(), "ns")
        assert store.bytes <= 50_000
    assert store.evictions > 0
    assert store.bytes == sum(entry_size(k, i.entry) for k, i in store._items.items())


def test_an_entry_larger_than_a_quarter_of_the_bound_is_not_held() -> None:
    store = NearStore(10_000)
    assert store.put("big", entry(b"b" * 5000), far(), "ns") is False
    assert "big" not in store and store.bytes == 0


def test_keys_read_again_survive_a_scan_of_one_hit_keys() -> None:
    """S3-FIFO's point: a stream of keys read once does not push out the keys read often."""
    e = entry(b"h" * 100)
    size = entry_size("hot-00", e)
    store = NearStore(size * 100)
    hot = [f"hot-{i:02d}" for i in range(20)]
    for key in hot:
        store.put(key, e, far(), "ns")
    for _ in range(3):
        for key in hot:
            store.get(key)
    for i in range(5000):  # one-hit wonders
        store.put(f"cold-{i:05d}", e, far(), "ns")
        if i % 50 == 0:
            for key in hot:
                store.get(key)
    assert all(key in store for key in hot)


def test_zipf_reads_hit_close_to_the_hottest_keys_share() -> None:
    """Under Zipf 0.99 a store of 1 % of the keys hits at least 80 % of their share."""
    rng = random.Random(7)
    n, capacity = 10_000, 100
    weights = [1 / (i + 1) ** 0.99 for i in range(n)]
    total = sum(weights)
    best_share = sum(weights[:capacity]) / total
    e = entry(b"v" * 200)
    store = NearStore(entry_size("k0000", e) * capacity)
    keys = rng.choices(range(n), weights=weights, k=60_000)
    hits = 0
    for i, k in enumerate(keys):
        key = f"k{k:04d}"
        if store.get(key) is not None:
            hits += i >= 20_000
        else:
            store.put(key, e, far(), "ns")
    ratio = hits / 40_000
    assert ratio >= 0.8 * best_share, (ratio, best_share)


def test_the_doorkeeper_admits_a_key_read_twice_or_held() -> None:
    near = NearCache(100_000)
    assert near.is_admitted("k") is False  # first read from Redis: remembered only
    assert near.is_admitted("k") is True  # read again: kept
    near.fill("k", "ns", entry(), far(), near.mark())
    assert near.is_admitted("k") is True  # held: a refresh replaces it
    for i in range(2000):  # it forgets when full
        near.is_admitted(f"other-{i}")
    assert near.is_admitted("never-seen") is False


def test_a_namespace_and_everything_can_be_dropped() -> None:
    store = NearStore(100_000)
    store.put("a1", entry(), far(), "a")
    store.put("b1", entry(), far(), "b")
    store.discard_namespace("a")
    assert "a1" not in store and "b1" in store
    store.clear()
    assert len(store) == 0 and store.bytes == 0


# -- the fence and the fills -----------------------------------------------------------------


def test_nothing_is_answered_without_a_valid_lease() -> None:
    near = NearCache(100_000)
    near.fill("k", "ns", entry(), far(), near.mark())
    now = int(time.time() * 1000)
    assert near.lookup("k", now) is None
    near.grant(boot_clock() + 10)
    assert near.lookup("k", now) is not None
    near.grant(boot_clock() - 0.001)
    assert near.lookup("k", now) is None
    near.grant(boot_clock() + 10)
    near.revoke()
    assert near.lookup("k", now) is None and not near.has_valid_lease


def test_with_the_lease_check_off_it_answers_without_a_lease() -> None:
    near = NearCache(100_000, lease_check=False)
    near.fill("k", "ns", entry(), far(), near.mark())
    assert near.lookup("k", int(time.time() * 1000)) is not None


def test_a_fill_that_raced_an_invalidation_is_refused() -> None:
    near = NearCache(100_000)
    near.grant(boot_clock() + 10)
    mark = near.mark()  # the read begins, asks Redis...
    near.invalidate(["k"])  # ...an invalidation of its key is applied meanwhile
    assert near.fill("k", "ns", entry(), far(), mark) is False
    assert near.fills_refused == 1
    assert near.fill("other", "ns", entry(), far(), mark) is True  # other keys are not raced
    assert near.fill("k", "ns", entry(), far(), near.mark()) is True  # a read begun after is


def test_a_clear_refuses_every_fill_begun_before_it() -> None:
    near = NearCache(100_000)
    mark = near.mark()
    near.clear()
    assert near.fill("k", "ns", entry(), far(), mark) is False
    mark = near.mark()
    near.invalidate_namespace("ns")
    assert near.fill("k", "ns", entry(), far(), mark) is False


def test_many_drops_refuse_every_fill_begun_before_them() -> None:
    near = NearCache(100_000)
    mark = near.mark()
    for i in range(5000):
        near.invalidate([f"d{i}"])
    assert near.fill("unrelated", "ns", entry(), far(), mark) is False


def test_an_entry_past_its_keep_time_is_not_answered() -> None:
    near = NearCache(100_000)
    near.grant(boot_clock() + 10)
    now = int(time.time() * 1000)
    near.fill("k", "ns", entry(), now + 5, near.mark())
    assert near.lookup("k", now + 10) is None
    assert near.figures().entries == 0


# -- the bus, on the real Redis ---------------------------------------------------------------


@pytest.fixture
async def real_redis(servers: Servers) -> AsyncIterator[Redis]:
    client = Redis.from_url(servers.redis_url)
    yield client
    await client.aclose()


@asynccontextmanager
async def holder(
    redis: Redis, scheme: KeyScheme, lease_ms: int = 300, *, lease_check: bool = True
) -> AsyncIterator[tuple[NearCache, InvalidationBus]]:
    near = NearCache(1_000_000, lease_check=lease_check)
    bus = InvalidationBus(redis, scheme, near=near, lease_ms=lease_ms, lease_check=lease_check)
    bus.start()
    try:
        deadline = time.monotonic() + 5
        while not near.has_valid_lease:
            assert time.monotonic() < deadline, "no lease within 5 s"
            await asyncio.sleep(0.01)
        yield near, bus
    finally:
        await bus.aclose()


@asynccontextmanager
async def writer(
    redis: Redis, scheme: KeyScheme, *, lease_check: bool = True
) -> AsyncIterator[InvalidationBus]:
    """A bus with no near cache (a process that only writes), subscribed."""
    bus = InvalidationBus(redis, scheme, lease_check=lease_check)
    bus.start()
    try:
        assert await bus.wait_subscribed(5)
        yield bus
    finally:
        await bus.aclose()


async def test_a_token_that_came_back_while_the_process_was_stopped_counts() -> None:
    """The token is back, in the order the loop sees it, only after the wait's limit fell due."""
    loop = asyncio.get_running_loop()
    token: asyncio.Future[None] = loop.create_future()
    waiting = asyncio.create_task(_returned(token, 0.05))
    await asyncio.sleep(0.005)
    loop.call_later(0.1, token.set_result, None)
    time.sleep(0.3)  # noqa: ASYNC251 (the point: the loop does not run while both fall due)
    assert await waiting


async def test_a_token_that_does_not_come_back_is_missed() -> None:
    token: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    began = time.monotonic()
    assert not await _returned(token, 0.05)
    assert time.monotonic() - began >= 0.05


async def test_a_holder_gets_a_lease_and_loses_it_when_it_stops(real_redis: Redis) -> None:
    scheme = KeyScheme(f"near-{random.getrandbits(32):x}")
    async with holder(real_redis, scheme) as (near, bus):
        assert near.has_valid_lease
        assert await real_redis.zscore(scheme.near_holders, bus.holder) is not None
    assert not near.has_valid_lease


async def test_an_invalidation_returns_after_every_holder_dropped_the_key(
    real_redis: Redis,
) -> None:
    scheme = KeyScheme(f"near-{random.getrandbits(32):x}")
    key = CacheKey("ns", scheme.entry("ns", "a"), "a")
    async with AsyncExitStack() as stack:
        holders = [await stack.enter_async_context(holder(real_redis, scheme)) for _ in range(4)]
        caches = []
        for near, _ in holders:
            cache, _ = read_through(real_redis, scheme, near=near)
            caches.append(cache)
        writer_bus = await stack.enter_async_context(writer(real_redis, scheme))
        invalidator = Invalidator(real_redis, scheme, bus=writer_bus)

        async def load() -> Loaded:
            return Loaded(b"v1", ["t"])

        await caches[0].get_or_load(key, load)  # stored in Redis
        for cache in caches:
            await cache.get_or_load(key, load)  # from Redis: the doorkeeper remembers it
            await cache.get_or_load(key, load)  # from Redis again: kept near
        for cache in caches:
            assert (await cache.get_or_load(key, load)).near
        started = time.monotonic()
        await invalidator.invalidate_tags(["t"])
        waited = time.monotonic() - started
        # Returned on acknowledgements, long before any lease (300 ms) could have lapsed.
        assert waited < 0.25, waited
        assert writer_bus.lapsed == 0 and writer_bus.acknowledgements == 4
        for near, _ in holders:
            assert near.lookup(key.redis_key, int(time.time() * 1000)) is None


async def test_a_silent_holder_is_waited_for_until_its_lease_lapses(real_redis: Redis) -> None:
    """A holder whose acknowledgements do not come (frozen, cut off) delays a write by its lease."""
    scheme = KeyScheme(f"near-{random.getrandbits(32):x}")
    async with AsyncExitStack() as stack:
        near, bus = await stack.enter_async_context(holder(real_redis, scheme, lease_ms=300))
        writer_bus = await stack.enter_async_context(writer(real_redis, scheme))
        await real_redis.sadd(scheme.tag_set("t"), scheme.entry("ns", "a"))
        # The holder stops hearing anything: it neither acknowledges nor renews.
        assert bus._task is not None
        bus._task.cancel()
        frozen_at = boot_clock()
        started = time.monotonic()
        await Invalidator(real_redis, scheme, bus=writer_bus).invalidate_tags(["t"])
        waited = time.monotonic() - started
        assert writer_bus.lapsed == 1
        assert waited <= 0.3 * 1.03 + 0.05, waited
        # Its own fence lapsed no later than the writer stopped waiting.
        assert not near.has_valid_lease
        assert near._valid_until <= frozen_at + waited


async def test_best_effort_returns_without_waiting(real_redis: Redis) -> None:
    scheme = KeyScheme(f"near-{random.getrandbits(32):x}")
    async with AsyncExitStack() as stack:
        _, bus = await stack.enter_async_context(holder(real_redis, scheme, lease_check=False))
        assert bus._task is not None
        bus._task.cancel()  # silent: a waiting writer would wait for its lease
        writer_bus = await stack.enter_async_context(writer(real_redis, scheme, lease_check=False))
        await real_redis.sadd(scheme.tag_set("t"), scheme.entry("ns", "a"))
        await Invalidator(real_redis, scheme, bus=writer_bus).invalidate_tags(["t"])
        assert writer_bus.waits == 0


async def test_an_invalidation_of_empty_tag_sets_publishes_nothing(real_redis: Redis) -> None:
    scheme = KeyScheme(f"near-{random.getrandbits(32):x}")
    async with AsyncExitStack() as stack:
        near, _ = await stack.enter_async_context(holder(real_redis, scheme))
        writer_bus = await stack.enter_async_context(writer(real_redis, scheme))
        before = near.invalidations
        await Invalidator(real_redis, scheme, bus=writer_bus).invalidate_tags(["nothing"])
        await asyncio.sleep(0.05)
        assert writer_bus.waits == 0 and near.invalidations == before


async def test_a_purge_empties_every_near_cache(real_redis: Redis) -> None:
    scheme = KeyScheme(f"near-{random.getrandbits(32):x}")
    key = CacheKey("ns", scheme.entry("ns", "a"), "a")
    async with AsyncExitStack() as stack:
        near, bus = await stack.enter_async_context(holder(real_redis, scheme))
        cache, _ = read_through(real_redis, scheme, near=near)

        async def load() -> Loaded:
            return Loaded(b"v1", ["t"])

        await cache.get_or_load(key, load)
        await cache.get_or_load(key, load)
        assert (await cache.get_or_load(key, load)).state is CacheState.HIT
        assert near.figures().entries == 1
        await Invalidator(real_redis, scheme, bus=bus).purge("ns")
        assert near.figures().entries == 0


def test_a_fill_of_a_read_begun_too_long_ago_is_refused() -> None:
    near = NearCache(100_000)
    generation, began = near.mark()
    stale_mark = (generation, began - FILL_WINDOW_SECONDS - 0.01)
    assert near.fill("k", "ns", entry(), far(), stale_mark) is False
    assert near.fills_refused == 1 and near.figures().entries == 0


def test_an_entry_is_held_no_longer_than_its_maximum_age() -> None:
    near = NearCache(100_000)
    near.grant(boot_clock() + 60)
    near.fill("k", "ns", entry(), far(), near.mark())
    item = near._store.get("k")
    assert item is not None and item.held_until <= boot_clock() + MAX_AGE_SECONDS
    item.held_until = boot_clock() - 0.001  # as if MAX_AGE_SECONDS had passed
    assert near.lookup("k", int(time.time() * 1000)) is None
