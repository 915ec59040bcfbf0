"""The member registry: reports ride the flush, stale members drop out and are pruned."""

from __future__ import annotations

from typing import Any

from cache import CacheStats, KeyScheme, MemberRegistry


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def registry(redis: Any, scheme: KeyScheme, name: str, clock: Clock) -> MemberRegistry:
    return MemberRegistry(
        redis, scheme, "workers", name, lambda: {"name": name, "busy": 1}, clock=clock
    )


async def test_reports_ride_the_flush_and_stale_ones_drop_out(
    redis: Any, scheme: KeyScheme
) -> None:
    clock = Clock(100.0)
    a, b = registry(redis, scheme, "a", clock), registry(redis, scheme, "b", clock)
    for member in (a, b):
        stats = CacheStats(redis, scheme)
        stats.add_flush_part(member)
        assert await stats.flush() is True
        assert member.reported is True
    found = await a.members()
    assert [(m.member, m.reported_at, m.report) for m in found.live] == [
        ("a", 100.0, {"name": "a", "busy": 1}),
        ("b", 100.0, {"name": "b", "busy": 1}),
    ]
    assert 0 < await redis.pttl(a.key) <= 10_000
    clock.now = 105.5  # a report 5.5 s old is past the 5 s staleness
    found = await a.members()
    assert (found.live, found.stale) == ([], ["a", "b"])
    await a.prune(found.stale)
    assert await redis.exists(a.key) == 0


async def test_a_member_that_leaves_is_gone_and_reports_no_more(
    redis: Any, scheme: KeyScheme
) -> None:
    clock = Clock(100.0)
    a, b = registry(redis, scheme, "a", clock), registry(redis, scheme, "b", clock)
    stats = CacheStats(redis, scheme)
    stats.add_flush_part(a)
    stats.add_flush_part(b)
    await stats.flush()
    await a.leave()
    await stats.flush()  # the last flush after leaving does not bring it back
    assert [m.member for m in (await b.members()).live] == ["b"]


async def test_a_field_that_is_not_a_report_counts_as_stale(redis: Any, scheme: KeyScheme) -> None:
    a = registry(redis, scheme, "a", Clock(100.0))
    await redis.hset(a.key, "junk", "not json")
    assert (await a.members()).stale == ["junk"]


async def test_a_heartbeat_deletes_the_members_that_stopped_reporting(
    redis: Any, scheme: KeyScheme
) -> None:
    clock = Clock(100.0)
    dead, alive = registry(redis, scheme, "dead", clock), registry(redis, scheme, "alive", clock)
    for member in (dead, alive):
        stats = CacheStats(redis, scheme)
        stats.add_flush_part(member)
        await stats.flush()
    await redis.hset(alive.key, "junk", "not a report")
    clock.now = 106.0  # "dead" stopped (killed: no leave); "alive" reports again
    stats = CacheStats(redis, scheme)
    stats.add_flush_part(alive)
    await stats.flush()
    assert set(await redis.hkeys(alive.key)) == {b"alive"}  # with no one reading the group
