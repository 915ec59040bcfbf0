"""Filling in batches under leases, and warming jobs: one at a time, cancellable, observable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from cache import (
    CacheKey,
    CachePolicy,
    CacheState,
    Invalidator,
    JobProgress,
    KeyScheme,
    LeaseStore,
    Loaded,
    Pacer,
    WarmingBusyError,
    WarmingJobs,
)
from tests.cache.caches import read_through


def _loader(calls: list[list[str]], *, version: str = "v1") -> Any:
    async def load(keys: Sequence[CacheKey]) -> Mapping[CacheKey, Loaded]:
        calls.append([k.identity for k in keys])
        return {
            k: Loaded(f"{k.identity}:{version}".encode(), [f"tag-{k.identity}"])
            for k in keys
            if k.identity != "gone"
        }

    return load


async def test_fill_loads_once_per_batch_and_each_entry_then_hits(
    redis: Any, scheme: KeyScheme
) -> None:
    cache, _ = read_through(redis, scheme)
    ns = scheme.namespace("article")
    keys = [ns.key(name) for name in ("a", "b", "gone")]
    calls: list[list[str]] = []
    report = await cache.filler.fill(keys, _loader(calls))
    assert (report.stored, report.skipped, report.rejected, report.errors) == (2, 1, 0, 0)
    assert calls == [["a", "b", "gone"]]

    async def never() -> Loaded:
        raise AssertionError("a filled key must hit")

    hit = await cache.get_or_load(keys[0], never)
    assert (hit.state, hit.body) == (CacheState.HIT, b"a:v1")
    # Fresh entries are skipped, and the loader is not called for them.
    report = await cache.filler.fill(keys[:2], _loader(calls))
    assert (report.stored, report.skipped) == (0, 2)
    assert len(calls) == 1


async def test_fill_reloads_entries_that_expire_within_the_horizon(
    redis: Any, scheme: KeyScheme
) -> None:
    cache, _ = read_through(redis, scheme, CachePolicy(ttl_seconds=5, jitter_ratio=0))
    key = scheme.namespace("article").key("a")
    calls: list[list[str]] = []
    await cache.filler.fill([key], _loader(calls))
    report = await cache.filler.fill([key], _loader(calls, version="v2"), fresh_for_seconds=60)
    assert report.stored == 1
    assert (await cache.get_or_load(key, _never)).body == b"a:v2"


async def _never() -> Loaded:
    raise AssertionError("must not load")


async def test_a_write_that_races_the_fill_makes_its_store_fail(
    redis: Any, scheme: KeyScheme
) -> None:
    cache, _ = read_through(redis, scheme)
    invalidator = Invalidator(redis, scheme)
    key = scheme.namespace("article").key("a")

    async def racing(keys: Sequence[CacheKey]) -> Mapping[CacheKey, Loaded]:
        body = b"old"  # read from the source before the write below commits
        await invalidator.invalidate_tags(["tag-a"])
        return {keys[0]: Loaded(body, ["tag-a"])}

    report = await cache.filler.fill([key], racing)
    assert (report.stored, report.rejected) == (0, 1)
    assert await redis.get(key.redis_key) is None


async def test_keys_being_loaded_elsewhere_are_skipped_and_failed_loads_release_leases(
    redis: Any, scheme: KeyScheme
) -> None:
    cache, _ = read_through(redis, scheme)
    ns = scheme.namespace("article")
    busy, broken = ns.key("busy"), ns.key("broken")
    await LeaseStore(redis, scheme).take(busy.redis_key, load_lease_ms=5000)  # another process
    report = await cache.filler.fill([busy], _loader([]))
    assert (report.stored, report.skipped) == (0, 1)

    async def failing(keys: Sequence[CacheKey]) -> Mapping[CacheKey, Loaded]:
        raise RuntimeError("database down")

    report = await cache.filler.fill([broken], failing)
    assert report.errors == 1
    assert (await cache.filler.fill([broken], _loader([]))).stored == 1  # the lease was released


async def test_one_job_at_a_time_with_progress_and_cancel(redis: Any, scheme: KeyScheme) -> None:
    jobs = WarmingJobs(redis, scheme, instance="here", progress_interval_seconds=0.05)
    gate = asyncio.Event()

    async def work(progress: JobProgress) -> None:
        progress.total = 4
        progress.add(done=1, skipped=1)
        await gate.wait()

    job_id = await jobs.start({"source": "keys"}, work)
    with pytest.raises(WarmingBusyError) as busy:
        await jobs.start({"source": "hot"}, work)
    assert busy.value.job_id == job_id
    await asyncio.sleep(0.2)
    job = await jobs.get(job_id)
    assert job is not None
    assert (job["state"], job["total"], job["done"], job["skipped"]) == ("running", 4, 1, 1)
    assert job["eta_seconds"] is not None and job["keys_per_second"] > 0
    assert (await jobs.summary())["current"]["job_id"] == job_id
    await jobs.cancel(job_id)
    await asyncio.wait_for(jobs.wait(), 2)
    job = await jobs.get(job_id)
    assert job is not None and job["state"] == "cancelled" and job["finished_at"]
    summary = await jobs.summary()
    assert (summary["state"], summary["last_run"]["job_id"]) == ("idle", job_id)
    gate.set()
    second = await jobs.start({"source": "hot"}, work)  # the lock was released
    await jobs.aclose()
    job = await jobs.get(second)
    assert job is not None and job["state"] == "failed"  # its runner shut down


async def test_a_job_that_raises_is_failed_with_its_error(redis: Any, scheme: KeyScheme) -> None:
    jobs = WarmingJobs(redis, scheme, instance="here")

    async def work(progress: JobProgress) -> None:
        raise RuntimeError("no such table")

    job_id = await jobs.start({"source": "recent"}, work)
    await jobs.wait()
    job = await jobs.get(job_id)
    assert job is not None and job["state"] == "failed" and "no such table" in job["error"]


async def _busy_steps(pacer: Pacer, steps: int, step_seconds: float) -> float:
    """Run ``steps`` busy steps of ``step_seconds`` with a pause after each; return the time."""
    started = time.perf_counter()
    for _ in range(steps):
        until = time.perf_counter() + step_seconds
        while time.perf_counter() < until:
            pass
        await pacer.pause()
    return time.perf_counter() - started


async def test_a_pacer_costs_nothing_alone_and_bounds_the_share_under_contention() -> None:
    alone = Pacer(0.25)
    await _busy_steps(alone, 50, 0.001)
    # Nothing else wants the loop: no pause (its wall time is the machine's, not asserted).
    assert alone.paused_seconds < 0.02, alone.paused_seconds

    stop = asyncio.Event()
    competitor_ran = 0

    async def competitor() -> None:  # a request handler that always wants the loop
        nonlocal competitor_ran
        while not stop.is_set():
            until = time.perf_counter() + 0.0005
            while time.perf_counter() < until:
                pass
            competitor_ran += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(competitor())
    await asyncio.sleep(0)
    pacer = Pacer(0.25)
    contended = await _busy_steps(pacer, 50, 0.001)
    stop.set()
    await task
    # The work's 50 ms are at most a quarter of the time (with a margin for the machine).
    assert contended >= 0.05 / 0.25 * 0.8
    assert pacer.paused_seconds > 0.1 and competitor_ran > 100
