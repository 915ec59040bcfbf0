"""The invalidation watermark: recorded by invalidations, read by leases, seen by loaders."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from redis.asyncio import Redis

from cache import (
    CacheKey,
    CachePolicy,
    Invalidator,
    KeyScheme,
    LeaseStore,
    Loaded,
    required_position,
    requiring,
)
from cache.watermarks import decode_position, encode_position
from tests.cache.caches import read_through


@pytest.mark.parametrize(
    ("position", "stored"),
    [
        (0, "00000000000000000000"),
        (50_331_688, "00000000000050331688"),
        (2**64 - 1, "18446744073709551615"),
    ],
)
def test_positions_are_stored_as_twenty_digits(position: int, stored: str) -> None:
    assert encode_position(position) == stored
    assert decode_position(stored.encode()) == position


@pytest.mark.parametrize("position", [-1, 2**64])
def test_positions_outside_64_bits_are_refused(position: int) -> None:
    with pytest.raises(ValueError):
        encode_position(position)


@pytest.mark.parametrize(
    ("recorded", "watermark"),
    [
        ([], None),
        ([None], None),
        ([5], 5),
        ([5, 3], 5),
        ([3, None, 9], 9),
        # Compared as numbers, not as the shortest strings: 10**12 > 999.
        ([999, 10**12, 2**63], 2**63),
    ],
)
async def test_the_watermark_is_the_highest_position_recorded(
    redis: Redis, scheme: KeyScheme, recorded: list[int | None], watermark: int | None
) -> None:
    invalidator = Invalidator(redis, scheme)
    for position in recorded:
        await invalidator.invalidate_tags(["t"], position=position)
    grant = await LeaseStore(redis, scheme).take(scheme.entry("n", "a"))
    assert grant.lease.watermark == watermark, (recorded, grant.lease)


async def test_a_lease_holds_the_watermark_of_the_moment_it_was_taken(
    redis: Redis, scheme: KeyScheme
) -> None:
    invalidator, leases = Invalidator(redis, scheme), LeaseStore(redis, scheme)
    await invalidator.invalidate_tags(["t"], position=100)
    before = (await leases.take(scheme.entry("n", "a"))).lease
    await invalidator.invalidate_tags(["t"], position=200)
    after = (await leases.take(scheme.entry("n", "a"))).lease
    assert (before.watermark, after.watermark) == (100, 200)
    assert after.sequence > before.sequence


async def test_revoking_leases_records_the_position_and_purges_keep_it(
    redis: Redis, scheme: KeyScheme
) -> None:
    invalidator = Invalidator(redis, scheme)
    await invalidator.revoke_leases(position=42)
    await invalidator.purge(None)
    assert await redis.get(scheme.watermark()) == encode_position(42).encode()


@pytest.mark.parametrize(
    ("present", "seeded", "watermark"),
    [(None, 70, 70), (50, 70, 50), (90, 70, 90)],
)
async def test_seeding_records_a_watermark_only_where_none_is(
    redis: Redis, scheme: KeyScheme, present: int | None, seeded: int, watermark: int
) -> None:
    invalidator = Invalidator(redis, scheme)
    if present is not None:
        await invalidator.invalidate_tags(["t"], position=present)
    assert await invalidator.seed_watermark(seeded) is (present is None)
    assert decode_position(await redis.get(scheme.watermark())) == watermark


async def test_a_loader_requires_its_lease_watermark(redis: Redis, scheme: KeyScheme) -> None:
    cache, _ = read_through(redis, scheme, CachePolicy(ttl_seconds=0.05, jitter_ratio=0))
    invalidator = Invalidator(redis, scheme)
    seen: list[int | None] = []

    async def load() -> Loaded:
        seen.append(required_position())
        return Loaded(b"v", ["t"])

    key = scheme.namespace("n").key("a")
    await cache.get_or_load(key, load)  # nothing recorded yet
    await invalidator.invalidate_tags(["t"], position=300)
    await cache.get_or_load(key, load)
    assert seen == [None, 300]
    assert required_position() is None  # only within the load


async def test_a_bypassed_load_requires_nothing_it_cannot_name(scheme: KeyScheme) -> None:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    cache, _ = read_through(dead, scheme)
    seen: list[int | None] = []

    async def load() -> Loaded:
        seen.append(required_position())
        return Loaded(b"v")

    with requiring(123):  # whatever an outer task required does not leak into a bypass
        await cache.get_or_load(scheme.namespace("n").key("a"), load)
    assert seen == [None]
    await dead.aclose()


async def test_a_fill_requires_the_newest_watermark_of_its_leases(
    redis: Redis, scheme: KeyScheme
) -> None:
    cache, _ = read_through(redis, scheme)
    invalidator = Invalidator(redis, scheme)
    await invalidator.invalidate_tags(["t"], position=10)
    ns = scheme.namespace("n")
    seen: list[int | None] = []

    async def load(keys: Sequence[CacheKey]) -> dict[CacheKey, Loaded]:
        seen.append(required_position())
        await asyncio.sleep(0)
        return {}

    report = await cache.filler.fill([ns.key("a"), ns.key("b")], load)
    assert seen == [10] and report.skipped == 2
