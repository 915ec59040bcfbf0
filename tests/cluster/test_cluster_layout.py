"""What only a cluster shows: where keys live, which node a hit asks, what reaches every master."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from cache import KeyScheme
from cache.keys import key_slot
from tests.apps import EDITOR, Api, AppOn
from tests.faults.servers import PrivateRedisCluster
from tests.servers import Servers, truncate

SLUGS = [f"post-{n}" for n in range(24)]


@asynccontextmanager
async def master_clients(cluster: PrivateRedisCluster) -> AsyncIterator[dict[int, Redis]]:
    """A plain client of each master, by port."""
    async with AsyncExitStack() as stack:
        clients = {}
        for port in cluster.masters_serving():
            clients[port] = await stack.enter_async_context(Redis(port=port))
        yield clients


async def scheme_keys(client: Redis, prefix: str) -> list[bytes]:
    """Every key of ``prefix`` on one node."""
    return [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]


async def reads_served(client: Redis) -> int:
    """How many GET and MGET commands the node has answered so far."""
    stats = await client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget"))


async def seed_posts(api: Api) -> None:
    """One author and the ``SLUGS`` articles, published."""
    await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
    for slug in SLUGS:
        r = await api.client.post(
            "/api/v1/articles",
            json={"title": slug, "slug": slug, "body": "b", "author": "ann", "status": "published"},
            headers=EDITOR,
        )
        assert r.status_code == 201, r.text
    await api.settle()


async def test_the_app_runs_on_the_cluster_with_hash_tagged_slot_groups(api: Api) -> None:
    scheme: KeyScheme = api.state.keys.article.scheme
    assert isinstance(api.state.redis, RedisCluster)
    assert scheme.slot_groups == api.state.settings.redis_cluster_slot_groups == 16
    # One group per sixteenth of the slots: 16 groups over 3 masters' ranges.
    assert sorted(key_slot(g) * 16 // 16384 for g in scheme.groups) == list(range(16))
    key = api.state.keys.article.scheme.namespace("article").key("x")
    group = scheme.group_of(key.redis_key)
    same_slot = {
        key_slot(k)
        for k in (
            key.redis_key,
            scheme.load_lease(key.redis_key),
            scheme.epoch(group),
            scheme.sequence(group),
            scheme.tag_set("t", group),
            scheme.tag_sequence("t", group),
        )
    }
    assert len(same_slot) == 1, same_slot
    operations = {
        key_slot(scheme.stats),
        key_slot(scheme.warming_lock),
        key_slot(scheme.members("w")),
    }
    assert len(operations) == 1, operations


async def test_entries_spread_over_every_master_and_a_hit_asks_only_its_node(
    api: Api, redis_cluster: PrivateRedisCluster
) -> None:
    await seed_posts(api)
    for slug in SLUGS:
        assert (await api.client.get(f"/api/v1/articles/{slug}")).headers["x-cache"] == "MISS"
    prefix = api.state.settings.cache_prefix
    scheme: KeyScheme = api.state.keys.article.scheme
    async with master_clients(redis_cluster) as masters:
        entries = {
            port: [k for k in await scheme_keys(client, prefix) if scheme.is_entry(k, "article")]
            for port, client in masters.items()
        }
        assert all(entries.values()), {port: len(keys) for port, keys in entries.items()}

        key = scheme.namespace("article").key(SLUGS[0])
        home = redis_cluster.master_of_slot(key_slot(key.redis_key))
        reader: Any = api.state.reader
        pipeline = reader._cache._pipeline
        before = {port: await reads_served(client) for port, client in masters.items()}
        batches = pipeline.batches
        if api.state.near is not None:
            api.state.near.clear()  # a hit from Redis, not from the worker's near cache
        hit = await api.client.get(f"/api/v1/articles/{SLUGS[0]}")
        after = {port: await reads_served(client) for port, client in masters.items()}
    assert hit.headers["x-cache"] == "HIT"
    assert pipeline.batches == batches + 1, "a hit is one batch: one round trip"
    assert {port: after[port] - before[port] for port in masters} == {
        port: 1 if port == home else 0 for port in masters
    }


async def test_stats_sum_every_master_and_purge_empties_every_master(
    api: Api, redis_cluster: PrivateRedisCluster
) -> None:
    await seed_posts(api)
    for slug in SLUGS:
        await api.client.get(f"/api/v1/articles/{slug}")
    redis = (await api.stats())["redis"]
    # A bound per node the client knows: every master at least (a replica is known once the
    # slot map lists it).
    per_node = api.state.settings.redis_max_connections
    masters_count = len(redis_cluster.ports) // 2
    assert redis["pool_max"] % per_node == 0, redis
    assert masters_count * per_node <= redis["pool_max"] <= 2 * masters_count * per_node, redis
    prefix = api.state.settings.cache_prefix
    async with master_clients(redis_cluster) as masters:
        total_keys = sum([await client.dbsize() for client in masters.values()])
        # Within a few keys: the background flush may have written a bucket since.
        assert abs(redis["keys"] - total_keys) <= 5 and redis["used_memory_bytes"] > 0, redis
        assert redis["keys"] > len(SLUGS) * 2, "entries and tag sets of every master"

        r = await api.client.post(
            "/admin/cache/purge",
            json={"namespace": "all"},
            headers={"Authorization": "Bearer admin-token"},
        )
        assert r.status_code == 200 and r.json()["purged"] >= len(SLUGS), r.text
        scheme: KeyScheme = api.state.keys.article.scheme
        left = [k for client in masters.values() for k in await scheme_keys(client, prefix)]
    kept = scheme.kept_by_purge()
    assert [k for k in left if not k.startswith(kept)] == [], left


async def test_a_tag_invalidation_records_itself_in_every_slot_group(api: Api) -> None:
    scheme: KeyScheme = api.state.keys.article.scheme
    cluster = api.state.redis
    assert await api.state.invalidator.invalidate_tags(["some-tag"]) == 0
    records = [scheme.tag_sequence("some-tag", group) for group in scheme.groups]
    found = await asyncio.gather(*(cluster.exists(key) for key in records))
    assert found == [1] * len(scheme.groups)


async def test_a_cold_burst_on_two_instances_loads_once(servers: Servers, app_on: AppOn) -> None:
    """Single-flight in each process, and the load lease across them, on the cluster."""
    await truncate(servers.database_url)
    async with AsyncExitStack() as stack:
        apps = [
            await stack.enter_async_context(app_on(servers.database_url, servers.redis_url))
            for _ in range(2)
        ]
        await seed_posts(apps[0])
        for api in apps:
            api.sql.reset()
        answers: list[Any] = await asyncio.gather(
            *(apps[n % 2].client.get(f"/api/v1/articles/{SLUGS[3]}") for n in range(200))
        )
        loads = sum(api.sql.count for api in apps)
        await apps[0].state.invalidator.purge(None)
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert loads == 1, [api.sql.statements for api in apps]
