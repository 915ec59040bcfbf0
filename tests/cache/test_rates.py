"""Rate buckets: counts land in the bucket of their flush, windows divide by the time covered."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis

from cache import CacheStats, KeyScheme


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_window_counts_divide_by_the_time_the_buckets_cover(
    redis: Any, scheme: KeyScheme
) -> None:
    clock = Clock(1000.5)
    stats = CacheStats(redis, scheme, clock=clock)
    stats.count("article", "hits", 10)
    await stats.flush()
    clock.now = 1005.25
    stats.count("article", "misses", 5)
    stats.count("tags", "bypass", 2)
    stats.count("tags", "coalesced", 7)  # not a state: no rate
    await stats.flush()
    clock.now = 1009.5
    rates = (await stats.read()).rates
    ten = rates["10s"]
    assert ten["seconds"] == 10.5  # buckets 999 to 1009, the last one half over
    assert ten["per_second"] == {
        "hit": 10 / 10.5,
        "miss": 5 / 10.5,
        "stale": 0.0,
        "bypass": 2 / 10.5,
    }
    assert ten["requests_per_second"] == 17 / 10.5
    assert ten["hit_ratio"] == 10 / 15
    minute = rates["1m"]
    assert minute["seconds"] == 69.5  # 10-second buckets from 940 to now
    assert minute["requests_per_second"] == 17 / 69.5
    # Eleven seconds on, the first flush's bucket has left the 10 s window, not the minute.
    clock.now = 1011.5
    rates = (await stats.read()).rates
    assert rates["10s"]["per_second"]["hit"] == 0.0
    assert rates["10s"]["per_second"]["miss"] == 5 / 10.5
    assert rates["1m"]["per_second"]["hit"] == 10 / 61.5


async def test_flushes_delete_buckets_that_left_the_kept_span(
    redis: Any, scheme: KeyScheme
) -> None:
    clock = Clock(2000.0)
    stats = CacheStats(redis, scheme, clock=clock)
    stats.count("article", "hits")
    await stats.flush()
    fine, coarse = scheme.rate_buckets(1), scheme.rate_buckets(10)
    assert await redis.hget(fine, "2000:hit") == b"1"
    assert 0 < await redis.pttl(fine) <= 12_000
    clock.now = 2012.0  # bucket 2000 is 12 s old: out of the 12 kept
    stats.count("article", "misses")
    await stats.flush()
    assert await redis.hkeys(fine) == [b"2012:miss"]
    assert sorted(await redis.hkeys(coarse)) == [b"2000:hit", b"2010:miss"]


async def test_a_failed_flush_keeps_counts_for_a_later_bucket(scheme: KeyScheme) -> None:
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeAsyncRedis(server=server)
    clock = Clock(3000.0)
    stats = CacheStats(redis, scheme, clock=clock)
    stats.count("article", "hits", 3)
    server.connected = False
    assert await stats.flush() is False
    server.connected = True
    clock.now = 3002.0
    assert await stats.flush() is True
    assert await redis.hgetall(scheme.rate_buckets(1)) == {b"3002:hit": b"3"}
    await redis.aclose()


async def test_concurrent_shared_reads_make_one_round_trip(redis: Any, scheme: KeyScheme) -> None:
    stats = CacheStats(redis, scheme)
    stats.count("article", "hits", 2)
    queued: list[int] = []

    def extra(pipe: Any) -> None:
        queued.append(1)
        pipe.dbsize()

    readings = await asyncio.gather(*(stats.read(extra=extra, share="poll") for _ in range(5)))
    assert len(queued) == 1  # one pipeline for the five
    assert all(r is readings[0] for r in readings)
    assert readings[0].counters["hits"] == 2 and readings[0].replies is not None
    await stats.read(extra=extra, share="poll")
    assert len(queued) == 2  # a later read makes its own
