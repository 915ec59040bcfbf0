"""Load leases across processes and the circuit breaker, on fakeredis.

Two ``ReadThroughCache`` objects over one Redis stand for two processes: they share nothing
but Redis, as two workers do.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis

from cache import (
    BreakerState,
    CacheState,
    CircuitBreaker,
    Invalidator,
    KeyScheme,
    Loaded,
)
from tests.cache.caches import read_through


class SlowSource:
    def __init__(self, delay_seconds: float) -> None:
        self.delay_seconds, self.calls = delay_seconds, 0

    async def __call__(self) -> Loaded:
        self.calls += 1
        await asyncio.sleep(self.delay_seconds)
        return Loaded(b"value", ["row"])


async def test_misses_in_two_processes_load_once(redis: Redis, scheme: KeyScheme) -> None:
    (a, stats), (b, b_stats) = read_through(redis, scheme), read_through(redis, scheme)
    key = scheme.namespace("n").key("cold")
    source = SlowSource(0.05)
    answers = await asyncio.gather(
        *(cache.get_or_load(key, source) for _ in range(50) for cache in (a, b))
    )
    assert source.calls == 1
    assert {x.body for x in answers} == {b"value"}
    assert {x.state for x in answers} == {CacheState.MISS, CacheState.HIT}
    await b_stats.flush()
    snap = await stats.snapshot()
    assert snap["lease_losses"] == 1 and snap["coalesced"] == 99 and snap["herd_timeouts"] == 0


async def test_the_wait_for_a_slow_winner_is_bounded(redis: Redis, scheme: KeyScheme) -> None:
    a, _ = read_through(redis, scheme)
    b, stats = read_through(redis, scheme, herd_wait_ms=50)
    key = scheme.namespace("n").key("cold")
    slow, quick = SlowSource(1.0), SlowSource(0.0)
    winner = asyncio.create_task(a.get_or_load(key, slow))
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await b.get_or_load(key, quick)
    assert loop.time() - started < 0.5
    assert answer.state is CacheState.MISS and quick.calls == 1
    assert (await stats.snapshot())["herd_timeouts"] == 1
    winner.cancel()


async def test_a_failed_load_releases_the_load_lease(redis: Redis, scheme: KeyScheme) -> None:
    a, _ = read_through(redis, scheme)
    key = scheme.namespace("n").key("cold")

    async def fail() -> Loaded:
        raise LookupError("no")

    with contextlib.suppress(LookupError):
        await a.get_or_load(key, fail)
    assert await redis.exists(scheme.load_lease(key.redis_key)) == 0


async def test_breaker_opens_then_recovers_only_after_its_hook(scheme: KeyScheme) -> None:
    up = asyncio.Event()
    recovered: list[str] = []

    async def probe() -> None:
        if not up.is_set():
            raise ConnectionError("down")

    async def on_recovery() -> None:
        assert breaker.state is BreakerState.RECOVERING and not breaker.allows()
        recovered.append("applied")

    breaker = CircuitBreaker(
        "t", probe, on_recovery=on_recovery, failure_threshold=2, probe_interval_seconds=0.01
    )
    breaker.record_failure()
    assert breaker.allows()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allows()
    await asyncio.sleep(0.05)
    assert breaker.state is BreakerState.OPEN and recovered == []
    up.set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if breaker.allows():
            break
    state_now: BreakerState = breaker.state  # re-read: the awaits above changed it
    assert state_now is BreakerState.CLOSED and recovered == ["applied"]
    await breaker.aclose()


async def test_a_trip_while_recovering_runs_the_recovery_again_before_closing() -> None:
    """A trip during the recovery hook (a failed invalidation, a new master) is not lost."""
    runs: list[BreakerState] = []

    async def probe() -> None:
        return None

    async def on_recovery() -> None:
        runs.append(breaker.state)
        if len(runs) == 1:
            breaker.trip()  # what this run applied may already be incomplete

    breaker = CircuitBreaker("t", probe, on_recovery=on_recovery, probe_interval_seconds=0.01)
    breaker.trip()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if breaker.allows():
            break
    assert breaker.allows() and runs == [BreakerState.RECOVERING] * 2, (breaker.state, runs)
    assert breaker.opened_count == 1, breaker.opened_count
    await breaker.aclose()


async def test_open_breaker_bypasses_without_touching_redis(
    redis: Redis, scheme: KeyScheme
) -> None:
    async def probe() -> None:
        raise ConnectionError("down")

    breaker = CircuitBreaker("t", probe, probe_interval_seconds=10)
    cache, stats = read_through(redis, scheme, breaker=breaker)
    key = scheme.namespace("n").key("a")
    source = SlowSource(0.0)
    await cache.get_or_load(key, source)  # stored while closed
    breaker.trip()
    answer = await cache.get_or_load(key, source)
    assert answer.state is CacheState.BYPASS and source.calls == 2
    assert (await stats.snapshot())["bypass"] == 1
    await breaker.aclose()


async def test_invalidation_revokes_a_waiting_processes_store(
    redis: Redis, scheme: KeyScheme
) -> None:
    """A winner whose load raced a write stores nothing; the next read loads the new value."""
    a, stats = read_through(redis, scheme)
    key = scheme.namespace("n").key("a")
    read, proceed = asyncio.Event(), asyncio.Event()

    async def old() -> Loaded:
        read.set()
        await proceed.wait()
        return Loaded(b"old", ["row"])

    task = asyncio.create_task(a.get_or_load(key, old))
    await read.wait()
    await Invalidator(redis, scheme).invalidate_tags(["row"])
    proceed.set()
    await task
    assert await redis.exists(key.redis_key) == 0
    assert await redis.exists(scheme.load_lease(key.redis_key)) == 0
    assert (await stats.snapshot())["store_rejected"] == 1
