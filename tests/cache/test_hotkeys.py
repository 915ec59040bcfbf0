"""Hot-key tracking: sampled, bounded, decayed, and sent with the statistics flush."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cache import CacheStats, HotKeyTracker, KeyScheme


def _tracker(redis: Any, scheme: KeyScheme, **options: Any) -> tuple[HotKeyTracker, CacheStats]:
    tracker = HotKeyTracker(redis, scheme, **options)
    stats = CacheStats(redis, scheme)
    stats.add_flush_part(tracker)
    return tracker, stats


async def test_every_read_counts_at_rate_one_and_the_flush_carries_them(
    redis: Any, scheme: KeyScheme
) -> None:
    tracker, stats = _tracker(redis, scheme, sample_rate=1.0)
    ns = scheme.namespace("article")
    for slug, reads in (("a", 5), ("b", 3), ("c", 1)):
        for _ in range(reads):
            tracker.touch(ns.key(slug))
    assert await tracker.top("article", 10) == []  # nothing sent before the flush
    assert await stats.flush()
    top = await tracker.top("article", 2)
    assert [identity for identity, _ in top] == ["a", "b"]
    assert top[0][1] == pytest.approx(5.0)
    assert await tracker.top("tags", 5) == []


async def test_sampling_counts_about_the_given_fraction(redis: Any, scheme: KeyScheme) -> None:
    tracker, stats = _tracker(redis, scheme, sample_rate=0.1)
    key = scheme.namespace("article").key("hot")
    for _ in range(20_000):
        tracker.touch(key)
    await stats.flush()
    [(_, score)] = await tracker.top("article", 1)
    assert 1_600 <= score <= 2_400  # 2,000 expected; the gaps are geometric


async def test_rate_zero_counts_nothing(redis: Any, scheme: KeyScheme) -> None:
    tracker, stats = _tracker(redis, scheme, sample_rate=0.0)
    for _ in range(1000):
        tracker.touch(scheme.namespace("article").key("x"))
    await stats.flush()
    assert await tracker.top("article", 1) == []


async def test_memory_and_buckets_are_bounded(redis: Any, scheme: KeyScheme) -> None:
    tracker, stats = _tracker(redis, scheme, sample_rate=1.0, max_keys_per_namespace=10)
    ns = scheme.namespace("article")
    for i in range(100):
        tracker.touch(ns.key(f"k{i}"))
    tracker.touch(ns.key("k0"))
    await stats.flush()
    top = dict(await tracker.top("article", 100))
    assert set(top) == {f"k{i}" for i in range(10)}  # the first 10 identities of the flush
    assert top["k0"] == 2
    for i in range(10, 30):  # a second flush of hotter keys: the bucket keeps its 10 best
        for _ in range(3):
            tracker.touch(ns.key(f"k{i}"))
    await stats.flush()
    top = dict(await tracker.top("article", 100))
    assert set(top) == {f"k{i}" for i in range(10, 20)}
    bucket = scheme.hot_keys("article", int(time.time() // 60))
    assert 0 < await redis.pttl(bucket) <= 600_000


async def test_recent_reads_weigh_more_than_old_ones(redis: Any, scheme: KeyScheme) -> None:
    tracker, _ = _tracker(redis, scheme, half_life_seconds=60.0)
    now = int(time.time() // 60)
    # 10 reads of "old" three buckets (3 minutes) ago weigh 10 / 2**3 = 1.25 now.
    await redis.zincrby(scheme.hot_keys("article", now - 3), 10, "old")
    await redis.zincrby(scheme.hot_keys("article", now), 2, "new")
    await redis.zincrby(scheme.hot_keys("article", now - 20), 100, "expired")  # beyond 10
    top = await tracker.top("article", 5)
    assert [identity for identity, _ in top] == ["new", "old"]
    assert dict(top)["old"] == pytest.approx(1.25)


async def test_a_failed_flush_drops_the_samples_but_keeps_the_counters(
    scheme: KeyScheme,
) -> None:
    import fakeredis

    server = fakeredis.FakeServer()
    redis = fakeredis.FakeAsyncRedis(server=server)
    tracker, stats = _tracker(redis, scheme, sample_rate=1.0)
    tracker.touch(scheme.namespace("article").key("a"))
    stats.count("article", "hits")
    server.connected = False
    assert not await stats.flush()
    server.connected = True
    assert await stats.flush()
    assert await tracker.top("article", 1) == []
    assert (await stats.snapshot())["hits"] == 1
    await redis.aclose()


class _BrokenPart:
    """A flush part whose command Redis refuses (an error reply, not a failed connection)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.outcomes: list[bool] = []

    def add_to(self, pipe: Any) -> Any:
        pipe.zincrby(self.key, 1, "x")  # the key holds a string: WRONGTYPE
        return self.outcomes.append


async def test_an_error_reply_of_a_flush_part_does_not_count_twice(
    redis: Any, scheme: KeyScheme
) -> None:
    await redis.set("t:not-a-zset", "x")
    stats = CacheStats(redis, scheme)
    part = _BrokenPart("t:not-a-zset")
    stats.add_flush_part(part)
    stats.count("article", "hits", 3)
    assert await stats.flush()  # the counts were taken
    assert await stats.flush()
    assert (await stats.snapshot())["hits"] == 3
    assert part.outcomes == [False, False]  # told at each flush (a read sends no parts)
