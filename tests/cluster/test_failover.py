"""A master of the cluster is killed under load: its replica takes over, nothing goes stale.

Readers and writers run against one app on a private cluster (3 masters, 3 replicas,
``cluster-node-timeout`` 1000 ms). The master that serves the hottest article's entry is
killed with SIGKILL; the cluster fails it over to its replica. Throughout, every answer is a
200 (BYPASS while Redis cannot be used) and no read answers with a title older than the last
write acknowledged before the read began; after the failover the reads are served from the
cache again.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from cache.keys import key_slot
from tests.apps import EDITOR, AppOn
from tests.cluster.conftest import require_cluster_binaries
from tests.faults.servers import PrivateRedisCluster
from tests.servers import Servers, truncate

HOT = ("alpha", "beta", "gamma", "delta")
VERSION = re.compile(r" v(\d+)$")


@pytest.fixture
def private_cluster() -> Iterator[PrivateRedisCluster]:
    """A cluster of this test's own, which it may break."""
    require_cluster_binaries()
    cluster = PrivateRedisCluster(node_timeout_ms=1000)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def test_a_killed_master_fails_over_without_errors_or_stale_reads(
    servers: Servers, app_on: AppOn, private_cluster: PrivateRedisCluster
) -> None:
    await truncate(servers.database_url)
    async with app_on(
        servers.database_url,
        private_cluster.url,
        breaker_probe_interval_seconds=0.1,
        outbox_poll_interval_seconds=0.2,
    ) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        for slug in HOT:
            await api.create(
                "/api/v1/articles",
                {"title": f"{slug} v0", "slug": slug, "body": "b", "author": "ann",
                 "status": "published"},
            )  # fmt: skip
        rng = random.Random(20261126)
        acked = dict.fromkeys(HOT, 0)
        states: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        violations: list[str] = []
        hits_after_failover: list[float] = []
        stop = asyncio.Event()
        failed_over_at: list[float] = []

        async def writer(slug: str) -> None:
            version = 0
            while not stop.is_set():
                version += 1
                r = await api.client.patch(
                    f"/api/v1/articles/{slug}", json={"title": f"{slug} v{version}"}, headers=EDITOR
                )
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    acked[slug] = max(acked[slug], version)
                await asyncio.sleep(0.02 + rng.random() * 0.03)

        async def reader() -> None:
            while not stop.is_set():
                slug = rng.choice(HOT)
                floor = acked[slug]
                r = await api.client.get(f"/api/v1/articles/{slug}")
                statuses[r.status_code] += 1
                if r.status_code != 200:
                    continue
                state = r.headers["x-cache"]
                states[state] += 1
                if failed_over_at and state == "HIT":
                    hits_after_failover.append(time.monotonic())
                match = VERSION.search(r.json()["title"])
                assert match is not None
                if int(match.group(1)) < floor:
                    violations.append(f"{r.json()['title']!r} ({state}) after v{floor} was acked")
                await asyncio.sleep(0.002)

        tasks = [asyncio.create_task(writer(s)) for s in HOT]
        tasks += [asyncio.create_task(reader()) for _ in range(8)]
        await asyncio.sleep(1.5)  # warm, and served from the cache

        victim_key = api.state.keys.article.key("alpha").redis_key
        victim = private_cluster.master_of_slot(key_slot(victim_key))
        before = dict(states)
        killed_at = time.monotonic()
        private_cluster.kill(victim)
        promoted = await asyncio.to_thread(
            private_cluster.wait_for_failover, key_slot(victim_key), victim
        )
        failover_seconds = time.monotonic() - killed_at
        failed_over_at.append(time.monotonic())
        await asyncio.sleep(3.0)  # after the failover: settle, then keep checking
        stop.set()
        await asyncio.gather(*tasks)
        during = {k: v - before.get(k, 0) for k, v in states.items()}
        await api.state.invalidator.purge(None)

    assert promoted != victim
    assert set(statuses) == {200}, statuses
    assert violations == [], violations[:5]
    assert hits_after_failover, "the cache serves hits again after the failover"
    assert before.get("HIT", 0) > 0 and sum(acked.values()) > 0
    print(
        f"\nfailover: master {victim} killed, replica {promoted} serving after "
        f"{failover_seconds:.2f} s; answers from the kill on {during}; "
        f"first hit {hits_after_failover[0] - killed_at:.2f} s after the kill; "
        f"writes acknowledged {sum(acked.values())}; stale reads {len(violations)}"
    )
