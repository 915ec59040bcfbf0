"""The Sentinel pool on a real group: bounded, on the master, a new master refused until told."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from cache import BoundedSentinelConnectionPool, MasterChangedError, MasterIdentity
from tests.sentinel.group import MASTER_NAME, SentinelGroup


class Changes:
    """Counts the pool's ``on_master_change`` calls, and notes when the first one came."""

    def __init__(self) -> None:
        self.count = 0
        self.first_at: float | None = None  # time.monotonic()

    def __call__(self) -> None:
        self.count += 1
        if self.first_at is None:
            self.first_at = time.monotonic()


@pytest.fixture
async def client(sentinel_group: SentinelGroup) -> AsyncIterator[Redis]:
    pool = BoundedSentinelConnectionPool.from_sentinels(
        [("127.0.0.1", s.port) for s in sentinel_group.sentinels],
        MASTER_NAME,
        timeout=2,
        max_connections=2,
        socket_timeout=1,
        socket_connect_timeout=1,
    )
    redis = Redis.from_pool(pool)
    yield redis
    await redis.aclose()


def pool_of(redis: Redis) -> BoundedSentinelConnectionPool:
    pool = redis.connection_pool
    assert isinstance(pool, BoundedSentinelConnectionPool)
    return pool


async def admit(redis: Redis) -> MasterIdentity:
    """Reach the master the sentinels name from this task, and acknowledge it."""
    pool = pool_of(redis)
    with pool.admitting() as admission:
        await redis.ping()
    assert admission.identity is not None
    pool.acknowledge(admission.identity)
    return admission.identity


async def test_nothing_is_sent_before_a_master_is_acknowledged_then_the_bound_holds(
    client: Redis, sentinel_group: SentinelGroup
) -> None:
    pool = pool_of(client)
    changes = Changes()
    pool.on_master_change = changes
    with pytest.raises(MasterChangedError):
        await client.set("k", "v")
    with pytest.raises(MasterChangedError):
        await client.get("k")
    assert changes.count == 1, f"reported {changes.count} times, once expected"

    identity = await admit(client)
    assert identity.port == sentinel_group.master.port and identity.replication_id, identity
    seen: list[int] = []

    async def one(i: int) -> bytes | str | None:
        await client.set(f"k{i}", i)
        seen.append(pool.in_use)
        return await client.get(f"k{i}")

    results = await asyncio.gather(*(one(i) for i in range(100)))
    assert results == [str(i).encode() for i in range(100)]
    assert max(seen) <= 2 and pool.in_use == 0, (max(seen), pool.in_use)
    assert changes.count == 1


async def test_a_promoted_replica_is_refused_until_acknowledged(
    client: Redis, sentinel_group: SentinelGroup
) -> None:
    """The master crashes: its connections fail, the next ones reach the replica, refused."""
    pool = pool_of(client)
    changes = Changes()
    pool.on_master_change = changes
    old = await admit(client)
    await client.set("before", "failover")
    with sentinel_group.master.client() as master:
        assert master.wait(1, 2000) == 1  # the replica has it

    sentinel_group.master.kill()
    await asyncio.to_thread(sentinel_group.wait_for_master, sentinel_group.replica.port)
    errors: list[str] = []
    for _ in range(50):
        try:
            await client.get("before")
        except RedisConnectionError as exc:
            errors.append(type(exc).__name__)
            if isinstance(exc, MasterChangedError):
                break
        else:
            raise AssertionError(f"a read reached a master nobody acknowledged (after {errors})")
        await asyncio.sleep(0.1)
    assert errors[-1] == "MasterChangedError", errors
    assert changes.count == 1, changes.count

    with pool.admitting() as admission:
        assert await client.get("before") == b"failover"  # this task may: it repairs
    new = admission.identity
    assert new is not None and new.port == sentinel_group.replica.port, new
    assert new.replication_id != old.replication_id, (old, new)
    with pytest.raises(MasterChangedError):
        await client.get("before")  # the others may not, until it is acknowledged
    pool.acknowledge(new)
    assert await client.get("before") == b"failover"
    assert changes.count == 1, changes.count


async def test_an_announced_switch_withdraws_the_old_master_that_is_still_up(
    client: Redis, sentinel_group: SentinelGroup
) -> None:
    """``SENTINEL FAILOVER``: the old master answers as a master for a while after the switch.

    The announcement must stop the pool from using it; the periodic check finds it too.
    """
    pool = pool_of(client)
    changes = Changes()
    pool.on_master_change = changes
    await admit(client)
    watch = asyncio.create_task(pool.watch_switches(retry_seconds=0.1))
    try:
        await asyncio.sleep(0.3)  # subscribed
        assert await pool.verify_master() and changes.count == 0
        commanded = time.monotonic()
        sentinel_group.failover()
        switched = await asyncio.to_thread(
            sentinel_group.wait_for_master, sentinel_group.replica.port
        )
        for _ in range(100):
            if changes.count:
                break
            await asyncio.sleep(0.01)
        assert changes.count == 1 and pool.acknowledged is None, (changes.count, pool.acknowledged)
        assert changes.first_at is not None
        withdrawn = changes.first_at - commanded
        with sentinel_group.master.client() as old_master:
            old_role = old_master.info("replication")["role"]
        with pytest.raises(MasterChangedError):
            await client.ping()
        print(
            f"\nSENTINEL FAILOVER: the pool withdrew the old master after {withdrawn:.2f} s, the"
            f" test saw every sentinel name the new one after {switched:.2f} s; the old master"
            f" is then still a {old_role}"
        )
        assert withdrawn < switched + 0.5, (withdrawn, switched)
        identity = await admit(client)
        assert identity.port == sentinel_group.replica.port
        assert await pool.verify_master()
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)


async def test_verify_master_withdraws_the_acknowledgement_when_the_master_moved(
    client: Redis, sentinel_group: SentinelGroup
) -> None:
    pool = pool_of(client)
    changes = Changes()
    pool.on_master_change = changes
    await admit(client)
    assert await pool.verify_master() and changes.count == 0

    sentinel_group.failover()
    await asyncio.to_thread(sentinel_group.wait_for_master, sentinel_group.replica.port)
    assert not await pool.verify_master()
    assert pool.acknowledged is None and changes.count == 1, (pool.acknowledged, changes.count)
    with pytest.raises(MasterChangedError):
        await client.ping()
    identity = await admit(client)
    assert identity.port == sentinel_group.replica.port
    assert await pool.verify_master()
