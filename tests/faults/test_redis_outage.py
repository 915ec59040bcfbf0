"""Redis paused, killed or lost mid-load: reads bypass, writes succeed, nothing stale after.

The app runs on the shared test database and a private Redis that the tests break.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.apps import EDITOR, Api
from tests.faults.servers import PrivateRedis
from tests.polling import eventually
from tests.servers import Servers, truncate

ARTICLE = "/api/v1/articles/outage"
#: the timeouts the app is given; every wait on a dead Redis must stay within them.
REDIS_TIMEOUT = 0.2
SETTINGS: dict[str, Any] = {
    "redis_socket_timeout_seconds": REDIS_TIMEOUT,
    "redis_connect_timeout_seconds": REDIS_TIMEOUT,
    "redis_pool_timeout_seconds": REDIS_TIMEOUT,
    "breaker_failure_threshold": 2,
    "breaker_probe_interval_seconds": 0.1,
    # The near cache answers until its lease lapses (a write that cannot reach Redis waits
    # that long): short, so that the reads below soon bypass it.
    "cache_l1_lease_ms": 100,
}


def bypassed_or_near(r: Any) -> bool:
    """Whether ``r`` bypassed Redis, or came from the near cache while its lease lasted."""
    return r.headers["x-cache"] == "BYPASS" or "detail=l1" in r.headers["cache-status"]


@pytest.fixture
async def api(servers: Servers, private_redis: PrivateRedis, app_on: Any) -> AsyncIterator[Api]:
    """An app on the private Redis with one article, read once (so cached)."""
    await truncate(servers.database_url)
    async with app_on(servers.database_url, private_redis.url, **SETTINGS) as api:
        await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
        await api.create(
            "/api/v1/articles",
            {"title": "Before", "slug": "outage", "body": "b", "author": "ann",
             "status": "published"},
        )  # fmt: skip
        await api.client.get(ARTICLE)
        yield api


async def timed_get(api: Api, path: str) -> tuple[Any, float]:
    started = time.monotonic()
    r = await api.client.get(path)
    return r, time.monotonic() - started


async def redis_breaker_closed(api: Api) -> bool:
    return api.state.redis_breaker.allows()


async def test_paused_redis_bypasses_and_recovers_without_a_stale_read(
    api: Api, private_redis: PrivateRedis
) -> None:
    assert (await api.client.get(ARTICLE)).headers["x-cache"] == "HIT"

    private_redis.pause()
    latencies = []
    for _ in range(20):
        r, took = await timed_get(api, ARTICLE)
        assert r.status_code == 200 and bypassed_or_near(r), r.headers
        latencies.append(took)
    # The first reads wait one command timeout each; once the breaker opens, none does.
    assert max(latencies) < REDIS_TIMEOUT + 0.3, latencies
    assert sum(t > REDIS_TIMEOUT / 2 for t in latencies) <= 2, latencies
    print(f"\nreads with Redis paused (ms): {[round(t * 1000, 1) for t in latencies]}")

    started = time.monotonic()
    w = await api.client.patch(ARTICLE, json={"title": "During"}, headers=EDITOR)
    took = time.monotonic() - started
    assert w.status_code == 200 and took < REDIS_TIMEOUT + 0.3
    print(f"write with Redis paused, breaker open: {took * 1000:.1f} ms")
    r = await api.client.get(ARTICLE)
    assert (r.headers["x-cache"], r.json()["title"]) == ("BYPASS", "During")

    private_redis.resume()

    async def recovered() -> bool:
        r = await api.client.get(ARTICLE)
        assert r.json()["title"] == "During", "a stale entry was served after the outage"
        return r.headers["x-cache"] != "BYPASS"

    await eventually(recovered, 5)
    r = await api.client.get(ARTICLE)
    assert (r.headers["x-cache"], r.json()["title"]) == ("HIT", "During")
    stats = await api.stats()
    assert stats["cache"]["bypass"] + stats["cache"]["l1_hits"] >= 21
    assert stats["breakers"]["redis"] == {"state": "closed", "opened": 1}
    assert stats["outbox"]["backlog"] == 0


async def test_a_write_whose_invalidation_fails_is_applied_from_the_outbox(
    api: Api, private_redis: PrivateRedis
) -> None:
    """Redis stops between the write's commit and its invalidation: the outbox applies it."""
    private_redis.pause()  # no read noticed: the breaker is still closed
    started = time.monotonic()
    w = await api.client.patch(ARTICLE, json={"title": "After"}, headers=EDITOR)
    assert w.status_code == 200
    took = time.monotonic() - started
    assert took < REDIS_TIMEOUT + 0.3, took  # one timeout, no retry
    print(f"\nwrite whose invalidation timed out: {took * 1000:.0f} ms")
    assert api.state.unit_of_work.invalidation_failures == 1
    assert not api.state.redis_breaker.allows()  # tripped by the failed invalidation
    private_redis.resume()
    await eventually(lambda: redis_breaker_closed(api), 5)
    for _ in range(3):
        assert (await api.client.get(ARTICLE)).json()["title"] == "After"


async def test_killed_redis_comes_back_empty_and_is_used_again(
    api: Api, private_redis: PrivateRedis
) -> None:
    private_redis.kill()
    for _ in range(5):
        r, took = await timed_get(api, ARTICLE)
        assert r.status_code == 200 and bypassed_or_near(r), r.headers
        assert took < REDIS_TIMEOUT + 0.3
    w = await api.client.patch(ARTICLE, json={"title": "Meanwhile"}, headers=EDITOR)
    assert w.status_code == 200
    private_redis.start()
    await eventually(lambda: redis_breaker_closed(api), 5)
    r = await api.client.get(ARTICLE)
    assert (r.headers["x-cache"], r.json()["title"]) == ("MISS", "Meanwhile")
    assert (await api.client.get(ARTICLE)).headers["x-cache"] == "HIT"
